package demo

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/clock"
	"sluice/config"
)

func TestScheduleCount(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name  string
		sched Schedule
		at    time.Duration
		want  int
	}{
		{"constant", Constant(100), s / 2, 50},
		{"nothing at the start", Constant(100), 0, 0},
		{"float error forgiven", Constant(0.1), 30 * s, 3},
		{"ramp, halfway", Schedule{{0, 0}, {s, 200}}, s / 2, 25},
		{"ramp, end", Schedule{{0, 0}, {s, 200}}, s, 100},
		{"held after the last point", Schedule{{0, 10}, {s, 20}}, 3 * s, 15 + 40},
		{"held before the first point", Schedule{{2 * s, 50}}, s, 50},
		{"a step", Schedule{{0, 10}, {s, 10}, {s, 100}}, 2 * s, 10 + 100},
		{"up and down", Schedule{{0, 40}, {36 * s, 240}, {54 * s, 240}, {90 * s, 40}}, 90 * s, 5040 + 4320 + 5040},
		{"empty", nil, s, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.sched.Count(tc.at); got != tc.want {
				t.Errorf("Count(%v) = %d, want %d", tc.at, got, tc.want)
			}
		})
	}
	r := Schedule{{0, 40}, {10 * s, 240}, {20 * s, 40}}
	if got := r.Rate(5 * s); got != 140 {
		t.Errorf("Rate halfway up = %v, want 140", got)
	}
	if got := r.String(); got != "40 → 240 → 40 req/s" {
		t.Errorf("String() = %q", got)
	}
}

// recorder is an upstream that counts requests by path and the Host
// they named. Requests to /hold wait until release is closed.
type recorder struct {
	mu      sync.Mutex // guards byPath, hosts
	byPath  map[string]int
	hosts   map[string]int
	release chan struct{}
	once    sync.Once
	srv     *httptest.Server
}

func (rec *recorder) releaseAll() { rec.once.Do(func() { close(rec.release) }) }

func newRecorder(t *testing.T, h http.HandlerFunc) *recorder {
	rec := &recorder{byPath: map[string]int{}, hosts: map[string]int{}, release: make(chan struct{})}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.byPath[r.URL.Path]++
		rec.hosts[r.Host]++
		rec.mu.Unlock()
		if r.URL.Path == "/hold" {
			select {
			case <-rec.release:
			case <-r.Context().Done():
			}
		}
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(rec.srv.Close)
	t.Cleanup(rec.releaseAll) // runs first: held requests finish, so Close does not wait on them
	return rec
}

func (rec *recorder) count(path string) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.byPath[path]
}

// waitCount waits for requests already sent to arrive. It bounds the wait
// generously and asserts nothing about time.
func (rec *recorder) waitCount(t *testing.T, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for rec.count(path) < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := rec.count(path); got != want {
		t.Fatalf("%s: %d requests arrived, want %d", path, got, want)
	}
}

type runResult struct {
	res Result
	err error
}

func start(ctx context.Context, l *Load) chan runResult {
	done := make(chan runResult, 1)
	go func() {
		res, err := l.Run(ctx)
		done <- runResult{res, err}
	}()
	return done
}

