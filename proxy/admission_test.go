package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/admission"
	"sluice/breaker"
	"sluice/clock"
	"sluice/config"
)

// countingUpstream serves every request after service, counting how many it
// holds at once and the most it ever held.
type countingUpstream struct {
	*httptest.Server
	cur, peak, served atomic.Int64
}

func newCountingUpstream(t *testing.T, service time.Duration) *countingUpstream {
	u := &countingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := u.cur.Add(1)
		for {
			p := u.peak.Load()
			if n <= p || u.peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(service)
		u.cur.Add(-1)
		u.served.Add(1)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(u.Close)
	return u
}

// tally is the client-side count of answers by status and reason.
type tally struct {
	mu             sync.Mutex // guards the fields below
	byStatus       map[int]int
	byReason       map[string]int
	missingHeaders []string
	slowQueueFull  []time.Duration
}

func (ta *tally) record(resp *http.Response, took time.Duration) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.byStatus[resp.StatusCode]++
	if resp.StatusCode == 429 || resp.StatusCode == 503 {
		reason := resp.Header.Get("Sluice-Reject")
		ta.byReason[reason]++
		if reason == "" || resp.Header.Get("Retry-After") == "" {
			ta.missingHeaders = append(ta.missingHeaders, fmt.Sprintf("%d %v", resp.StatusCode, resp.Header))
		}
		if reason == "queue_full" && took > time.Second {
			ta.slowQueueFull = append(ta.slowQueueFull, took)
		}
	}
}

