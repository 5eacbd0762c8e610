package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/config"
)

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("reload.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// TestReloadKeepsUnchangedRouteState: a reload that changes one route
// leaves the others' buckets, counters and objects as they were, and gives
// the changed route fresh state under its new settings.
func TestReloadKeepsUnchangedRouteState(t *testing.T) {
	up := echoUpstream(t, "u")
	base := `
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - {name: kept, match: {path_prefix: /kept}, upstream: u, rate_limit: {rps: 0.01, burst: 2}}
  - {name: changed, match: {path_prefix: /changed}, upstream: u, rate_limit: {rps: 0.01, burst: %d}}
`
	p := startProxy(t, fmt.Sprintf(base, up.URL, 1))
	codes := func(path string, n int) []int {
		var out []int
		for i := 0; i < n; i++ {
			resp, _ := get(t, p.URL+path)
			out = append(out, resp.StatusCode)
		}
		return out
	}
	if got := codes("/kept", 2); fmt.Sprint(got) != "[200 200]" {
		t.Fatalf("kept before reload: %v", got)
	}
	if got := codes("/changed", 2); fmt.Sprint(got) != "[200 429]" {
		t.Fatalf("changed before reload: %v", got)
	}
	keptBefore := p.Routes()[0]

	if err := p.Reload(mustParse(t, fmt.Sprintf(base, up.URL, 3))); err != nil {
		t.Fatal(err)
	}
	if p.Routes()[0] != keptBefore {
		t.Error("the unchanged route was rebuilt")
	}
	// kept's bucket is still empty: its state survived.
	if got := codes("/kept", 1); fmt.Sprint(got) != "[429]" {
		t.Errorf("kept after reload: %v, want its empty bucket to carry over", got)
	}
	// changed has a new bucket of 3.
	if got := codes("/changed", 4); fmt.Sprint(got) != "[200 200 200 429]" {
		t.Errorf("changed after reload: %v, want a fresh bucket of 3", got)
	}
	kept := p.Routes()[0].Admission()
	if kept.Admitted() != 2 || kept.Rejected(1) != 1 { // 1 = admission.RateLimited
		t.Errorf("kept's counters: admitted %d rate_limited %d, want 2 and 1 (continued across the reload)", kept.Admitted(), kept.Rejected(1))
	}
}

// TestReloadInFlightAndQueuedFinishUnderOldConfig holds one request in
// flight and one queued on a route, reloads the route onto another upstream,
// and checks both finish against the old upstream while new requests go to
// the new one.
func TestReloadInFlightAndQueuedFinishUnderOldConfig(t *testing.T) {
	release := make(chan struct{})
	var oldHits atomic.Int64
	oldUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		oldHits.Add(1)
		<-release
		io.WriteString(w, "old")
	}))
	defer oldUp.Close()
	newUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "new") }))
	defer newUp.Close()
	cfg := `
upstreams: [{name: a, targets: ["%s"]}, {name: b, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: %s, bulkhead: {max_concurrent: 1}, queue: {max_depth: 5, max_wait: 1m}}]
`
	p := startProxy(t, fmt.Sprintf(cfg, oldUp.URL, newUp.URL, "a"))
	oldAdm := p.Routes()[0].Admission()

	var wg sync.WaitGroup
	bodies := make(chan string, 2)
	for i := 0; i < 2; i++ {
		wg.Go(func() {
			_, b := get(t, p.URL+"/x")
			bodies <- string(b)
		})
	}
	waitUntil(t, "one in flight, one queued", func() bool { return oldAdm.Inflight() == 1 && oldAdm.QueueDepth() == 1 })

	if err := p.Reload(mustParse(t, fmt.Sprintf(cfg, oldUp.URL, newUp.URL, "b"))); err != nil {
		t.Fatal(err)
	}
	if _, b := get(t, p.URL+"/y"); string(b) != "new" {
		t.Errorf("new request after reload answered %q, want the new upstream", b)
	}
	close(release)
	wg.Wait()
	close(bodies)
	for b := range bodies {
		if b != "old" {
			t.Errorf("a request started before the reload answered %q, want the old upstream", b)
		}
	}
	if oldHits.Load() != 2 {
		t.Errorf("old upstream served %d, want both earlier requests", oldHits.Load())
	}
}

