package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/admission"
	"sluice/bulkhead"
	"sluice/clock"
	"sluice/config"
	"sluice/overload"
)

// overloadProxy is a proxy on a real listener whose overload manager
// reads injected sources on a fake clock: the test says what the heap and
// the scheduling latency are and samples by hand.
type overloadProxy struct {
	*testProxy
	clk  *clock.Fake
	heap atomic.Uint64
	p99  atomic.Int64
}

func startOverloadProxy(t *testing.T, yaml string) *overloadProxy {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	op := &overloadProxy{clk: clock.NewFake(time.Unix(1_700_000_000, 0))}
	logs := &syncBuffer{}
	p, err := New(cfg, Options{Log: slog.New(slog.NewJSONHandler(logs, nil)), Overload: overload.Options{
		Clock: op.clk,
		Heap:  func() uint64 { return op.heap.Load() },
		Sched: func() time.Duration { return time.Duration(op.p99.Load()) },
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	op.testProxy = &testProxy{Proxy: p, URL: srv.URL, logs: logs}
	return op
}

// sample advances the fake clock by the manager's interval and samples
// with the latency reading p99, n times.
func (op *overloadProxy) sample(p99 time.Duration, n int) {
	op.p99.Store(int64(p99))
	for range n {
		op.clk.Advance(100 * time.Millisecond)
		op.Overload().Sample()
	}
}

// checkOverloaded asserts the exact refusal of docs/SPEC.md for reason
// overloaded: 503, Sluice-Reject, Retry-After 1, problem+json naming
// route (or none, at the door).
func checkOverloaded(t *testing.T, resp *http.Response, body []byte, route string) {
	t.Helper()
	if resp.StatusCode != 503 || resp.Header.Get("Sluice-Reject") != "overloaded" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("got %d Sluice-Reject=%q Retry-After=%q (%s), want 503 overloaded, Retry-After 1",
			resp.StatusCode, resp.Header.Get("Sluice-Reject"), resp.Header.Get("Retry-After"), body)
	}
	pb := decodeProblem(t, resp, body)
	want := problem{Type: problemCapacity, Title: "Service Unavailable", Status: 503,
		Detail: "the proxy is overloaded and sheds new work until it recovers", Route: route, Reason: "overloaded", RetryAfter: 1}
	if pb != want {
		t.Errorf("problem %+v, want %+v", pb, want)
	}
}

// TestMaxInflight: with max_inflight 3 and three requests held at a
// blocking upstream (over two routes: the cap is across routes), the
// next is refused overloaded at the door, under route ""; once one
// finishes, the next is served. The counts add up.
func TestMaxInflight(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("hold") {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	p := startOverloadProxy(t, fmt.Sprintf(`
server: {max_inflight: 3}
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - {name: a, match: {path_prefix: /a}, upstream: u}
  - {name: b, match: {path_prefix: /b}, upstream: u}
`, up.URL))

	held := make(chan int, 3)
	for _, path := range []string{"/a?hold", "/a?hold", "/b?hold"} {
		go func() {
			resp, err := http.Get(p.URL + path)
			if err != nil {
				held <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			held <- resp.StatusCode
		}()
	}
	waitUntil(t, "three requests in flight", func() bool { return p.Overload().State().Inflight == 3 })

	for _, path := range []string{"/a", "/b", "/nowhere"} {
		resp, body := get(t, p.URL+path)
		checkOverloaded(t, resp, body, "")
	}
	if s := p.Overload().State(); s.Inflight != 3 || s.Refused[overload.Inflight] != 3 {
		t.Errorf("inflight %d, refused for max_inflight %d; want 3 and 3", s.Inflight, s.Refused[overload.Inflight])
	}

	releaseOnce.Do(func() { close(release) })
	for range 3 {
		if code := <-held; code != 200 {
			t.Errorf("held request: %d", code)
		}
	}
	waitUntil(t, "the held requests to leave", func() bool { return p.Overload().State().Inflight == 0 })
	if resp, _ := get(t, p.URL+"/a"); resp.StatusCode != 200 {
		t.Errorf("after the held ones finished: %d, want 200", resp.StatusCode)
	}

	m := gather(t, p.Proxy)
	if got := m["sluice_admission_rejected_total"]["reason=overloaded,route="]; got != 3 {
		t.Errorf(`rejected{route="",reason="overloaded"} = %v, want 3`, got)
	}
	for _, r := range []string{"a", "b"} {
		if got := m["sluice_admission_rejected_total"]["reason=overloaded,route="+r]; got != 0 {
			t.Errorf("route %s counted %v door refusals, want 0: the door is before routing", r, got)
		}
	}
	// 4 answered on a (2 held, 1 after), 1 on b, 3 refused at the door.
	if a, b, door := m["sluice_requests_total"]["code=200,route=a"], m["sluice_requests_total"]["code=200,route=b"], m["sluice_requests_total"]["code=503,route="]; a != 3 || b != 1 || door != 3 {
		t.Errorf("requests: a %v, b %v, door 503s %v; want 3, 1, 3", a, b, door)
	}
	if got := m["sluice_overload_inflight"][""]; got != 0 {
		t.Errorf("sluice_overload_inflight %v after all finished", got)
	}
	if p.DoorRefused() != 3 {
		t.Errorf("DoorRefused %d, want 3", p.DoorRefused())
	}
}

// TestMemoryGuard: with the heap over server.memory_limit every new
// request is refused overloaded at the door, whatever its class, until
// the heap falls under 95 % of the limit.
func TestMemoryGuard(t *testing.T) {
	up := echoUpstream(t, "u")
	p := startOverloadProxy(t, fmt.Sprintf(`
server: {memory_limit: 1MiB}
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - name: pay
    match: {path_prefix: /}
    upstream: u
    bulkhead: {max_concurrent: 10}
    priority: {class: critical}
`, up.URL))
	p.heap.Store(900 << 10)
	p.sample(0, 1)
	if resp, _ := get(t, p.URL+"/x"); resp.StatusCode != 200 {
		t.Fatalf("under the limit: %d", resp.StatusCode)
	}
	p.heap.Store(1 << 20)
	p.sample(0, 1)
	resp, body := get(t, p.URL+"/x")
	checkOverloaded(t, resp, body, "")
	if s := p.Overload().State(); !s.MemoryOver || !s.Overloaded() || s.HeapBytes != 1<<20 {
		t.Errorf("state %+v, want memory over", s)
	}
	m := gather(t, p.Proxy)
	if m["sluice_overload_state"][""] != 1 || m["sluice_overload_heap_bytes"][""] != 1<<20 || m["sluice_overload_memory_limit_bytes"][""] != 1<<20 {
		t.Errorf("metrics: state %v heap %v limit %v", m["sluice_overload_state"], m["sluice_overload_heap_bytes"], m["sluice_overload_memory_limit_bytes"])
	}
	// 96 % of the limit: still refusing (hysteresis); 94 %: serving.
	p.heap.Store(1 << 20 * 96 / 100)
	p.sample(0, 1)
	resp, body = get(t, p.URL+"/x")
	checkOverloaded(t, resp, body, "")
	p.heap.Store(1 << 20 * 94 / 100)
	p.sample(0, 1)
	if resp, _ := get(t, p.URL+"/x"); resp.StatusCode != 200 {
		t.Errorf("under 95%% of the limit: %d, want 200", resp.StatusCode)
	}
	if s := p.Overload().State(); s.Refused[overload.Memory] != 2 || s.Overloaded() {
		t.Errorf("state %+v, want 2 memory refusals and normal", s)
	}
	if got := gather(t, p.Proxy)["sluice_admission_rejected_total"]["reason=overloaded,route="]; got != 2 {
		t.Errorf(`rejected{route=""} = %v, want 2`, got)
	}
}

// TestSaturationShedsClassesInOrder: while the scheduling latency stays
// over the threshold the detector sheds sheddable requests first, then
// default ones, never critical ones; each is refused overloaded on its
// route and counted there and in its class. Calm brings them back in
// the opposite order.
func TestSaturationShedsClassesInOrder(t *testing.T) {
	// /hold requests stay at the upstream until the test ends: each
	// bulkhead route gets one, so its only slot is taken and every probe
	// would have to queue (max_wait 20ms: then queue_timeout).
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/hold") {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	var once sync.Once
	unhold := func() { once.Do(func() { close(release) }) }
	defer unhold()
	p := startOverloadProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - name: batch
    match: {path_prefix: /batch}
    upstream: u
    bulkhead: {max_concurrent: 1}
    queue: {max_depth: 10, max_wait: 20ms}
    priority: {class: sheddable}
  - name: pay
    match: {path_prefix: /pay}
    upstream: u
    bulkhead: {max_concurrent: 1}
    queue: {max_depth: 10, max_wait: 20ms}
    priority: {class: critical}
  - name: api
    match: {path_prefix: /api}
    upstream: u
    bulkhead: {max_concurrent: 1}
    queue: {max_depth: 10, max_wait: 20ms}
    priority: {class: default, header: X-Priority}
  - name: web
    match: {path_prefix: /}
    upstream: u
`, up.URL))
	// Shedding comes first while a slot is free: the request goes in.
	p.sample(30*time.Millisecond, 12)
	if resp, _ := get(t, p.URL+"/batch"); resp.StatusCode != 200 {
		t.Fatalf("sheddable request with its route's slot free, shedding default: %d, want 200", resp.StatusCode)
	}
	p.sample(time.Millisecond, 30) // calm again
	var held sync.WaitGroup
	for _, path := range []string{"/batch/hold", "/pay/hold", "/api/hold"} {
		held.Go(func() {
			if resp, err := http.Get(p.URL + path); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	waitUntil(t, "every bulkhead slot held", func() bool {
		for _, rt := range p.Routes() {
			if rt.Admission().Bulkhead() != nil && rt.Admission().Inflight() != 1 {
				return false
			}
		}
		return true
	})
	// status sends a request with an optional X-Priority and returns its
	// status, or the reason of a 503, checking an overloaded refusal's form.
	status := func(path, class string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", p.URL+path, nil)
		if class != "" {
			req.Header.Set("X-Priority", class)
		}
		resp, body := do(t, req)
		if resp.StatusCode == 503 && resp.Header.Get("Sluice-Reject") == "overloaded" {
			route := map[string]string{"/batch": "batch", "/pay": "pay", "/api": "api", "/web": "web"}[path]
			checkOverloaded(t, resp, body, route)
		}
		if resp.StatusCode == 503 {
			return resp.Header.Get("Sluice-Reject")
		}
		return strconv.Itoa(resp.StatusCode)
	}
	type probe struct{ path, class string }
	probes := []probe{{"/batch", ""}, {"/api", "sheddable"}, {"/api", ""}, {"/web", ""}, {"/pay", ""}, {"/api", "critical"}}
	check := func(stage string, want ...string) {
		t.Helper()
		for i, pr := range probes {
			if got := status(pr.path, pr.class); got != want[i] {
				t.Errorf("%s: %s (X-Priority %q): %s, want %s", stage, pr.path, pr.class, got, want[i])
			}
		}
	}
	const (
		ok   = "200"
		shed = "overloaded"
		wait = "queue_timeout" // queued, and not served within max_wait
	)

	check("normal", wait, wait, wait, ok, wait, wait)
	p.sample(30*time.Millisecond, 1)
	check("one slow sample", wait, wait, wait, ok, wait, wait)
	p.sample(30*time.Millisecond, 1)
	if got := gather(t, p.Proxy)["sluice_overload_state"][""]; got != 1 {
		t.Errorf("sluice_overload_state %v while shedding, want 1", got)
	}
	check("shedding sheddable", shed, shed, wait, ok, wait, wait)
	p.sample(30*time.Millisecond, 10)
	check("shedding default", shed, shed, shed, shed, wait, wait)
	p.sample(30*time.Millisecond, 50)
	check("saturated for long", shed, shed, shed, shed, wait, wait)
	p.sample(time.Millisecond, 11) // a second from the first calm sample
	check("a calm second", shed, shed, wait, ok, wait, wait)
	p.sample(time.Millisecond, 10)
	check("two calm seconds", wait, wait, wait, ok, wait, wait)

	// Sheddable probes were refused in 4 stages, default ones in 2.
	m := gather(t, p.Proxy)
	for route, want := range map[string]float64{"batch": 4, "api": 6, "web": 2, "pay": 0} {
		if got := m["sluice_admission_rejected_total"]["reason=overloaded,route="+route]; got != want {
			t.Errorf("route %s: %v overloaded refusals, want %v", route, got, want)
		}
	}
	if got := m["sluice_admission_rejected_total"]["reason=overloaded,route="]; got != 0 {
		t.Errorf("door refusals %v: shedding is per route", got)
	}
	if got := m["sluice_admission_class_rejected_total"]["class=sheddable,reason=overloaded,route=api"]; got != 4 {
		t.Errorf("api sheddable refusals %v, want 4", got)
	}
	if got := m["sluice_admission_class_rejected_total"]["class=default,reason=overloaded,route=api"]; got != 2 {
		t.Errorf("api default refusals %v, want 2", got)
	}
	if got := m["sluice_admission_class_rejected_total"]["class=critical,reason=overloaded,route=api"]; got != 0 {
		t.Errorf("api critical refusals %v, want 0", got)
	}
	if s := p.Overload().State(); s.Refused[overload.Saturation] != 12 {
		t.Errorf("saturation refusals %d, want 12", s.Refused[overload.Saturation])
	}
	// What was shed never reached admission: admitted + rejected = sent,
	// once the held requests are answered.
	unhold()
	held.Wait()
	for _, rt := range p.Routes() {
		adm := rt.Admission()
		var sent, rejected uint64
		rt.Codes(func(_ int, n uint64) { sent += n })
		for _, r := range admission.Rejections {
			rejected += adm.Rejected(r)
		}
		if adm.Admitted()+rejected != sent {
			t.Errorf("route %s: admitted %d + rejected %d != %d answered", rt.Name(), adm.Admitted(), rejected, sent)
		}
	}
}

// TestOverloadLimitsReload: a reload changes max_inflight at once.
func TestOverloadLimitsReload(t *testing.T) {
	up := echoUpstream(t, "u")
	yaml := `
server: {max_inflight: %d}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`
	p := startOverloadProxy(t, fmt.Sprintf(yaml, 0, up.URL))
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(yaml, 7, up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := p.Overload().Limits().MaxInflight; got != 7 {
		t.Errorf("max_inflight after reload %d, want 7", got)
	}
}

// TestConnRefusal: the bytes written on a refused plain connection are
// one well-formed HTTP/1.1 response, the overloaded refusal of a request
// plus Connection: close.
func TestConnRefusal(t *testing.T) {
	raw := ConnRefusal()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	checkOverloaded(t, resp, body, "")
	if !resp.Close || !bytes.Contains(raw, []byte("\r\nConnection: close\r\n")) || resp.Proto != "HTTP/1.1" {
		t.Errorf("%q: want HTTP/1.1 with Connection: close", raw)
	}
	if int64(len(body)) != resp.ContentLength {
		t.Errorf("body %d bytes, Content-Length %d", len(body), resp.ContentLength)
	}
}

func TestShedsClasses(t *testing.T) {
	for _, tt := range []struct {
		level overload.Shed
		want  [3]bool // critical, default, sheddable
	}{
		{overload.ShedNone, [3]bool{false, false, false}},
		{overload.ShedSheddable, [3]bool{false, false, true}},
		{overload.ShedDefault, [3]bool{false, true, true}},
	} {
		for c, want := range tt.want {
			if got := sheds(tt.level, bulkhead.Class(c)); got != want {
				t.Errorf("sheds(%v, %v) = %v, want %v", tt.level, bulkhead.Class(c), got, want)
			}
		}
	}
}

// TestDoorRefusalAllocations: refusing at the door under memory pressure
// costs what writing any refusal costs (writeProblem's Content-Length:
// the string and its slice) and nothing of the overload manager's.
func TestDoorRefusalAllocations(t *testing.T) {
	p := startOverloadProxy(t, `
server: {memory_limit: 1000}
upstreams: [{name: u, targets: ["http://127.0.0.1:1"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`)
	p.heap.Store(2000)
	p.sample(0, 1)
	req := httptest.NewRequest("GET", "http://x/a", nil)
	w := &discardWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.h)
		p.ServeHTTP(w, req)
	})
	if w.status != 503 {
		t.Fatalf("status %d, want 503", w.status)
	}
	if allocs > 2 {
		t.Errorf("a door refusal costs %v allocations, want at most 2", allocs)
	}
}

// TestSchedLatencyLimit: server.sched_latency_limit is the detector's
// threshold, 0 turns the detector off, and both reload.
func TestSchedLatencyLimit(t *testing.T) {
	up := echoUpstream(t, "u")
	yaml := func(limit string) string {
		return fmt.Sprintf(`
server: {sched_latency_limit: %s}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: web, match: {path_prefix: /}, upstream: u}]
`, limit, up.URL)
	}
	p := startOverloadProxy(t, yaml("50ms"))
	p.sample(30*time.Millisecond, 30)
	if lvl := p.Overload().Shedding(); lvl != overload.ShedNone {
		t.Fatalf("30ms samples under a 50ms limit: shedding %v", lvl)
	}
	p.sample(60*time.Millisecond, 30)
	if lvl := p.Overload().Shedding(); lvl != overload.ShedDefault {
		t.Fatalf("60ms samples for 3s over a 50ms limit: shedding %v, want default", lvl)
	}
	cfg, err := config.Parse("test.yaml", []byte(yaml("0s")))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if lvl, l := p.Overload().Shedding(), p.Overload().Limits(); lvl != overload.ShedNone || l.SchedLatency >= 0 {
		t.Fatalf("after a reload to 0 (off): shedding %v, limits %+v", lvl, l)
	}
	p.sample(500*time.Millisecond, 30)
	if lvl := p.Overload().Shedding(); lvl != overload.ShedNone || p.Overload().State().Saturated {
		t.Fatalf("detector off: shedding %v, state %+v", lvl, p.Overload().State())
	}
	if resp, _ := get(t, p.URL+"/x"); resp.StatusCode != 200 {
		t.Fatalf("detector off: %d", resp.StatusCode)
	}
}
