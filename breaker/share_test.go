package breaker_test

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/breaker"
)

// tripRecorder is an OnTrip hook that calls back into its breaker, as the
// hook's contract allows, and records what it saw.
type tripRecorder struct {
	t     *testing.T
	b     *breaker.Breaker
	calls []time.Duration
}

func (r *tripRecorder) hook(openFor time.Duration) {
	// Each of these would deadlock if the hook ran under a lock of b's.
	if got := r.b.State(); got != breaker.StateOpen {
		r.t.Errorf("State() = %v inside OnTrip, want open", got)
	}
	if got := r.b.OpenFor(); got != openFor {
		r.t.Errorf("OpenFor() = %v inside OnTrip(%v)", got, openFor)
	}
	if done, err := r.b.Allow(); !errors.Is(err, breaker.ErrOpen) {
		done(breaker.Ignored)
		r.t.Errorf("Allow inside OnTrip: err %v, want ErrOpen", err)
	}
	if r.b.OpenRemote(time.Second) {
		r.t.Error("OpenRemote(1s) inside OnTrip changed a 30s open period")
	}
	r.calls = append(r.calls, openFor)
}

func (r *tripRecorder) want(n int) {
	r.t.Helper()
	if len(r.calls) != n {
		r.t.Fatalf("OnTrip called %d times (%v), want %d", len(r.calls), r.calls, n)
	}
	for _, d := range r.calls {
		if d != 30*time.Second {
			r.t.Fatalf("OnTrip calls %v, want each with the open_timeout 30s", r.calls)
		}
	}
}

func TestOnTripOncePerLocalTrip(t *testing.T) {
	b, clk := newBreaker(t, testConfig())
	r := &tripRecorder{t: t, b: b}
	b.OnTrip(r.hook)

	late := mustAllow(t, b) // admitted while closed, reported while open
	report(t, b, breaker.Failure)
	report(t, b, breaker.Failure)
	r.want(0)
	report(t, b, breaker.Failure) // closed -> open
	r.want(1)
	late(breaker.Failure)
	r.want(1)

	// A failed probe reopens: one more.
	clk.Advance(30 * time.Second)
	p1, p2 := mustAllow(t, b), mustAllow(t, b)
	p1(breaker.Failure)
	r.want(2)
	p2(breaker.Failure) // its half-open period has ended
	r.want(2)

	// A remote open is not the breaker's own trip, nor is extending one.
	clk.Advance(30 * time.Second)
	if !b.OpenRemote(10 * time.Second) {
		t.Fatal("OpenRemote(10s) while half-open = false")
	}
	if !b.OpenRemote(20 * time.Second) {
		t.Fatal("OpenRemote(20s) over 10s = false")
	}
	r.want(2)
	// But the failed probe after it is.
	clk.Advance(20 * time.Second)
	report(t, b, breaker.Failure)
	r.want(3)
	wantTransitions(t, b, transitions{halfOpen: 3, open: 4})
}

func TestOnTripReplacedAndRemoved(t *testing.T) {
	cfg := testConfig()
	cfg.ConsecutiveFailures = 1
	b, clk := newBreaker(t, cfg)
	var first, second int
	b.OnTrip(func(time.Duration) { first++ })
	b.OnTrip(func(time.Duration) { second++ })
	report(t, b, breaker.Failure)
	if first != 0 || second != 1 {
		t.Fatalf("hooks called %d, %d times, want only the last one set, once", first, second)
	}

	// A trip while no hook is set is dropped, not reported to the next.
	b.OnTrip(nil)
	clk.Advance(cfg.OpenTimeout)
	report(t, b, breaker.Failure)
	b.OnTrip(func(time.Duration) { first++ })
	clk.Advance(cfg.OpenTimeout)
	report(t, b, breaker.Failure)
	if first != 1 || second != 1 {
		t.Fatalf("hooks called %d, %d times, want 1, 1", first, second)
	}
	wantTransitions(t, b, transitions{halfOpen: 2, open: 3})
}

// The outcomes of requests in flight when a remote open replaces the
// half-open period are discarded however they are reported, and the next
// half-open period has all its probe slots.
func TestOpenRemoteWithProbesInFlight(t *testing.T) {
	cfg := testConfig()
	cfg.HalfOpenRequests = 3
	b, clk := newBreaker(t, cfg)
	var trips int
	b.OnTrip(func(time.Duration) { trips++ })
	for range 3 {
		report(t, b, breaker.Failure)
	}
	clk.Advance(cfg.OpenTimeout)
	probes := []func(breaker.Outcome){mustAllow(t, b), mustAllow(t, b), mustAllow(t, b)}
	mustRefuse(t, b)
	probes[0](breaker.Success) // one success of three before the remote open

	if !b.OpenRemote(time.Minute) {
		t.Fatal("OpenRemote while half-open = false")
	}
	wantOpenUntil(t, b, clk.Now().Add(time.Minute), time.Minute)
	probes[1](breaker.Success)
	probes[2](breaker.Failure)
	wantState(t, b, breaker.StateOpen)
	wantOpenUntil(t, b, clk.Now().Add(time.Minute), time.Minute)
	mustRefuse(t, b)

	clk.Advance(time.Minute)
	wantState(t, b, breaker.StateHalfOpen)
	next := []func(breaker.Outcome){mustAllow(t, b), mustAllow(t, b), mustAllow(t, b)}
	mustRefuse(t, b)
	for i, done := range next {
		done(breaker.Success)
		want := breaker.StateHalfOpen
		if i == len(next)-1 { // three new successes: the earlier one did not carry over
			want = breaker.StateClosed
		}
		wantState(t, b, want)
	}
	if trips != 1 {
		t.Fatalf("OnTrip called %d times, want 1 (the first trip)", trips)
	}
	wantTransitions(t, b, transitions{closed: 1, halfOpen: 2, open: 2})
}