// TestOverloadEveryRequestAnsweredOnce offers far more than the upstream's
// capacity from many concurrent clients and checks, from the client side:
// every request got exactly one answer (2xx + 429 + 503 = sent), every
// refusal names its reason and carries Retry-After, queue_full answers come
// at once rather than after max_wait, and the upstream never held more than
// max_concurrent requests.
func TestOverloadEveryRequestAnsweredOnce(t *testing.T) {
	up := newCountingUpstream(t, 20*time.Millisecond) // 10 slots × 20 ms: 500 req/s
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - name: r
    match: {path_prefix: /}
    upstream: u
    rate_limit: {rps: 400, burst: 50}
    bulkhead: {max_concurrent: 10}
    queue: {max_depth: 20, max_wait: 5s}
`, up.URL))

	const clients, each = 60, 25
	ta := &tally{byStatus: map[int]int{}, byReason: map[string]int{}}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var wg sync.WaitGroup
	var errs atomic.Int64
	for c := 0; c < clients; c++ {
		wg.Go(func() {
			for i := 0; i < each; i++ {
				start := time.Now()
				resp, err := client.Get(p.URL + "/work")
				if err != nil {
					errs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ta.record(resp, time.Since(start))
			}
		})
	}
	wg.Wait()

	sent := clients * each
	answered := 0
	for _, n := range ta.byStatus {
		answered += n
	}
	if errs.Load() != 0 || answered != sent {
		t.Fatalf("sent %d, answered %d, transport errors %d: %v", sent, answered, errs.Load(), ta.byStatus)
	}
	if ok, r429, r503 := ta.byStatus[200], ta.byStatus[429], ta.byStatus[503]; ok+r429+r503 != sent {
		t.Errorf("2xx+429+503 = %d+%d+%d != %d sent (%v)", ok, r429, r503, sent, ta.byStatus)
	}
	if ta.byStatus[503] == 0 || ta.byReason["queue_full"] == 0 {
		t.Errorf("no queue_full refusals under %dx overload: %v %v", clients/30, ta.byStatus, ta.byReason)
	}
	if len(ta.missingHeaders) > 0 {
		t.Errorf("%d refusals without Sluice-Reject or Retry-After, e.g. %s", len(ta.missingHeaders), ta.missingHeaders[0])
	}
	if len(ta.slowQueueFull) > 0 {
		t.Errorf("%d queue_full refusals took over 1s (max_wait is 5s: they waited to be refused): %v",
			len(ta.slowQueueFull), ta.slowQueueFull[0])
	}
	if peak := up.peak.Load(); peak > 10 {
		t.Errorf("upstream held %d requests at once, max_concurrent is 10", peak)
	}
	if served := int(up.served.Load()); served != ta.byStatus[200] {
		t.Errorf("upstream served %d, clients got %d successes", served, ta.byStatus[200])
	}
	// The proxy's own counters agree with the clients'.
	adm := p.Routes()[0].Admission()
	var rejected uint64
	for _, r := range admission.Rejections {
		rejected += adm.Rejected(r)
	}
	if got := adm.Admitted() + rejected; got != uint64(sent) || adm.Admitted() != uint64(ta.byStatus[200]) {
		t.Errorf("proxy counted admitted %d + rejected %d, want %d sent with %d admitted",
			adm.Admitted(), rejected, sent, ta.byStatus[200])
	}
	if adm.Inflight() != 0 || adm.QueueDepth() != 0 {
		t.Errorf("after the load: inflight %d, queue depth %d", adm.Inflight(), adm.QueueDepth())
	}
	t.Logf("answers %v, reasons %v, upstream peak %d", ta.byStatus, ta.byReason, up.peak.Load())
}

// TestConcurrencyNeverExceedsBulkhead: a slow upstream offered 200 parallel
// requests never sees more than max_concurrent of them at once.
func TestConcurrencyNeverExceedsBulkhead(t *testing.T) {
	up := newCountingUpstream(t, 5*time.Millisecond)
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - {name: r, match: {path_prefix: /}, upstream: u, bulkhead: {max_concurrent: 20}, queue: {max_depth: 1000, max_wait: 30s}}
`, up.URL))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := 0; i < 200; i++ {
		wg.Go(func() {
			resp, err := client.Get(p.URL + "/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 200 {
		t.Errorf("%d of 200 succeeded; with a queue of 1000 all should", ok.Load())
	}
	if peak := up.peak.Load(); peak > 20 || peak < 2 {
		t.Errorf("upstream peak concurrency %d, want 2..20", peak)
	}
}

func TestRateLimitedResponse(t *testing.T) {
	up := echoUpstream(t, "u")
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - {name: slowpoke, match: {path_prefix: /}, upstream: u, rate_limit: {rps: 0.5, burst: 1}}
`, up.URL))
	resp, body := get(t, p.URL+"/a")
	if resp.StatusCode != 200 {
		t.Fatalf("first request: %d %s", resp.StatusCode, body)
	}
	for h, want := range map[string]string{"RateLimit-Policy": `"slowpoke";q=1;w=2`, "RateLimit": `"slowpoke";r=0;t=2`} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("success %s = %q, want %q", h, got, want)
		}
	}
	resp, body = get(t, p.URL+"/a")
	if resp.StatusCode != 429 {
		t.Fatalf("second request: %d, want 429", resp.StatusCode)
	}
	for h, want := range map[string]string{
		"Sluice-Reject": "rate_limited", "Retry-After": "2", // rps 0.5: the next token is 2 s away
		"RateLimit-Policy": `"slowpoke";q=1;w=2`, "RateLimit": `"slowpoke";r=0;t=2`,
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("429 %s = %q, want %q", h, got, want)
		}
	}
	pb := decodeProblem(t, resp, body)
	want := problem{Type: problemQuota, Title: "Too Many Requests", Status: 429,
		Detail: rejects[admission.RateLimited].detail, Route: "slowpoke", Reason: "rate_limited", RetryAfter: 2}
	if pb != want {
		t.Errorf("problem %+v\nwant    %+v", pb, want)
	}
}

// clientFrom returns a client whose connections come from the loopback
// address ip, so that client_ip keys see distinct clients.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func TestKeyedRateLimitsIsolateClients(t *testing.T) {
	up := echoUpstream(t, "u")
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - {name: ip, match: {path: /ip}, upstream: u, rate_limit: {rps: 0.1, burst: 2, key: client_ip}}
  - {name: hdr, match: {path: /hdr}, upstream: u, rate_limit: {rps: 0.1, burst: 1, key: "header:X-Tenant"}}
`, up.URL))
	status := func(c *http.Client, path, tenant string) int {
		req, _ := http.NewRequest("GET", p.URL+path, nil)
		if tenant != "" {
			req.Header.Set("X-Tenant", tenant)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	a, b := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	got := []int{status(a, "/ip", ""), status(a, "/ip", ""), status(a, "/ip", ""), status(b, "/ip", ""), status(b, "/ip", "")}
	if want := []int{200, 200, 429, 200, 200}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("client_ip: statuses %v, want %v (b must not pay for a)", got, want)
	}
	got = []int{status(a, "/hdr", "acme"), status(a, "/hdr", "acme"), status(a, "/hdr", "globex"), status(b, "/hdr", "acme")}
	if want := []int{200, 429, 200, 429}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("header key: statuses %v, want %v (the bucket follows the tenant, not the connection)", got, want)
	}
}

