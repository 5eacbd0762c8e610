package admin

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/clock"
	"sluice/config"
	"sluice/overload"
	"sluice/proxy"
)

// TestOverviewOverload: the overview carries the overload manager's
// state, and its refusals add up with the routes': a door refusal is a
// rejection of route "", a shed request one of its route.
func TestOverviewOverload(t *testing.T) {
	// /hold stays at the upstream until released: it takes the route's
	// only slot, so that the probes would have to queue (what the
	// saturation detector sheds).
	release := make(chan struct{})
	var once sync.Once
	unhold := func() { once.Do(func() { close(release) }) }
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	defer unhold()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
server: {max_connections: 50, max_inflight: 20, memory_limit: 1000}
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - name: batch
    match: {path_prefix: /}
    upstream: u
    bulkhead: {max_concurrent: 1}
    priority: {class: sheddable}
`, up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	var heap atomic.Uint64
	var p99 atomic.Int64
	p, err := proxy.New(cfg, proxy.Options{Log: slog.New(slog.DiscardHandler), Clock: fc, Overload: overload.Options{
		Clock: fc,
		Heap:  func() uint64 { return heap.Load() },
		Sched: func() time.Duration { return time.Duration(p99.Load()) },
	}})
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(p)
	a := New(Options{Proxy: p, Config: func() *config.Config { return cfg }, Version: "test", Started: fc.Now(), Clock: fc})
	as := httptest.NewServer(a)
	defer func() { as.Close(); ps.Close(); p.Close() }()
	f := &fixture{proxyURL: ps.URL, adminURL: as.URL, p: p, admin: a, clk: fc}
	sample := func() {
		fc.Advance(100 * time.Millisecond)
		p.Overload().Sample()
	}

	var o overview
	f.getJSON(t, "/api/v1/overview", "", &o)
	if o.Overload.State != "normal" || len(o.Overload.Shedding) != 0 || o.Overload.Inflight.Max != 20 ||
		o.Overload.Connections.Max != 50 || o.Overload.MemoryLimitBytes != 1000 {
		t.Errorf("idle: %+v", o.Overload)
	}

	// Saturated: the sheddable route is shed (one refusal on the route).
	var held sync.WaitGroup
	held.Go(func() { status(t, f.proxyURL+"/hold") })
	for deadline := time.Now().Add(10 * time.Second); p.Routes()[0].Admission().Inflight() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the /hold request never took the slot")
		}
	}
	p99.Store(int64(50 * time.Millisecond))
	sample()
	sample()
	if got := status(t, f.proxyURL+"/x"); got != 503 {
		t.Fatalf("while shedding sheddable: %d", got)
	}
	f.getJSON(t, "/api/v1/overview", "", &o)
	if o.Overload.State != "shedding" || !reflect.DeepEqual(o.Overload.Shedding, []string{"sheddable"}) ||
		!o.Overload.Saturated || o.Overload.SchedLatencyP99Ms != 50 || o.Overload.SchedLatencyLimitMs != 10 {
		t.Errorf("saturated: %+v", o.Overload)
	}

	// Calm again, but the heap over the limit: refused at the door.
	p99.Store(0)
	heap.Store(1500)
	for range 11 {
		sample()
	}
	if got := status(t, f.proxyURL+"/x"); got != 503 {
		t.Fatalf("over the memory limit: %d", got)
	}
	unhold()
	held.Wait()
	f.getJSON(t, "/api/v1/overview", "", &o)
	want := map[string]uint64{"max_inflight": 0, "memory": 1, "saturation": 1}
	if o.Overload.State != "shedding" || !o.Overload.MemoryOver || o.Overload.HeapBytes != 1500 || len(o.Overload.Shedding) != 0 ||
		!reflect.DeepEqual(o.Overload.RefusedTotal, want) {
		t.Errorf("memory over: %+v, want refused %v", o.Overload, want)
	}
	if o.RequestsTotal != 3 || o.RejectedTotal != 2 || o.AdmittedTotal != 1 {
		t.Errorf("totals: %d requests, %d rejected, %d admitted; want 3, 2, 1", o.RequestsTotal, o.RejectedTotal, o.AdmittedTotal)
	}
	var d routeDetail
	f.getJSON(t, "/api/v1/routes/batch", "", &d)
	if d.RejectedTotal["overloaded"] != 1 || d.Classes["sheddable"].Rejected["overloaded"] != 1 {
		t.Errorf("route batch: rejected %v, classes %v", d.RejectedTotal, d.Classes)
	}
}
