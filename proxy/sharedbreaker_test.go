package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"sluice/breaker"
	"sluice/internal/testutil"
)

// TestSharedBreaker: failures seen by replica A open the shared breaker of
// the same upstream in replica B, whose own requests all succeed, and in a
// replica C started afterwards; B refuses with the open period A set. An
// upstream without breaker.shared stays each replica's own.
func TestSharedBreaker(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	t.Cleanup(failing.Close)
	healthy := echoUpstream(t, "healthy")
	yaml := func(target string) string {
		return fmt.Sprintf(`
redis: {addrs: [%q], timeout: 200ms}
upstreams:
  - {name: api, targets: [%q], breaker: {consecutive_failures: 2, open_timeout: 30s, shared: true}}
  - {name: solo, targets: [%q], breaker: {consecutive_failures: 2, open_timeout: 30s}}
routes:
  - {name: api, match: {path_prefix: /api}, upstream: api}
  - {name: solo, match: {path_prefix: /solo}, upstream: solo}
`, r.Addr, target, target)
	}
	a := startProxy(t, yaml(failing.URL))
	b := startProxy(t, yaml(healthy.URL))
	brOf := func(p *testProxy, name string) *breaker.Breaker { return p.tab.Load().upstream(name).br }
	testutil.WaitFor(t, "both replicas subscribed", func() bool { return r.Do("PUBSUB", "NUMSUB", "sluice:breaker") == "sluice:breaker :2" })

	for range 2 {
		get(t, a.URL+"/api")
		get(t, a.URL+"/solo")
	}
	if brOf(a, "api").State() != breaker.StateOpen || brOf(a, "solo").State() != breaker.StateOpen {
		t.Fatal("replica A's breakers did not trip")
	}
	testutil.WaitFor(t, "B's shared breaker open", func() bool { return brOf(b, "api").State() == breaker.StateOpen })
	resp, _ := get(t, b.URL+"/api")
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != 503 || resp.Header.Get("Sluice-Reject") != "breaker_open" || ra < 29 || ra > 30 {
		t.Fatalf("B answered %d %q Retry-After %q; want 503 breaker_open with about 30s left", resp.StatusCode,
			resp.Header.Get("Sluice-Reject"), resp.Header.Get("Retry-After"))
	}
	if resp, _ := get(t, b.URL+"/solo"); resp.StatusCode != 200 || brOf(b, "solo").State() != breaker.StateClosed {
		t.Fatalf("B's unshared breaker followed A's: %d, %v", resp.StatusCode, brOf(b, "solo").State())
	}
	if brOf(b, "api").Transitions(breaker.StateOpen) != 1 {
		t.Errorf("B counted %d open entries, want 1", brOf(b, "api").Transitions(breaker.StateOpen))
	}

	c := startProxy(t, yaml(healthy.URL))
	testutil.WaitFor(t, "C finds the open period", func() bool { return brOf(c, "api").State() == breaker.StateOpen })
	if left := brOf(c, "api").OpenFor(); left.Seconds() < 28 || left.Seconds() > 30 {
		t.Errorf("C's breaker open for %v, want the ~30s A set", left)
	}
}

// TestSharedBreakerRedisDown: with Redis gone a shared breaker still trips
// and refuses locally, and requests neither wait nor fail because of Redis.
func TestSharedBreakerRedisDown(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	t.Cleanup(failing.Close)
	a := startProxy(t, fmt.Sprintf(`
redis: {addrs: [%q]}
upstreams:
  - {name: api, targets: [%q], breaker: {consecutive_failures: 2, open_timeout: 30s, shared: true}}
routes:
  - {name: api, match: {path_prefix: /}, upstream: api}
`, r.Addr, failing.URL))
	r.Kill()
	codes := []int{}
	for range 4 {
		resp, _ := get(t, a.URL+"/")
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[502 502 503 503]" {
		t.Fatalf("statuses %v with Redis down, want [502 502 503 503]: the breaker trips locally", codes)
	}
	testutil.WaitFor(t, "the failed publish marks the store down", func() bool { return !a.Store().Up() })
}