// TestBreakerTripsAndRecovers drives a real failing upstream through the
// proxy on a fake clock: the breaker opens after consecutive failures,
// refusals say breaker_open with the time left, and once the upstream heals
// the half-open probes close it again.
func TestBreakerTripsAndRecovers(t *testing.T) {
	var healthy atomic.Bool
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !healthy.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
upstreams:
  - name: u
    targets: ["%s"]
    breaker: {consecutive_failures: 3, open_timeout: 30s, half_open_requests: 2}
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	px, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler), Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(px)
	defer srv.Close()
	defer px.Close()
	br := px.Upstreams()[0].Breaker()

	for i := 0; i < 3; i++ {
		if resp, _ := get(t, srv.URL+"/"); resp.StatusCode != 502 {
			t.Fatalf("failure %d: status %d, want the upstream's 502", i, resp.StatusCode)
		}
	}
	if br.State() != breaker.StateOpen {
		t.Fatalf("breaker %v after 3 failures, want open", br.State())
	}
	fc.Advance(12 * time.Second)
	before := hits.Load()
	resp, body := get(t, srv.URL+"/")
	if resp.StatusCode != 503 || resp.Header.Get("Sluice-Reject") != "breaker_open" || resp.Header.Get("Retry-After") != "18" {
		t.Fatalf("while open: %d %q Retry-After %q, want 503 breaker_open 18; %s",
			resp.StatusCode, resp.Header.Get("Sluice-Reject"), resp.Header.Get("Retry-After"), body)
	}
	if hits.Load() != before {
		t.Error("an open breaker let a request reach the upstream")
	}

	healthy.Store(true)
	fc.Advance(18 * time.Second) // half-open
	for i := 0; i < 2; i++ {
		if resp, _ := get(t, srv.URL+"/"); resp.StatusCode != 200 {
			t.Fatalf("probe %d: %d", i, resp.StatusCode)
		}
	}
	if br.State() != breaker.StateClosed {
		t.Fatalf("breaker %v after 2 good probes, want closed", br.State())
	}
	for i := 0; i < 5; i++ {
		if resp, _ := get(t, srv.URL+"/"); resp.StatusCode != 200 {
			t.Fatalf("after recovery: %d", resp.StatusCode)
		}
	}
	if n := br.Transitions(breaker.StateOpen); n != 1 {
		t.Errorf("opened %d times, want 1", n)
	}
}

// TestConnectErrorsTripBreaker: a dead upstream (connection refused) counts
// as failure, so the breaker stops the proxy dialing it.
func TestConnectErrorsTripBreaker(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"], breaker: {consecutive_failures: 2, open_timeout: 1m}}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, dead))
	codes := []int{}
	for i := 0; i < 4; i++ {
		resp, _ := get(t, p.URL+"/")
		codes = append(codes, resp.StatusCode)
	}
	if want := []int{502, 502, 503, 503}; fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("statuses %v, want %v", codes, want)
	}
}

// TestClientCancelDoesNotTrip: clients abandoning requests to a slow but
// healthy upstream must not open its breaker.
func TestClientCancelDoesNotTrip(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	defer close(release)
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"], breaker: {consecutive_failures: 2}}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, up.URL))
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "GET", p.URL+"/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		cancel()
	}
	br := p.Upstreams()[0].Breaker()
	waitUntil(t, "requests finished", func() bool { return p.Routes()[0].Admission().Inflight() == 0 })
	if br.State() != breaker.StateClosed {
		t.Errorf("breaker %v after client cancellations, want closed", br.State())
	}
}

// TestQueuedClientLeavingFreesItsPlace: a client that gives up while queued
// leaves the queue at once, and the next request gets the slot.
func TestQueuedClientLeavingFreesItsPlace(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	defer up.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, bulkhead: {max_concurrent: 1}, queue: {max_depth: 1, max_wait: 1m}}]
`, up.URL))
	adm := p.Routes()[0].Admission()
	go func() {
		if resp, err := http.Get(p.URL + "/hold"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", p.URL+"/queued", nil)
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, "second request queued", func() bool { return adm.QueueDepth() == 1 })
	cancel()
	waitUntil(t, "queue place freed", func() bool { return adm.QueueDepth() == 0 })
	if n := adm.Rejected(admission.ClientGone); n != 1 {
		t.Errorf("client_gone count %d, want 1", n)
	}
	close(release)
	waitUntil(t, "holder finished", func() bool { return adm.Inflight() == 0 })
	resp, _ := get(t, p.URL+"/next")
	if resp.StatusCode != 200 {
		t.Errorf("next request %d: the slot was lost", resp.StatusCode)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