// TestConcurrentOpenRemote is TestConcurrent with remote opens of all
// lengths arriving meanwhile, and the OnTrip hook swapped under it. Run
// with -race. Every Allow is refused or reported once, nothing deadlocks,
// every open period ends in one half-open entry, each entry into open is a
// local trip (reported to OnTrip) or an OpenRemote that returned true, and
// afterwards the breaker still recovers.
func TestConcurrentOpenRemote(t *testing.T) {
	cfg := testConfig()
	cfg.OpenTimeout = 5 * time.Second
	cfg.HalfOpenRequests = 3
	b, clk := newBreaker(t, cfg)
	var hooked atomic.Int64
	hook := func(openFor time.Duration) {
		if openFor != cfg.OpenTimeout {
			t.Errorf("OnTrip(%v), want %v", openFor, cfg.OpenTimeout)
		}
		_ = b.OpenFor() // calls back in
		hooked.Add(1)
	}
	b.OnTrip(hook)

	outcome := func(now time.Time, n int) breaker.Outcome {
		switch {
		case n%10 == 0:
			return breaker.Ignored
		case now.Sub(t0)%(20*time.Second) < 5*time.Second:
			return breaker.Failure
		default:
			return breaker.Success
		}
	}
	end := t0.Add(2 * time.Minute)
	remotes := []time.Duration{time.Millisecond, 20 * time.Millisecond, time.Second, 3 * time.Second, -time.Second}

	const workers = 12
	var (
		calls, admitted, reported, refused, remoteTrue atomic.Int64
		wg, bg                                         sync.WaitGroup
	)
	bg.Go(func() { // the clock
		for clk.Now().Before(end) {
			clk.Advance(10 * time.Millisecond)
			runtime.Gosched()
		}
	})
	bg.Go(func() { // remote opens, and the hook set again now and then
		for i, next := 0, t0; clk.Now().Before(end); i++ {
			// One every 4s of fake time, give or take: the upstream's
			// failures must still get a chance to trip the breaker.
			for now := clk.Now(); now.Before(next) && now.Before(end); now = clk.Now() {
				runtime.Gosched()
			}
			next = next.Add(4 * time.Second)
			if b.OpenRemote(remotes[i%len(remotes)]) {
				remoteTrue.Add(1)
			}
			if i%10 == 0 {
				b.OnTrip(hook)
			}
		}
	})
	for w := range workers {
		wg.Go(func() {
			for i := 0; clk.Now().Before(end); i++ {
				calls.Add(1)
				done, err := b.Allow()
				if err != nil {
					if !errors.Is(err, breaker.ErrOpen) {
						t.Errorf("Allow: %v", err)
						return
					}
					refused.Add(1)
					continue
				}
				admitted.Add(1)
				if i%4 == 0 {
					runtime.Gosched()
				}
				done(outcome(clk.Now(), w+i))
				reported.Add(1)
			}
		})
	}
	wg.Wait()
	bg.Wait()

	if admitted.Load() != reported.Load() || admitted.Load()+refused.Load() != calls.Load() {
		t.Fatalf("calls %d, admitted %d, refused %d, reported %d", calls.Load(), admitted.Load(), refused.Load(), reported.Load())
	}
	if remoteTrue.Load() == 0 || hooked.Load() == 0 {
		t.Fatalf("%d remote opens took effect and OnTrip was called %d times: the test exercised neither", remoteTrue.Load(), hooked.Load())
	}

	// Past any open period (the longest is 5s), the probes close it.
	clk.Advance(5 * time.Second)
	for range cfg.HalfOpenRequests {
		if b.State() == breaker.StateClosed {
			break
		}
		report(t, b, breaker.Success)
	}
	wantState(t, b, breaker.StateClosed)
	open, halfOpen, closed := b.Transitions(breaker.StateOpen), b.Transitions(breaker.StateHalfOpen), b.Transitions(breaker.StateClosed)
	if halfOpen != open || closed > halfOpen {
		t.Errorf("transitions: open %d, half-open %d, closed %d", open, halfOpen, closed)
	}
	// Every local trip was reported once and every other entry into open
	// was a remote open that returned true (some of those extended one).
	if trips := uint64(hooked.Load()); trips > open || open > trips+uint64(remoteTrue.Load()) {
		t.Errorf("%d entries into open, %d OnTrip calls, %d remote opens that returned true", open, trips, remoteTrue.Load())
	}
	t.Logf("admitted %d, refused %d, remote opens %d; OnTrip %d; transitions: open %d, half-open %d, closed %d",
		admitted.Load(), refused.Load(), remoteTrue.Load(), hooked.Load(), open, halfOpen, closed)
}
