package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/admission"
)

// answers is the client-side tally of a fault test: one entry per request,
// by status, or by transport error if no status came back.
type answers struct {
	mu     sync.Mutex // guards byCode, errors
	byCode map[int]int
	errors []string
}

func (a *answers) add(code int, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.errors = append(a.errors, err.Error())
		return
	}
	a.byCode[code]++
}

func (a *answers) total() int {
	n := len(a.errors)
	for _, c := range a.byCode {
		n += c
	}
	return n
}

// fire sends n requests from c concurrent clients and tallies the answers.
func fire(t *testing.T, url string, clients, n int) *answers {
	t.Helper()
	a := &answers{byCode: map[int]int{}}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	var next atomic.Int64
	for c := 0; c < clients; c++ {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				resp, err := client.Get(url)
				if err != nil {
					a.add(0, err)
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					a.add(0, fmt.Errorf("status %d, body: %w", resp.StatusCode, err))
					continue
				}
				a.add(resp.StatusCode, nil)
			}
		})
	}
	wg.Wait()
	return a
}

// checkAccounting asserts the proxy's own counters match the clients' tally
// exactly, and that nothing is left in flight or queued.
func checkAccounting(t *testing.T, p *testProxy, a *answers, sent int) {
	t.Helper()
	if a.total() != sent {
		t.Errorf("%d answers for %d requests", a.total(), sent)
	}
	rt := p.Routes()[0]
	adm := rt.Admission()
	var rejected uint64
	for _, r := range admission.Rejections {
		rejected += adm.Rejected(r)
	}
	if got := adm.Admitted() + rejected + adm.Rejected(admission.ClientGone); got != uint64(sent) {
		t.Errorf("proxy counted admitted %d + refused %d = %d, want %d", adm.Admitted(), rejected, got, sent)
	}
	var coded uint64
	rt.Codes(func(_ int, n uint64) { coded += n })
	if coded != uint64(sent) {
		t.Errorf("sluice_requests_total sums to %d, want %d", coded, sent)
	}
	waitUntil(t, "nothing in flight", func() bool { return adm.Inflight() == 0 && adm.QueueDepth() == 0 })
}

// TestFaultUpstreamKilledMidLoad closes the upstream (and every connection
// to it) while requests are in flight: each request still gets exactly one
// answer, 200 before the kill and 502 after, never a hang or a dropped
// connection to the client.
func TestFaultUpstreamKilledMidLoad(t *testing.T) {
	var served atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1) > 100 {
			time.Sleep(20 * time.Millisecond) // be mid-request when the kill comes
		}
		io.WriteString(w, "ok")
	})}
	go up.Serve(ln)
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["http://%s"], connect_timeout: 1s}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, bulkhead: {max_concurrent: 8}, queue: {max_depth: 64, max_wait: 10s}}]
`, ln.Addr()))
	go func() {
		for served.Load() < 150 {
			time.Sleep(time.Millisecond)
		}
		up.Close() // kills the listener and every open connection
	}()
	const sent = 400
	a := fire(t, p.URL+"/", 16, sent)
	if len(a.errors) > 0 {
		t.Errorf("clients saw transport errors instead of answers: %v", a.errors[:min(3, len(a.errors))])
	}
	if a.byCode[200] < 100 || a.byCode[502] == 0 || a.byCode[200]+a.byCode[502] != sent {
		t.Errorf("answers %v: want 200s before the kill, 502s after, nothing else", a.byCode)
	}
	checkAccounting(t, p, a, sent)
	var up502 uint64
	p.Upstreams()[0].Codes(func(code int, n uint64) {
		if code == 502 {
			up502 = n
		}
	})
	if up502 != uint64(a.byCode[502]) {
		t.Errorf("sluice_upstream_requests_total{code=502} = %d, clients saw %d", up502, a.byCode[502])
	}
}

// TestFaultUpstreamAcceptsAndHangs: a target that accepts connections and
// never answers costs each request response_header_timeout (504), then the
// breaker stops sending to it; slots are all given back.
func TestFaultUpstreamAcceptsAndHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns sync.WaitGroup
	var accepted []net.Conn
	var mu sync.Mutex
	conns.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c) // read nothing, write nothing
			mu.Unlock()
		}
	})
	defer func() {
		ln.Close()
		conns.Wait()
		mu.Lock()
		for _, c := range accepted {
			c.Close()
		}
		mu.Unlock()
	}()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["http://%s"], response_header_timeout: 100ms, breaker: {consecutive_failures: 4, open_timeout: 1m}}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, bulkhead: {max_concurrent: 4}, queue: {max_depth: 50, max_wait: 10s}}]
`, ln.Addr()))
	const sent = 40
	a := fire(t, p.URL+"/", 4, sent)
	if len(a.errors) > 0 || a.byCode[504] < 4 || a.byCode[504]+a.byCode[503] != sent {
		t.Errorf("answers %v errors %v: want 504s until the breaker opens, then 503", a.byCode, a.errors)
	}
	if p.Routes()[0].Admission().Rejected(admission.BreakerOpen) == 0 {
		t.Error("breaker never opened on a hanging upstream")
	}
	checkAccounting(t, p, a, sent)
}

