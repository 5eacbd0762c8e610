package admission

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"sluice/breaker"
	"sluice/clock"
	"sluice/config"
)

func route(maxConcurrent, depth int, wait time.Duration) config.Route {
	return config.Route{
		Name:     "r",
		Bulkhead: &config.Bulkhead{MaxConcurrent: maxConcurrent},
		Queue:    config.Queue{MaxDepth: depth, MaxWait: wait},
	}
}

func req() *http.Request { return httptest.NewRequest("GET", "/", nil) }

// admitAsync starts an Admit that is expected to queue, and waits until it
// has armed its max_wait timer (so it is in the queue).
func admitAsync(ctx context.Context, c *Controller, fc *clock.Fake, timers int) <-chan Decision {
	out := make(chan Decision, 1)
	go func() { out <- c.Admit(ctx, req()) }()
	fc.WaitTimers(timers)
	return out
}

// teachServiceTime finishes n requests that each held a slot for d.
func teachServiceTime(t *testing.T, c *Controller, fc *clock.Fake, d time.Duration) {
	t.Helper()
	dec := c.Admit(context.Background(), req())
	if dec.Reason != Admitted {
		t.Fatalf("warm-up request refused: %v", dec.Reason)
	}
	fc.Advance(d)
	dec.Finish(breaker.Success)
}

func TestQueueFullRefusesAtOnceWithDrainEstimate(t *testing.T) {
	fc := clock.NewFake(t0)
	c := New(route(2, 2, 250*time.Millisecond), nil, fc)
	teachServiceTime(t, c, fc, 100*time.Millisecond)

	ctx := context.Background()
	a, b := c.Admit(ctx, req()), c.Admit(ctx, req())
	if a.Reason != Admitted || b.Reason != Admitted {
		t.Fatalf("free slots refused: %v %v", a.Reason, b.Reason)
	}
	q1 := admitAsync(ctx, c, fc, 1)
	q2 := admitAsync(ctx, c, fc, 2)
	if c.QueueDepth() != 2 {
		t.Fatalf("depth %d, want 2", c.QueueDepth())
	}
	// The queue is full: refused at once, no timer armed, no time passed.
	d := c.Admit(ctx, req())
	if d.Reason != QueueFull {
		t.Fatalf("reason %v, want queue_full", d.Reason)
	}
	if d.QueueWait != 0 {
		t.Errorf("queue_full waited %v", d.QueueWait)
	}
	// (depth 2 + 1) × 100ms ÷ 2 slots.
	if d.RetryAfter != 150*time.Millisecond {
		t.Errorf("RetryAfter %v, want 150ms", d.RetryAfter)
	}

	// Releasing hands the slots to the queued requests in order.
	a.Finish(breaker.Success)
	if got := <-q1; got.Reason != Admitted {
		t.Fatalf("first queued: %v", got.Reason)
	}
	b.Finish(breaker.Success)
	got2 := <-q2
	if got2.Reason != Admitted {
		t.Fatalf("second queued: %v", got2.Reason)
	}
	if c.Admitted() != 5 || c.Rejected(QueueFull) != 1 {
		t.Errorf("admitted %d queue_full %d, want 5 and 1", c.Admitted(), c.Rejected(QueueFull))
	}
}

func TestQueueTimeoutAfterMaxWait(t *testing.T) {
	fc := clock.NewFake(t0)
	c := New(route(1, 1, 250*time.Millisecond), nil, fc)
	teachServiceTime(t, c, fc, 40*time.Millisecond)
	hold := c.Admit(context.Background(), req())
	q := admitAsync(context.Background(), c, fc, 1)
	fc.Advance(250*time.Millisecond - time.Nanosecond)
	select {
	case d := <-q:
		t.Fatalf("left the queue before max_wait: %v", d.Reason)
	default:
	}
	fc.Advance(time.Nanosecond)
	d := <-q
	if d.Reason != QueueTimeout || d.QueueWait != 250*time.Millisecond {
		t.Fatalf("reason %v after %v, want queue_timeout after 250ms", d.Reason, d.QueueWait)
	}
	// The queue is empty again: (0+1) × 40ms ÷ 1.
	if d.RetryAfter != 40*time.Millisecond {
		t.Errorf("RetryAfter %v, want 40ms", d.RetryAfter)
	}
	hold.Finish(breaker.Success)
	if c.Inflight() != 0 || c.QueueDepth() != 0 {
		t.Errorf("inflight %d depth %d after all finished", c.Inflight(), c.QueueDepth())
	}
}