// TestReloadUpstreamChangeKeepsRouteState: changing only an upstream's
// targets rebuilds the upstream (new pool, new breaker) but the route over
// it keeps its bucket.
func TestReloadUpstreamChangeKeepsRouteState(t *testing.T) {
	a, b := echoUpstream(t, "a"), echoUpstream(t, "b")
	cfg := `
upstreams: [{name: u, targets: ["%s"], breaker: {consecutive_failures: 3}}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, rate_limit: {rps: 0.01, burst: 2}}]
`
	p := startProxy(t, fmt.Sprintf(cfg, a.URL))
	get(t, p.URL+"/")
	oldUp := p.Upstreams()[0]
	if err := p.Reload(mustParse(t, fmt.Sprintf(cfg, b.URL))); err != nil {
		t.Fatal(err)
	}
	if p.Upstreams()[0] == oldUp {
		t.Fatal("changed upstream not rebuilt")
	}
	resp, body := get(t, p.URL+"/")
	if resp.StatusCode != 200 || decodeEcho(t, body).Name != "b" {
		t.Fatalf("after reload: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, p.URL+"/"); resp.StatusCode != 429 {
		t.Errorf("third request: %d, want 429: the route's bucket of 2 carried over", resp.StatusCode)
	}
}

// TestReloadStopsRemovedUpstreamHealthChecks: an upstream removed by a
// reload stops probing its targets.
func TestReloadStopsRemovedUpstreamHealthChecks(t *testing.T) {
	var probes atomic.Int64
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			probes.Add(1)
		}
	}))
	defer gone.Close()
	kept := echoUpstream(t, "kept")
	p := startProxy(t, fmt.Sprintf(`
upstreams:
  - {name: gone, targets: ["%s"], health_check: {interval: 5ms, timeout: 5ms}}
  - {name: kept, targets: ["%s"]}
routes: [{name: r, match: {path_prefix: /}, upstream: kept}]
`, gone.URL, kept.URL))
	p.Start(t.Context())
	waitUntil(t, "health checks running", func() bool { return probes.Load() >= 2 })
	if err := p.Reload(mustParse(t, fmt.Sprintf(`
upstreams: [{name: kept, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: kept}]
`, kept.URL))); err != nil {
		t.Fatal(err)
	}
	// Reload returned only after the removed upstream's checker stopped,
	// so no probe may follow, while the proxy itself keeps running.
	after := probes.Load()
	for i := 0; i < 5; i++ {
		if resp, _ := get(t, p.URL+"/"); resp.StatusCode != 200 {
			t.Errorf("kept route after reload: %d", resp.StatusCode)
		}
	}
	time.Sleep(50 * time.Millisecond) // ten probe intervals: long enough to see one
	if n := probes.Load(); n != after {
		t.Errorf("removed upstream probed %d more times after the reload", n-after)
	}
}

// TestDrainReachesQueuesOfReplacedRoutes: a request queued under a route
// that a reload has since replaced (its bulkhead changed, so it got a new
// controller) is refused with shutting_down by Drain, at once, like the
// requests queued under the current config.
func TestDrainReachesQueuesOfReplacedRoutes(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	defer close(release)
	cfg := `
upstreams: [{name: a, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: a, bulkhead: {max_concurrent: %d}, queue: {max_depth: 5, max_wait: 1m}}]
`
	p := startProxy(t, fmt.Sprintf(cfg, up.URL, 1))
	oldAdm := p.Routes()[0].Admission()
	codes := make(chan string, 2)
	for range 2 {
		go func() {
			resp, _ := get(t, p.URL+"/x")
			codes <- fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("Sluice-Reject"))
		}()
	}
	waitUntil(t, "one in flight, one queued", func() bool { return oldAdm.Inflight() == 1 && oldAdm.QueueDepth() == 1 })
	if err := p.Reload(mustParse(t, fmt.Sprintf(cfg, up.URL, 2))); err != nil {
		t.Fatal(err)
	}
	if p.Routes()[0].Admission() == oldAdm {
		t.Fatal("the reload kept the controller; the test needs a replaced one")
	}
	p.Drain()
	select {
	case got := <-codes:
		if got != "503 shutting_down" {
			t.Errorf("the request queued under the old config: %s, want 503 shutting_down", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request queued under the old config is still waiting after Drain")
	}
	release <- struct{}{} // the one in flight finishes
	if got := <-codes; got != "200 " {
		t.Errorf("the request in flight: %s, want 200", got)
	}
}