// TestLoadFollowsSchedule drives the generator on a fake clock: at every
// point, what has been sent is exactly what the schedule says, and when
// the clock reaches the duration the run ends by itself.
func TestLoadFollowsSchedule(t *testing.T) {
	rec := newRecorder(t, nil)
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	a, b := Constant(100), Schedule{{0, 0}, {time.Second, 200}}
	l := &Load{Base: rec.srv.URL, Duration: time.Second, Tick: 10 * time.Millisecond, Clock: fc,
		Streams: []Stream{{Path: "/a", Rate: a}, {Path: "/b", Rate: b}}}
	done := start(context.Background(), l)
	for tick := 1; tick <= 100; tick++ {
		fc.WaitTimers(1) // the generator has sent what was due and waits for the next tick
		fc.Advance(10 * time.Millisecond)
		if tick == 50 {
			fc.WaitTimers(1)
			rec.waitCount(t, "/a", a.Count(500*time.Millisecond))
			rec.waitCount(t, "/b", b.Count(500*time.Millisecond))
		}
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.res.Sent != 200 || r.res.Codes[200] != 200 || r.res.Errors != 0 || r.res.Skipped != 0 {
		t.Errorf("result %+v, want 200 sent and answered 200", r.res)
	}
	if rec.count("/a") != 100 || rec.count("/b") != 100 {
		t.Errorf("arrived: /a %d, /b %d; want 100 each", rec.count("/a"), rec.count("/b"))
	}
	if n := fc.Timers(); n != 0 {
		t.Errorf("%d timers still armed after the run", n)
	}
	if got := r.res.String(); got != "200 sent: 200 × 200" {
		t.Errorf("String() = %q", got)
	}
}

// TestLoadStopsByItself runs on the wall clock: the run ends at its
// duration having sent what the schedule says, however long that took.
func TestLoadStopsByItself(t *testing.T) {
	rec := newRecorder(t, nil)
	l := &Load{Base: rec.srv.URL, Duration: 200 * time.Millisecond, Streams: []Stream{{Path: "/x", Rate: Constant(50)}}}
	res, err := l.Run(context.Background())
	if err != nil || res.Sent != 10 || rec.count("/x") != 10 {
		t.Errorf("sent %d, arrived %d, err %v; want 10", res.Sent, rec.count("/x"), err)
	}
}

// TestLoadCancel: a cancelled run stops sending and abandons what is
// outstanding at once, rather than waiting out the client timeout.
func TestLoadCancel(t *testing.T) {
	rec := newRecorder(t, nil)
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{Base: rec.srv.URL, Duration: time.Hour, Tick: 10 * time.Millisecond, Clock: fc, Timeout: time.Hour,
		Streams: []Stream{{Path: "/hold", Rate: Constant(1000)}}}
	done := start(ctx, l)
	fc.WaitTimers(1)
	fc.Advance(10 * time.Millisecond)
	fc.WaitTimers(1)
	rec.waitCount(t, "/hold", 10)
	cancel()
	r := <-done
	if !errors.Is(r.err, context.Canceled) || r.res.Sent != 10 || r.res.Errors != 10 {
		t.Errorf("cancelled run: %+v, %v; want 10 sent, 10 without an answer, context.Canceled", r.res, r.err)
	}
}

func TestLoadMaxInFlight(t *testing.T) {
	rec := newRecorder(t, nil)
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	l := &Load{Base: rec.srv.URL, Duration: 10 * time.Millisecond, Tick: 10 * time.Millisecond, Clock: fc, MaxInFlight: 4,
		Streams: []Stream{{Path: "/hold", Rate: Constant(1000)}}}
	done := start(context.Background(), l)
	fc.WaitTimers(1)
	fc.Advance(10 * time.Millisecond)
	rec.waitCount(t, "/hold", 4) // the run waits for these before it returns
	rec.releaseAll()
	r := <-done
	if r.res.Sent != 4 || r.res.Skipped != 6 {
		t.Errorf("result %+v, want 4 sent and 6 skipped", r.res)
	}
}

// TestLoadOnlyTargetsBase: the generator sends to its base URL and
// nowhere else: not to a host a path names, not where a redirect points,
// not to an address that is not loopback.
func TestLoadOnlyTargetsBase(t *testing.T) {
	decoy := newRecorder(t, nil)
	target := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, decoy.srv.URL+"/stolen", http.StatusFound)
		}
	})
	l := &Load{Base: target.srv.URL, Duration: 100 * time.Millisecond,
		Streams: []Stream{{Path: "/redirect", Rate: Constant(100)}, {Path: "/plain?q=1", Rate: Constant(100)}}}
	res, err := l.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Codes[http.StatusFound] != 10 || res.Codes[200] != 10 {
		t.Errorf("answers %v, want 10 redirects (not followed) and 10 OK", res.Codes)
	}
	if n := decoy.count("/stolen"); n != 0 {
		t.Errorf("the decoy got %d requests", n)
	}
	host := strings.TrimPrefix(target.srv.URL, "http://")
	target.mu.Lock()
	if len(target.hosts) != 1 || target.hosts[host] != 20 {
		t.Errorf("Host headers %v, want only %s", target.hosts, host)
	}
	target.mu.Unlock()

	for _, base := range []string{
		"http://example.com", "http://10.1.2.3:8080", "http://[2001:db8::1]:80", "http://0.0.0.0:8080",
		"http://user@127.0.0.1:1", "ftp://127.0.0.1:21", "http://127.0.0.1:1/prefix", "127.0.0.1:8080", "",
	} {
		l := &Load{Base: base, Duration: time.Second, Streams: []Stream{{Path: "/x", Rate: Constant(1)}}}
		if _, err := l.Run(context.Background()); err == nil {
			t.Errorf("base %q accepted", base)
		}
	}
	for _, path := range []string{"//" + strings.TrimPrefix(decoy.srv.URL, "http://") + "/x", decoy.srv.URL + "/x", "x", "/a b", `/\evil`, "/#frag"} {
		l := &Load{Base: target.srv.URL, Duration: time.Second, Streams: []Stream{{Path: path, Rate: Constant(1000)}}}
		if _, err := l.Run(context.Background()); err == nil {
			t.Errorf("path %q accepted", path)
		}
	}
	if n := decoy.count("/x"); n != 0 {
		t.Errorf("the decoy got %d requests", n)
	}
	for _, base := range []string{"http://localhost:1", "http://[::1]:1", "http://127.0.0.2:1"} {
		l := &Load{Base: base, Duration: time.Second, Streams: []Stream{{Path: "/x", Rate: Constant(1)}}}
		if _, err := l.check(); err != nil {
			t.Errorf("loopback base %q refused: %v", base, err)
		}
	}
	// The dialer itself refuses other addresses, whatever a name resolved to.
	_, err = loopbackTransport().DialContext(context.Background(), "tcp", "192.0.2.1:80")
	if !errors.Is(err, ErrNotLoopback) {
		t.Errorf("dial 192.0.2.1: %v, want ErrNotLoopback", err)
	}
}