func TestRouteDeadlineInQueueIsQueueTimeout(t *testing.T) {
	fc := clock.NewFake(t0)
	c := New(route(1, 5, time.Hour), nil, fc)
	hold := c.Admit(context.Background(), req())
	defer hold.Finish(breaker.Success)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if d := c.Admit(ctx, req()); d.Reason != QueueTimeout {
		t.Fatalf("reason %v, want queue_timeout", d.Reason)
	}
}

func TestClientGoneWhileQueued(t *testing.T) {
	fc := clock.NewFake(t0)
	c := New(route(1, 5, time.Hour), nil, fc)
	hold := c.Admit(context.Background(), req())
	ctx, cancel := context.WithCancel(context.Background())
	q := admitAsync(ctx, c, fc, 1)
	cancel()
	if d := <-q; d.Reason != ClientGone {
		t.Fatalf("reason %v, want client_gone", d.Reason)
	}
	if c.QueueDepth() != 0 {
		t.Errorf("cancelled waiter still queued: depth %d", c.QueueDepth())
	}
	hold.Finish(breaker.Success)
	// The slot was not lost to the departed client.
	d := c.Admit(context.Background(), req())
	if d.Reason != Admitted {
		t.Fatalf("slot lost: %v", d.Reason)
	}
	d.Finish(breaker.Success)
}

func TestRateLimitedFirst(t *testing.T) {
	fc := clock.NewFake(t0)
	rc := route(1, 0, time.Second)
	rc.RateLimit = &config.RateLimit{RPS: 0.5, Burst: 1, Key: "none", MaxKeys: 1}
	c := New(rc, nil, fc)
	a := c.Admit(context.Background(), req())
	if a.Reason != Admitted || !a.HasRateLimit || a.Remaining != 0 || a.Reset != 2*time.Second {
		t.Fatalf("first: %+v", a)
	}
	d := c.Admit(context.Background(), req())
	if d.Reason != RateLimited || d.RetryAfter != 2*time.Second {
		t.Fatalf("second: reason %v RetryAfter %v, want rate_limited 2s", d.Reason, d.RetryAfter)
	}
	a.Finish(breaker.Success)
}

func TestShutdownRefusesQueued(t *testing.T) {
	fc := clock.NewFake(t0)
	c := New(route(1, 5, time.Hour), nil, fc)
	hold := c.Admit(context.Background(), req())
	q := admitAsync(context.Background(), c, fc, 1)
	c.Close()
	if d := <-q; d.Reason != ShuttingDown {
		t.Fatalf("queued request at close: %v, want shutting_down", d.Reason)
	}
	hold.Finish(breaker.Success)
}

func TestBreakerOpenRefusesBeforeQueueing(t *testing.T) {
	fc := clock.NewFake(t0)
	br := breaker.New("u", config.Breaker{ConsecutiveFailures: 1, FailureRatio: 1, MinRequests: 100,
		Window: time.Minute, OpenTimeout: 30 * time.Second, HalfOpenRequests: 1, FailureStatuses: []int{502}}, fc)
	c := New(route(1, 5, time.Hour), br, fc)

	d := c.Admit(context.Background(), req())
	if d.Reason != Admitted {
		t.Fatal(d.Reason)
	}
	d.Finish(breaker.Failure) // trips after 1 failure
	fc.Advance(10 * time.Second)

	d = c.Admit(context.Background(), req())
	if d.Reason != BreakerOpen || d.RetryAfter != 20*time.Second {
		t.Fatalf("reason %v RetryAfter %v, want breaker_open 20s", d.Reason, d.RetryAfter)
	}
	if c.QueueDepth() != 0 || c.Bulkhead().Inflight() != 0 {
		t.Error("an open breaker's refusal took a slot or a queue place")
	}

	fc.Advance(20 * time.Second) // half-open: one probe
	probe := c.Admit(context.Background(), req())
	if probe.Reason != Admitted {
		t.Fatalf("half-open probe refused: %v", probe.Reason)
	}
	probe.Finish(breaker.Success)
	if br.State() != breaker.StateClosed {
		t.Errorf("breaker %v after a good probe, want closed", br.State())
	}
	total := c.Admitted() + c.Rejected(BreakerOpen)
	if total != 3 {
		t.Errorf("admitted+rejected = %d, want the 3 requests sent", total)
	}
}

func TestUnlimitedRouteCountsInflight(t *testing.T) {
	c := New(config.Route{Name: "r"}, nil, clock.NewFake(t0))
	var ds []Decision
	for i := 0; i < 100; i++ {
		d := c.Admit(context.Background(), req())
		if d.Reason != Admitted {
			t.Fatal(d.Reason)
		}
		ds = append(ds, d)
	}
	if c.Inflight() != 100 {
		t.Errorf("inflight %d", c.Inflight())
	}
	for i := range ds {
		ds[i].Finish(breaker.Ignored)
		ds[i].Finish(breaker.Ignored) // a second Finish is a no-op, not a double release
	}
	if c.Inflight() != 0 {
		t.Errorf("inflight %d after finishing", c.Inflight())
	}
}

