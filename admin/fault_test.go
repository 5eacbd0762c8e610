package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"sluice/monitor"
)

func TestFaultToggleAuthAndErrors(t *testing.T) {
	f := newFixture(t, "s3cret")
	const ok = `{"abort": {"status": 503}, "duration": "30s"}`
	for _, tc := range []struct {
		method, path, token, body string
		want                      int
		detail                    string
	}{
		{"POST", "/api/v1/routes/fast/fault", "", ok, 401, ""},
		{"POST", "/api/v1/routes/fast/fault", "wrong", ok, 401, ""},
		{"GET", "/api/v1/routes/fast/fault", "", "", 401, ""},
		{"DELETE", "/api/v1/routes/fast/fault", "", "", 401, ""},
		{"POST", "/api/v1/routes/nope/fault", "s3cret", ok, 404, `no route named "nope"`},
		{"DELETE", "/api/v1/routes/nope/fault", "s3cret", "", 404, `no route named "nope"`},
		{"POST", "/api/v1/routes/fast/fault", "s3cret", `{"abort": {"status": 503}}`, 400,
			`body:1:1: "duration" is required (Go syntax such as "30s", at most 24h0m0s)`},
		{"POST", "/api/v1/routes/fast/fault", "s3cret", `{"abort": {"status": 700}, "duration": "1s"}`, 400,
			`body:1:22: abort.status must be a final HTTP status 200-599, got 700`},
		{"POST", "/api/v1/routes/fast/fault", "s3cret", `not json`, 400,
			`body:1:1: expected a JSON object: a fault block plus "duration"`},
	} {
		code, body := f.send(t, tc.method, tc.path, tc.token, tc.body)
		if code != tc.want {
			t.Errorf("%s %s (token %q): %d, want %d: %s", tc.method, tc.path, tc.token, code, tc.want, body)
			continue
		}
		if tc.detail != "" {
			var p struct{ Detail string }
			if err := json.Unmarshal(body, &p); err != nil || p.Detail != tc.detail {
				t.Errorf("%s %s: detail %q, want %q", tc.method, tc.path, p.Detail, tc.detail)
			}
		}
	}
	if got := status(t, f.proxyURL+"/fast"); got != 200 {
		t.Fatalf("refused toggles changed the route: %d", got)
	}
}

// TestFaultToggleFillsBulkheadAndExpires turns an injected delay on for
// the slow route at run time: the delayed requests hold the bulkhead's
// slots like a slow upstream, the queue fills, the backpressure level
// turns high, and the toggle turns itself off when its duration passes
// on the fake clock.
func TestFaultToggleFillsBulkheadAndExpires(t *testing.T) {
	f := newFixture(t, "")
	code, body := f.send(t, "POST", "/api/v1/routes/slow/fault", "", `{"delay": {"duration": "1h"}, "duration": "30s"}`)
	if code != 200 {
		t.Fatalf("POST: %d %s", code, body)
	}
	var st faultState
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	until := f.clk.Now().Add(30 * time.Second).UnixMilli()
	if st.Until != until || fmt.Sprint(st.Runtime["delay"]) != "map[duration:1h0m0s percent:100]" ||
		st.Configured != nil || st.Active == nil || st.Active.Source != "runtime" {
		t.Fatalf("POST answered %s", body)
	}

	done := make(chan int, 3)
	for range 3 {
		go func() { done <- status(t, f.proxyURL+"/slow/x") }()
	}
	slow := f.p.Routes()[1].Admission()
	f.clk.WaitTimers(2) // both slots held by injected delays (the queued one's max_wait is a third)
	deadline := time.Now().Add(10 * time.Second)
	for slow.Inflight() != 2 || slow.QueueDepth() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the delay never filled the bulkhead: inflight %d depth %d", slow.Inflight(), slow.QueueDepth())
		}
		time.Sleep(time.Millisecond)
	}
	for range 10 {
		f.clk.Advance(50 * time.Millisecond)
		f.smp.Sample()
	}
	var rs []routeSummary
	f.getJSON(t, "/api/v1/routes", "", &rs)
	if rs[1].BackpressureLevel != string(monitor.LevelHigh) {
		t.Fatalf("backpressure under injected delay: %+v", rs[1])
	}
	want := faultSummary{Source: "runtime", Kinds: []faultKind{{"delay", 100}}, Until: until}
	if rs[1].Fault == nil || rs[1].Fault.Source != want.Source || rs[1].Fault.Until != want.Until ||
		len(rs[1].Fault.Kinds) != 1 || rs[1].Fault.Kinds[0] != want.Kinds[0] || rs[0].Fault != nil {
		t.Fatalf("route summaries' fault: %+v, %+v", rs[0].Fault, rs[1].Fault)
	}
	var raw []map[string]any
	f.getJSON(t, "/api/v1/routes", "", &raw)
	if _, ok := raw[0]["fault"]; ok {
		t.Fatalf("a route without a fault has the field: %v", raw[0])
	}

	f.clk.Advance(30 * time.Second)
	f.getJSON(t, "/api/v1/routes/slow/fault", "", &st)
	if st.Active != nil || st.Runtime != nil || st.Until != 0 {
		t.Fatalf("after its duration the fault is still on: %+v", st)
	}
	// The queued request reaches its max_wait (1m) and is refused, before
	// any slot frees: it is never delayed. It must have answered before
	// the delays end, or a slot freed by them could reach it first (a
	// grant wins over a timeout not yet settled), and the fault is
	// decided by a request's arrival time, when the toggle was on.
	f.clk.Advance(31 * time.Second)
	if code := <-done; code != http.StatusServiceUnavailable {
		t.Fatalf("the queued request: %d, want 503 at its max_wait", code)
	}
	// Release the delayed requests and the upstream.
	f.releaseOnce()
	f.clk.Advance(2 * time.Hour)
	for range 2 {
		<-done
	}
	if n := f.p.Routes()[1].FaultsInjected("delay"); n != 2 {
		t.Fatalf("delays injected: %d, want 2", n)
	}
}

func TestFaultToggleDelete(t *testing.T) {
	f := newFixture(t, "")
	if code, body := f.send(t, "POST", "/api/v1/routes/fast/fault", "", `{"abort": {"status": 418}, "duration": "1m"}`); code != 200 {
		t.Fatalf("POST: %d %s", code, body)
	}
	if got := status(t, f.proxyURL+"/fast"); got != 418 {
		t.Fatalf("with the abort on: %d", got)
	}
	code, body := f.send(t, "DELETE", "/api/v1/routes/fast/fault", "", "")
	var st faultState
	if code != 200 || json.Unmarshal(body, &st) != nil || st.Active != nil || st.Runtime != nil {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if got := status(t, f.proxyURL+"/fast"); got != 200 {
		t.Fatalf("after DELETE: %d", got)
	}
}