func TestShowcaseLoad(t *testing.T) {
	d := 90 * time.Second
	l := ShowcaseLoad("http://127.0.0.1:8080", d)
	if _, err := l.check(); err != nil {
		t.Fatal(err)
	}
	c := SlowCapacity()
	slow := l.Streams[0]
	if slow.Path != "/slow/work" || slow.Rate.Rate(0) >= c || slow.Rate.Rate(d/2) < 2.5*c || slow.Rate.Rate(d) >= c {
		t.Errorf("/slow must ramp from below its capacity (%v/s) to well past it and back: %v", c, slow.Rate)
	}
	if l.Duration != d {
		t.Errorf("duration %v", l.Duration)
	}
}

// TestEmbeddedConfig keeps demo.yaml in step with the upstreams and the
// load it is tuned for.
func TestEmbeddedConfig(t *testing.T) {
	b := &Backends{API: "http://127.0.0.1:1", Slow: "http://127.0.0.1:2", Flaky: "http://127.0.0.1:3"}
	cfg, err := config.Parse("demo.yaml", b.Config())
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]config.Route{}
	for _, r := range cfg.Routes {
		routes[r.Name] = r
	}
	slow := routes["slow"]
	if slow.Bulkhead == nil || slow.Bulkhead.MaxConcurrent != slowConcurrency || slow.RateLimit == nil ||
		slow.RateLimit.RPS <= SlowCapacity() || slow.RateLimit.RPS >= 3*SlowCapacity() {
		t.Errorf("slow route: bulkhead %+v, rate limit %+v: want the upstream's concurrency, and a limit between its capacity and the load's peak", slow.Bulkhead, slow.RateLimit)
	}
	for _, u := range cfg.Upstreams {
		if u.Name == "flaky" && (u.Breaker == nil || u.Breaker.OpenTimeout >= flakyDown) {
			t.Errorf("flaky breaker %+v: want one that goes half-open within a burst of failures", u.Breaker)
		}
	}
}