func BenchmarkRateLimitAllow(b *testing.B) {
	l := NewRateLimiter(config.RateLimit{RPS: 1e9, Burst: 1e9, Key: "none", MaxKeys: 1})
	r := req()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(r, now)
	}
}

func BenchmarkRateLimitAllowKeyed(b *testing.B) {
	l := NewRateLimiter(config.RateLimit{RPS: 1e9, Burst: 1e9, Key: "client_ip", MaxKeys: 1000})
	r := req()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(r, now)
	}
}

// BenchmarkAdmitFinish is the admission fast path of a route with a rate
// limit and a bulkhead that never trigger.
func BenchmarkAdmitFinish(b *testing.B) {
	rc := route(1<<20, 100, time.Second)
	rc.RateLimit = &config.RateLimit{RPS: 1e9, Burst: 1e9, Key: "none", MaxKeys: 1}
	c := New(rc, nil, nil)
	r := req()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d := c.Admit(ctx, r)
		d.Finish(breaker.Success)
	}
}

func BenchmarkAdmitFinishParallel(b *testing.B) {
	rc := route(1<<20, 100, time.Second)
	rc.RateLimit = &config.RateLimit{RPS: 1e9, Burst: 1e9, Key: "none", MaxKeys: 1}
	c := New(rc, nil, nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := req()
		for pb.Next() {
			d := c.Admit(ctx, r)
			d.Finish(breaker.Success)
		}
	})
}

// BenchmarkAdmitFinishParallelRoutes gives each goroutine its own route:
// admission shares no state across routes, so this scales with cores,
// where BenchmarkAdmitFinishParallel measures the worst case of every core
// contending for one route's bucket and bulkhead.
func BenchmarkAdmitFinishParallelRoutes(b *testing.B) {
	rc := route(1<<20, 100, time.Second)
	rc.RateLimit = &config.RateLimit{RPS: 1e9, Burst: 1e9, Key: "none", MaxKeys: 1}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := New(rc, nil, nil)
		r := req()
		for pb.Next() {
			d := c.Admit(ctx, r)
			d.Finish(breaker.Success)
		}
	})
}

func TestBackpressuredSources(t *testing.T) {
	fc := clock.NewFake(t0)
	now := fc.Now()

	// Bulkhead: full, or anyone queued.
	c := New(route(1, 1, time.Hour), nil, fc)
	if c.Backpressured(now) || c.BulkheadUsage() != 0 || c.QueueUsage() != 0 {
		t.Fatal("idle route backpressured")
	}
	hold := c.Admit(context.Background(), req())
	if !c.Backpressured(now) || c.BulkheadUsage() != 1 {
		t.Error("full bulkhead not backpressured")
	}
	q := admitAsync(context.Background(), c, fc, 1)
	if c.QueueUsage() != 1 {
		t.Errorf("queue usage %v with 1 of 1 queued", c.QueueUsage())
	}
	hold.Finish(breaker.Success)
	next := <-q
	next.Finish(breaker.Success)
	if c.Backpressured(now) {
		t.Error("drained route still backpressured")
	}

	// Route-wide bucket: out of tokens is backpressure, read directly.
	rc := config.Route{Name: "r", RateLimit: &config.RateLimit{RPS: 1, Burst: 1, Key: "none", MaxKeys: 1}}
	c = New(rc, nil, fc)
	if c.Backpressured(now) {
		t.Error("full bucket backpressured")
	}
	first := c.Admit(context.Background(), req())
	first.Finish(breaker.Success)
	if !c.Backpressured(now) {
		t.Error("empty bucket not backpressured")
	}
	if c.Backpressured(now.Add(time.Second)) {
		t.Error("refilled bucket backpressured")
	}

	// Keyed buckets: a rate_limited refusal since the previous sample.
	rc.RateLimit.Key = "client_ip"
	rc.RateLimit.MaxKeys = 10
	c = New(rc, nil, fc)
	first = c.Admit(context.Background(), req())
	first.Finish(breaker.Success)
	if c.Backpressured(now) {
		t.Error("keyed route backpressured without a refusal")
	}
	if d := c.Admit(context.Background(), req()); d.Reason != RateLimited {
		t.Fatal(d.Reason)
	}
	if !c.Backpressured(now) {
		t.Error("keyed route not backpressured after a refusal")
	}
	if c.Backpressured(now) {
		t.Error("keyed route still backpressured with no new refusal since the last sample")
	}
}
