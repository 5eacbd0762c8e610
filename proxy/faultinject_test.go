package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/breaker"
	"sluice/clock"
	"sluice/config"
	"sluice/internal/otlptest"
	"sluice/internal/testutil"
	"sluice/telemetry"
)

// faultRig is a real proxy in front of a real loopback upstream that
// counts the requests it gets, with the fault sampler seeded.
type faultRig struct {
	p      *Proxy
	url    string
	hits   *atomic.Int64
	access *syncBuffer
}

func startFaultRig(t *testing.T, clk clock.Clock, routeYAML string, body string) *faultRig {
	t.Helper()
	hits := new(atomic.Int64)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, body)
	}))
	t.Cleanup(up.Close)
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
upstreams:
  - {name: api, targets: ["%s"], breaker: {consecutive_failures: 2, open_timeout: 1h}}
routes:
  - name: r
    match: {path_prefix: /}
    upstream: api
%s`, up.URL, routeYAML)))
	if err != nil {
		t.Fatal(err)
	}
	access := &syncBuffer{}
	p, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler), Clock: clk,
		AccessLog: slog.New(slog.NewJSONHandler(access, nil)), FaultRand: rand.New(rand.NewPCG(7, 11))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	return &faultRig{p: p, url: srv.URL, hits: hits, access: access}
}

// firstFault returns the fault attribute of the first access log line,
// which the proxy writes after the response has gone (or the connection).
func (f *faultRig) firstFault(t *testing.T) string {
	t.Helper()
	testutil.WaitFor(t, "the access log line", func() bool { return strings.Contains(f.access.String(), "\n") })
	line, _, _ := strings.Cut(f.access.String(), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m["fault"].(string)
	return s
}

func TestFaultAbort(t *testing.T) {
	f := startFaultRig(t, nil, "    fault: {abort: {status: 502}}", "ok")
	resp, body := get(t, f.url+"/x")
	if resp.StatusCode != 502 || resp.Header.Get("Sluice-Fault") != "abort" || resp.Header.Get("Sluice-Reject") != "" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	pb := decodeProblem(t, resp, body)
	if pb.Status != 502 || pb.Route != "r" || pb.Detail != "the answer was injected by the route's fault (abort)" {
		t.Fatalf("problem %+v", pb)
	}
	if f.hits.Load() != 0 {
		t.Fatalf("upstream reached %d times", f.hits.Load())
	}
	if got := f.firstFault(t); got != "abort" {
		t.Fatalf("access log fault = %q", got)
	}
	m := gather(t, f.p)["sluice_fault_injected_total"]
	if m["kind=abort,route=r"] != 1 || m["kind=delay,route=r"] != 0 || len(m) != 4 {
		t.Fatalf("sluice_fault_injected_total = %v", m)
	}
	// An injected 502 is not the upstream's: no upstream request counted.
	if n := gather(t, f.p)["sluice_upstream_requests_total"]; len(n) != 0 {
		t.Fatalf("upstream requests counted: %v", n)
	}
}

func TestFaultAbortPercentWithinBinomialBound(t *testing.T) {
	f := startFaultRig(t, nil, "    fault: {abort: {status: 503, percent: 30}}", "ok")
	const n, pct = 1000, 0.30
	aborted := 0
	for range n {
		resp, _ := get(t, f.url+"/")
		switch {
		case resp.StatusCode == 503 && resp.Header.Get("Sluice-Fault") == "abort":
			aborted++
		case resp.StatusCode != 200:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	// Binomial(1000, 0.3): mean 300, sd sqrt(1000·0.3·0.7) ≈ 14.5. Five
	// standard deviations either side (±72) is missed by a fair sampler
	// with probability below 1e-6; the seed is fixed anyway.
	sd := math.Sqrt(n * pct * (1 - pct))
	if lo, hi := n*pct-5*sd, n*pct+5*sd; float64(aborted) < lo || float64(aborted) > hi {
		t.Fatalf("%d of %d aborted, want within [%.0f, %.0f]", aborted, n, lo, hi)
	}
	if int(f.hits.Load()) != n-aborted {
		t.Fatalf("upstream got %d, want %d", f.hits.Load(), n-aborted)
	}
	if got := f.p.Routes()[0].FaultsInjected("abort"); got != uint64(aborted) {
		t.Fatalf("counted %d aborts, answered %d", got, aborted)
	}
}

func TestFaultHeaderOnlyMarkedRequests(t *testing.T) {
	f := startFaultRig(t, nil, "    fault: {abort: {status: 503}, header: x-fault}", "ok")
	for _, tc := range []struct {
		value  string // "" = header absent
		status int
	}{
		{"", 200}, {"yes", 503}, {"100", 503}, {"0", 200}, {" 100 ", 503}, {"", 200},
	} {
		req, _ := http.NewRequest("GET", f.url+"/", nil)
		if tc.value != "" {
			req.Header.Set("X-Fault", tc.value)
		}
		resp, _ := do(t, req)
		if resp.StatusCode != tc.status {
			t.Errorf("X-Fault %q: status %d, want %d", tc.value, resp.StatusCode, tc.status)
		}
	}
	if f.hits.Load() != 3 {
		t.Fatalf("upstream got %d, want 3", f.hits.Load())
	}
}

func TestFaultHeaderPercent(t *testing.T) {
	f := startFaultRig(t, nil, "    fault: {abort: {status: 503}, header: X-Fault}", "ok")
	aborted := 0
	const n = 400
	for range n {
		req, _ := http.NewRequest("GET", f.url+"/", nil)
		req.Header.Set("X-Fault", "50")
		if resp, _ := do(t, req); resp.StatusCode == 503 {
			aborted++
		}
	}
	// Binomial(400, 0.5): sd 10; five of them either side.
	if aborted < 150 || aborted > 250 {
		t.Fatalf("%d of %d aborted at X-Fault: 50", aborted, n)
	}
}

func TestFaultReset(t *testing.T) {
	f := startFaultRig(t, nil, "    fault: {reset: {}}", "ok")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	_, err := client.Get(f.url + "/")
	if err == nil {
		t.Fatal("reset request got an answer")
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("error %v, want connection reset by peer", err)
	}
	if f.hits.Load() != 0 {
		t.Fatal("upstream reached")
	}
	if got := f.firstFault(t); got != "reset" {
		t.Fatalf("access log fault = %q", got)
	}
	if m := gather(t, f.p)["sluice_requests_total"]; m["code=444,route=r"] != 1 {
		t.Fatalf("sluice_requests_total = %v", m)
	}
}

func TestFaultDelayWaitsOnTheClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	f := startFaultRig(t, clk, "    fault: {delay: {duration: 5s}}", "slow ok")
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(f.url + "/")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp.StatusCode, string(b), err}
	}()
	clk.WaitTimers(1)
	if f.hits.Load() != 0 {
		t.Fatal("the upstream was reached before the delay passed")
	}
	if inflight := f.p.Routes()[0].Admission().Inflight(); inflight != 1 {
		t.Fatalf("inflight during the delay = %d, want 1", inflight)
	}
	clk.Advance(5 * time.Second)
	r := <-done
	if r.err != nil || r.status != 200 || r.body != "slow ok" {
		t.Fatalf("%+v", r)
	}
	if got := f.firstFault(t); got != "delay" {
		t.Fatalf("access log fault = %q", got)
	}
}

func TestFaultDelayCutByRouteTimeout(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	// The delay waits on the (fake, never advanced) clock; the route
	// deadline, on real time, ends it with the upstream timeout answer.
	f := startFaultRig(t, clk, "    timeout: 50ms\n    fault: {delay: {duration: 1h}}", "ok")
	resp, body := get(t, f.url+"/")
	if resp.StatusCode != 504 {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	br := f.p.Routes()[0].Upstream().Breaker()
	for range 3 {
		get(t, f.url+"/")
	}
	if br.State() != breaker.StateClosed {
		t.Fatalf("injected delays tripped the breaker: %v", br.State())
	}
	if n := gather(t, f.p)["sluice_upstream_requests_total"]; len(n) != 0 {
		t.Fatalf("a cut delay counted as an upstream answer: %v", n)
	}
}

func TestFaultBodyRatePacesOnTheClock(t *testing.T) {
	clk := clock.NewReporting(time.Unix(1_700_000_000, 0))
	body := strings.Repeat("x", 1000)
	f := startFaultRig(t, clk, "    fault: {body_rate: 1000}", body)
	done := make(chan string, 1)
	go func() {
		resp, err := http.Get(f.url + "/")
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	start := clk.Now()
	var got string
	waits := 0
loop:
	for {
		select {
		case at := <-clk.Armed:
			waits++
			clk.Set(at)
		case got = <-done:
			break loop
		}
	}
	if got != body {
		t.Fatalf("body %q", got)
	}
	// The pacer may wait once more after its last chunk, and the client
	// can have read everything before that wait is armed: keep the clock
	// moving until the handler has finished (its access log line).
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(f.access.String(), "\n"); {
		select {
		case at := <-clk.Armed:
			waits++
			clk.Set(at)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the handler never finished")
		}
	}
	// 1000 bytes at 1000 bytes/s: one second of the clock, in chunks of
	// a tenth of a second's worth.
	if took := clk.Now().Sub(start); took != time.Second || waits != 10 {
		t.Fatalf("paced over %v in %d waits, want 1s in 10", took, waits)
	}
	if got := f.firstFault(t); got != "body_rate" {
		t.Fatalf("access log fault = %q", got)
	}
}

func TestFaultAbortTripsBreakerOnlyWithCountAsFailure(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want breaker.State
	}{
		{"    fault: {abort: {status: 503}}", breaker.StateClosed},
		{"    fault: {abort: {status: 500}, count_as_failure: true}", breaker.StateClosed}, // 500 is not a failure status
		{"    fault: {abort: {status: 503}, count_as_failure: true}", breaker.StateOpen},
		{"    fault: {reset: {}, count_as_failure: true}", breaker.StateOpen},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			f := startFaultRig(t, nil, tc.yaml, "ok")
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for range 3 {
				if resp, err := client.Get(f.url + "/"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			if got := f.p.Routes()[0].Upstream().Breaker().State(); got != tc.want {
				t.Fatalf("breaker %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRuntimeFaultExpiresOnTheClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	f := startFaultRig(t, clk, "", "ok")
	rt := f.p.Routes()[0]
	if _, ok := rt.Fault(clk.Now()); ok {
		t.Fatal("a route without a fault reports one")
	}
	until, err := f.p.SetFault("r", config.Fault{Abort: &config.FaultAbort{Status: 503, Percent: 100}}, 30*time.Second)
	if err != nil || !until.Equal(clk.Now().Add(30*time.Second)) {
		t.Fatalf("until %v, %v", until, err)
	}
	if resp, _ := get(t, f.url+"/"); resp.StatusCode != 503 {
		t.Fatalf("status %d with the fault on", resp.StatusCode)
	}
	clk.Advance(30 * time.Second)
	if resp, _ := get(t, f.url+"/"); resp.StatusCode != 200 {
		t.Fatalf("status %d after the fault expired", resp.StatusCode)
	}
	if _, ok := rt.Fault(clk.Now()); ok {
		t.Fatal("an expired fault is still reported")
	}
	if _, err := f.p.SetFault("nope", config.Fault{}, time.Second); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("unknown route: %v", err)
	}
}

func TestRuntimeFaultAcrossReload(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	f := startFaultRig(t, clk, "", "ok")
	base := f.p.Routes()[0].cfg
	reload := func(timeout time.Duration) {
		t.Helper()
		cfg := &config.Config{Upstreams: []config.Upstream{f.p.Upstreams()[0].cfg}, Routes: []config.Route{base}}
		cfg.Routes[0].Timeout = timeout
		if err := f.p.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.p.SetFault("r", config.Fault{Abort: &config.FaultAbort{Status: 503, Percent: 100}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	reload(base.Timeout) // unchanged route: the runtime fault stays
	if resp, _ := get(t, f.url+"/"); resp.StatusCode != 503 {
		t.Fatalf("status %d after an unchanged reload", resp.StatusCode)
	}
	reload(base.Timeout + time.Second) // changed route: it starts without one
	if resp, _ := get(t, f.url+"/"); resp.StatusCode != 200 {
		t.Fatalf("status %d after the route changed", resp.StatusCode)
	}
}

func TestFaultInSpan(t *testing.T) {
	rcv := otlptest.NewHTTP(t)
	tp, err := telemetry.New(context.Background(), config.Tracing{
		Exporter: "otlp", Protocol: "http/protobuf", Endpoint: rcv.Endpoint(), SampleRatio: 1, ServiceName: "sluice-test",
	}, "v0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	up := echoUpstream(t, "users")
	p := startObservedProxy(t, fmt.Sprintf(`
upstreams: [{name: users, targets: ["%s"]}]
routes:
  - {name: users-api, match: {path_prefix: /users}, upstream: users, fault: {abort: {status: 503}, header: X-Fault}}
`, up.URL), Options{Tracer: tp.Tracer(), Propagator: tp.Propagator()})
	req, _ := http.NewRequest("GET", p.URL+"/users/1", nil)
	req.Header.Set("X-Fault", "on")
	if resp, _ := do(t, req); resp.StatusCode != 503 {
		t.Fatalf("faulted: %d", resp.StatusCode)
	}
	if resp, _ := get(t, p.URL+"/users/2"); resp.StatusCode != 200 {
		t.Fatalf("unmarked: %d", resp.StatusCode)
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	if spans[0].Attributes["sluice.fault"] != "abort" {
		t.Errorf("faulted span: sluice.fault = %v", spans[0].Attributes["sluice.fault"])
	}
	if _, has := spans[1].Attributes["sluice.fault"]; has {
		t.Errorf("unmarked span carries sluice.fault: %v", spans[1].Attributes)
	}
}