// TestFault5xxStorm: upstream 5xx pass through as they are, count in the
// upstream's codes, and open the breaker; once open, refusals are 503
// breaker_open and the upstream is spared.
func TestFault5xxStorm(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "storm", http.StatusServiceUnavailable)
	}))
	defer up.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"], breaker: {consecutive_failures: 10, open_timeout: 1m}}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, up.URL))
	const sent = 200
	a := fire(t, p.URL+"/", 8, sent)
	if len(a.errors) > 0 || a.byCode[503] != sent {
		t.Fatalf("answers %v errors %v", a.byCode, a.errors)
	}
	adm := p.Routes()[0].Admission()
	if got := int64(adm.Admitted()); got != hits.Load() {
		t.Errorf("admitted %d but the upstream saw %d", got, hits.Load())
	}
	if hits.Load() > 20 || adm.Rejected(admission.BreakerOpen) < sent-20 {
		t.Errorf("upstream hit %d times, breaker refused %d: the breaker did not spare it", hits.Load(), adm.Rejected(admission.BreakerOpen))
	}
	checkAccounting(t, p, a, sent)
}

// TestFaultDribblingBody: an upstream that sends its body a byte at a time
// is streamed through while it keeps within the route timeout, and cut when
// it passes it; either way the slot is freed.
func TestFaultDribblingBody(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 5
		if r.URL.Path == "/long" {
			n = 1000
		}
		w.Header().Set("Content-Length", fmt.Sprint(n))
		rc := http.NewResponseController(w)
		for i := 0; i < n; i++ {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			rc.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}))
	defer up.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, timeout: 500ms, bulkhead: {max_concurrent: 2}}]
`, up.URL))
	resp, body := get(t, p.URL+"/short")
	if resp.StatusCode != 200 || string(body) != "xxxxx" {
		t.Errorf("slow but timely body: %d %q", resp.StatusCode, body)
	}
	// Cut at the deadline: depending on whether the buffered headers had
	// left yet, the client sees the connection close before any status
	// (EOF) or a 200 whose body stops short of its Content-Length. Never a
	// complete answer, and never a hang.
	var got []byte
	resp, err := http.Get(p.URL + "/long")
	if err == nil {
		got, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil || len(got) >= 1000 {
		t.Errorf("a body outliving the route timeout was not cut: %d bytes, err %v", len(got), err)
	}
	if !strings.Contains(p.logs.String(), `"aborted"`) && !strings.Contains(p.logs.String(), "ReverseProxy") {
		t.Logf("logs: %s", p.logs.String())
	}
	adm := p.Routes()[0].Admission()
	waitUntil(t, "slots freed", func() bool { return adm.Inflight() == 0 && adm.Bulkhead().Inflight() == 0 })
}
