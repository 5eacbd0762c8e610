package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"sluice/admission"
)

// flappingUpstream is a real server whose /healthz answers 200 or 500 as
// the test says, and whose other paths answer with its name.
func flappingUpstream(t *testing.T, name string) (*httptest.Server, *atomic.Bool) {
	t.Helper()
	var healthy atomic.Bool
	healthy.Store(true)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status/health" {
			if r.Header.Get("User-Agent") != "sluice-health-check" {
				http.Error(w, "unexpected User-Agent", 400)
				return
			}
			if !healthy.Load() {
				http.Error(w, "down", http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(s.Close)
	return s, &healthy
}

func TestHealthChecksRemoveAndRestore(t *testing.T) {
	a, aHealthy := flappingUpstream(t, "a")
	b, bHealthy := flappingUpstream(t, "b")
	p := startProxy(t, fmt.Sprintf(`
upstreams:
  - name: pool
    targets: %s
    health_check: {path: /status/health, interval: 5s, unhealthy_after: 2, healthy_after: 2}
routes:
  - {name: r, match: {path_prefix: /}, upstream: pool}
`, yamlList(a.URL, b.URL)))
	hc := p.Upstreams()[0].health
	ctx := context.Background()

	served := func() map[string]int {
		got := map[string]int{}
		for i := 0; i < 10; i++ {
			resp, body := get(t, p.URL+"/x")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			got[string(body)]++
		}
		return got
	}
	if got := served(); got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("both healthy: served %v, want 5 each", got)
	}

	aHealthy.Store(false)
	hc.CheckNow(ctx)
	if got := served(); got["a"] != 5 {
		t.Fatalf("after 1 failed check of 2 needed: served %v, a should stay in rotation", got)
	}
	hc.CheckNow(ctx)
	if got := served(); got["b"] != 10 {
		t.Fatalf("a unhealthy: served %v, want all on b", got)
	}

	aHealthy.Store(true)
	hc.CheckNow(ctx)
	if got := served(); got["b"] != 10 {
		t.Fatalf("after 1 good check of 2 needed: served %v, a should still be out", got)
	}
	hc.CheckNow(ctx)
	if got := served(); got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("a restored: served %v, want 5 each", got)
	}

	// No healthy target: 503 no_healthy_upstream, Retry-After the time to
	// the next round (here on a fixed clock: 2.5 s → 3).
	aHealthy.Store(false)
	bHealthy.Store(false)
	hc.CheckNow(ctx)
	hc.CheckNow(ctx)
	now := time.Unix(1_700_000_000, 0)
	hc.now = func() time.Time { return now }
	hc.nextRound.Store(now.Add(2500 * time.Millisecond).UnixNano())
	resp, body := get(t, p.URL+"/x")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("no healthy target: status %d, want 503; %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Sluice-Reject"); got != "no_healthy_upstream" {
		t.Errorf("Sluice-Reject = %q", got)
	}
	if got := resp.Header.Get("Retry-After"); got != "3" {
		t.Errorf("Retry-After = %q, want 3", got)
	}
	pb := decodeProblem(t, resp, body)
	want := problem{Type: problemCapacity, Title: "Service Unavailable", Status: 503,
		Detail: rejects[admission.NoHealthyUpstream].detail, Route: "r", Reason: "no_healthy_upstream", RetryAfter: 3}
	if pb != want {
		t.Errorf("problem %+v\nwant    %+v", pb, want)
	}
}

// TestHealthCheckLoop checks the background loop itself takes a dead target
// out of rotation and stops with its context.
func TestHealthCheckLoop(t *testing.T) {
	a, aHealthy := flappingUpstream(t, "a")
	aHealthy.Store(false)
	p := startProxy(t, fmt.Sprintf(`
upstreams:
  - name: pool
    targets: ["%s"]
    health_check: {path: /status/health, interval: 10ms, timeout: 10ms, unhealthy_after: 1}
routes:
  - {name: r, match: {path_prefix: /}, upstream: pool}
`, a.URL))
	ctx, cancel := context.WithCancel(context.Background())
	p.Start(ctx)
	tg := p.Upstreams()[0].Targets()[0]
	deadline := time.Now().Add(10 * time.Second)
	for tg.Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("loop never marked the failing target unhealthy")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	p.Close() // returns only once the loop has stopped
}
