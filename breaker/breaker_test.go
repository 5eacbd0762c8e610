package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"sluice/breaker"
	"sluice/clock"
	"sluice/config"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// testConfig trips after 3 failures in a row or half failed out of at least
// 10, and probes with 2. The window is long so that the wall-clock rolling
// window (the one thing not on the fake clock) cannot drop counts mid-test.
func testConfig() config.Breaker {
	return config.Breaker{
		ConsecutiveFailures: 3,
		FailureRatio:        0.5,
		MinRequests:         10,
		Window:              time.Hour,
		OpenTimeout:         30 * time.Second,
		HalfOpenRequests:    2,
		FailureStatuses:     []int{502, 503, 504},
	}
}

func newBreaker(t testing.TB, cfg config.Breaker) (*breaker.Breaker, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(t0)
	return breaker.New("users", cfg, clk), clk
}

func mustAllow(t testing.TB, b *breaker.Breaker) func(breaker.Outcome) {
	t.Helper()
	done, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow: %v, want admitted (state %v)", err, b.State())
	}
	return done
}

func mustRefuse(t testing.TB, b *breaker.Breaker) {
	t.Helper()
	done, err := b.Allow()
	if !errors.Is(err, breaker.ErrOpen) {
		if done != nil {
			done(breaker.Ignored)
		}
		t.Fatalf("Allow: err %v, want ErrOpen (state %v)", err, b.State())
	}
	if done != nil {
		t.Fatal("Allow refused but returned a done func")
	}
}

// report admits one request and reports o for it.
func report(t testing.TB, b *breaker.Breaker, o breaker.Outcome) {
	t.Helper()
	mustAllow(t, b)(o)
}

func wantState(t testing.TB, b *breaker.Breaker, want breaker.State) {
	t.Helper()
	if got := b.State(); got != want {
		t.Fatalf("State() = %v, want %v", got, want)
	}
}

type transitions struct{ closed, halfOpen, open uint64 }

func wantTransitions(t testing.TB, b *breaker.Breaker, want transitions) {
	t.Helper()
	got := transitions{
		b.Transitions(breaker.StateClosed),
		b.Transitions(breaker.StateHalfOpen),
		b.Transitions(breaker.StateOpen),
	}
	if got != want {
		t.Fatalf("Transitions (closed, half-open, open) = %+v, want %+v", got, want)
	}
}

func wantOpenUntil(t testing.TB, b *breaker.Breaker, until time.Time, left time.Duration) {
	t.Helper()
	if got := b.OpenUntil(); !got.Equal(until) {
		t.Errorf("OpenUntil() = %v, want %v", got, until)
	}
	if got := b.OpenFor(); got != left {
		t.Errorf("OpenFor() = %v, want %v", got, left)
	}
}

func TestLifecycle(t *testing.T) {
	cfg := testConfig()
	cfg.MinRequests = 1000 // only the consecutive rule here
	b, clk := newBreaker(t, cfg)

	wantState(t, b, breaker.StateClosed)
	wantOpenUntil(t, b, time.Time{}, 0)
	report(t, b, breaker.Failure)
	report(t, b, breaker.Failure)
	wantState(t, b, breaker.StateClosed)
	report(t, b, breaker.Failure)
	wantState(t, b, breaker.StateOpen)
	wantTransitions(t, b, transitions{open: 1})
	wantOpenUntil(t, b, t0.Add(30*time.Second), 30*time.Second)
	mustRefuse(t, b)

	// The open period is exactly OpenTimeout on the injected clock.
	clk.Advance(30*time.Second - time.Nanosecond)
	wantState(t, b, breaker.StateOpen)
	wantOpenUntil(t, b, t0.Add(30*time.Second), time.Nanosecond)
	mustRefuse(t, b)
	wantTransitions(t, b, transitions{open: 1})

	clk.Advance(time.Nanosecond)
	wantOpenUntil(t, b, time.Time{}, 0)
	p1 := mustAllow(t, b)
	wantState(t, b, breaker.StateHalfOpen)
	wantTransitions(t, b, transitions{halfOpen: 1, open: 1})
	p2 := mustAllow(t, b)
	mustRefuse(t, b) // both probes are out
	wantOpenUntil(t, b, time.Time{}, 0)
	p1(breaker.Success)
	wantState(t, b, breaker.StateHalfOpen)
	p2(breaker.Success)
	wantState(t, b, breaker.StateClosed)
	wantTransitions(t, b, transitions{closed: 1, halfOpen: 1, open: 1})

	// Closing started a fresh count: two earlier failures don't carry over.
	report(t, b, breaker.Failure)
	report(t, b, breaker.Failure)
	wantState(t, b, breaker.StateClosed)
	report(t, b, breaker.Failure)
	wantState(t, b, breaker.StateOpen)
	wantTransitions(t, b, transitions{closed: 1, halfOpen: 1, open: 2})

	// A failed probe reopens, with a fresh OpenTimeout from the failure.
	clk.Advance(30 * time.Second)
	p := mustAllow(t, b)
	clk.Advance(5 * time.Second) // the probe takes a while
	p(breaker.Failure)
	failedAt := clk.Now()
	wantState(t, b, breaker.StateOpen)
	wantTransitions(t, b, transitions{closed: 1, halfOpen: 2, open: 3})
	wantOpenUntil(t, b, failedAt.Add(30*time.Second), 30*time.Second)
	mustRefuse(t, b)
	clk.Advance(30*time.Second - time.Nanosecond)
	wantState(t, b, breaker.StateOpen)
	wantOpenUntil(t, b, failedAt.Add(30*time.Second), time.Nanosecond)
	clk.Advance(time.Nanosecond)
	wantState(t, b, breaker.StateHalfOpen)
	wantTransitions(t, b, transitions{closed: 1, halfOpen: 3, open: 3})
}

func TestHalfOpenAdmitsExactlyHalfOpenRequests(t *testing.T) {
	cfg := testConfig()
	cfg.HalfOpenRequests = 5
	b, clk := newBreaker(t, cfg)
	for range 3 {
		report(t, b, breaker.Failure)
	}
	clk.Advance(cfg.OpenTimeout)

	const callers = 64
	var (
		start sync.WaitGroup
		wg    sync.WaitGroup
		mu    sync.Mutex
		dones []func(breaker.Outcome)
		other []error
	)
	start.Add(1)
	for range callers {
		wg.Go(func() {
			start.Wait()
			done, err := b.Allow()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				dones = append(dones, done)
			case !errors.Is(err, breaker.ErrOpen):
				other = append(other, err)
			}
		})
	}
	start.Done()
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("Allow errors other than ErrOpen: %v", other)
	}
	if len(dones) != cfg.HalfOpenRequests {
		t.Fatalf("%d of %d concurrent callers admitted while half-open, want %d", len(dones), callers, cfg.HalfOpenRequests)
	}
	mustRefuse(t, b)
	wantState(t, b, breaker.StateHalfOpen)

	// All probes must succeed: the last success closes.
	for i, done := range dones {
		done(breaker.Success)
		want := breaker.StateHalfOpen
		if i == len(dones)-1 {
			want = breaker.StateClosed
		}
		wantState(t, b, want)
	}
	wantTransitions(t, b, transitions{closed: 1, halfOpen: 1, open: 1})
}

// An Ignored probe says nothing about the upstream: it frees its slot for
// another probe and neither closes nor reopens the breaker.
func TestHalfOpenIgnoredProbeFreesSlot(t *testing.T) {
	b, clk := newBreaker(t, testConfig())
	for range 3 {
		report(t, b, breaker.Failure)
	}
	clk.Advance(30 * time.Second)
	p1 := mustAllow(t, b)
	p2 := mustAllow(t, b)
	mustRefuse(t, b)
	p1(breaker.Ignored)
	wantState(t, b, breaker.StateHalfOpen)
	p3 := mustAllow(t, b)
	mustRefuse(t, b)
	p2(breaker.Success)
	wantState(t, b, breaker.StateHalfOpen) // one success; two needed
	p3(breaker.Success)
	wantState(t, b, breaker.StateClosed)
}

func TestRatioTrip(t *testing.T) {
	// F S F S F S F S S: 4 failures in 9, never two in a row.
	first9 := []breaker.Outcome{
		breaker.Failure, breaker.Success, breaker.Failure, breaker.Success, breaker.Failure,
		breaker.Success, breaker.Failure, breaker.Success, breaker.Success,
	}
	t.Run("below MinRequests", func(t *testing.T) {
		b, _ := newBreaker(t, testConfig())
		for _, o := range first9 {
			report(t, b, o)
		}
		wantState(t, b, breaker.StateClosed)
		report(t, b, breaker.Failure) // 5 of 10
		wantState(t, b, breaker.StateOpen)
		wantTransitions(t, b, transitions{open: 1})
	})
	t.Run("below ratio at MinRequests", func(t *testing.T) {
		b, _ := newBreaker(t, testConfig())
		for _, o := range first9 {
			report(t, b, o)
		}
		report(t, b, breaker.Success) // 4 of 10
		report(t, b, breaker.Failure) // 5 of 11
		wantState(t, b, breaker.StateClosed)
		report(t, b, breaker.Failure) // 6 of 12, but also only 2 in a row
		wantState(t, b, breaker.StateOpen)
	})
	t.Run("ignored counts neither way", func(t *testing.T) {
		b, _ := newBreaker(t, testConfig())
		for _, o := range first9 {
			report(t, b, o)
			for range 5 {
				report(t, b, breaker.Ignored)
			}
		}
		// 54 requests, 45 of them ignored: 4 failures in 9 counted.
		wantState(t, b, breaker.StateClosed)
		report(t, b, breaker.Failure)
		wantState(t, b, breaker.StateOpen)
	})
	t.Run("in-flight requests do not dilute", func(t *testing.T) {
		// gobreaker's Requests counts admissions; outcomes not yet known
		// must not be in the ratio's denominator.
		b, _ := newBreaker(t, testConfig())
		var inFlight []func(breaker.Outcome)
		for range 10 {
			inFlight = append(inFlight, mustAllow(t, b))
		}
		for i := range 10 { // S F S F ...: 5 of 10 counted, 20 admitted
			o := breaker.Success
			if i%2 == 1 {
				o = breaker.Failure
			}
			report(t, b, o)
		}
		wantState(t, b, breaker.StateOpen)
		for _, done := range inFlight {
			done(breaker.Success) // admitted before the trip: discarded
		}
		wantState(t, b, breaker.StateOpen)
	})
}

func TestIgnoredNeverTrips(t *testing.T) {
	cfg := testConfig()
	cfg.ConsecutiveFailures = 1
	cfg.MinRequests = 1
	b, _ := newBreaker(t, cfg)
	for range 1000 {
		report(t, b, breaker.Ignored)
	}
	wantState(t, b, breaker.StateClosed)
	wantTransitions(t, b, transitions{})
}

// A cancellation between failures neither counts nor breaks the streak.
func TestIgnoredDoesNotResetConsecutiveFailures(t *testing.T) {
	cfg := testConfig()
	cfg.MinRequests = 1000
	b, _ := newBreaker(t, cfg)
	report(t, b, breaker.Failure)
	report(t, b, breaker.Ignored)
	report(t, b, breaker.Failure)
	report(t, b, breaker.Ignored)
	wantState(t, b, breaker.StateClosed)
	report(t, b, breaker.Failure)
	wantState(t, b, breaker.StateOpen)
}

// Requests admitted before a trip finish during the open period; their
// reports are discarded and must not end the open period early, even though
// they move gobreaker itself (1ns timeout) to half-open.
func TestLateReportsDuringOpen(t *testing.T) {
	b, clk := newBreaker(t, testConfig())
	var late []func(breaker.Outcome)
	for range 5 {
		late = append(late, mustAllow(t, b))
	}
	for range 3 {
		report(t, b, breaker.Failure)
	}
	clk.Advance(10 * time.Second)
	for i, done := range late {
		if i%2 == 0 {
			done(breaker.Success)
		} else {
			done(breaker.Failure)
		}
		wantState(t, b, breaker.StateOpen)
		mustRefuse(t, b)
	}
	wantOpenUntil(t, b, t0.Add(30*time.Second), 20*time.Second)
	wantTransitions(t, b, transitions{open: 1})

	clk.Advance(20 * time.Second)
	wantState(t, b, breaker.StateHalfOpen)
	wantTransitions(t, b, transitions{halfOpen: 1, open: 1})
	p1, p2 := mustAllow(t, b), mustAllow(t, b)
	mustRefuse(t, b)
	p1(breaker.Success)
	p2(breaker.Success)
	wantState(t, b, breaker.StateClosed)
}

func TestClassify(t *testing.T) {
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name     string
		statuses []int // nil: the default 502, 503, 504
		status   int
		err      error
		want     breaker.Outcome
	}{
		{name: "200", status: 200, want: breaker.Success},
		{name: "404", status: 404, want: breaker.Success},
		{name: "500 not listed", status: 500, want: breaker.Success},
		{name: "502", status: 502, want: breaker.Failure},
		{name: "503", status: 503, want: breaker.Failure},
		{name: "504", status: 504, want: breaker.Failure},
		{name: "custom 500", statuses: []int{500}, status: 500, want: breaker.Failure},
		{name: "custom 502 not listed", statuses: []int{500}, status: 502, want: breaker.Success},
		{name: "canceled", err: context.Canceled, want: breaker.Ignored},
		{name: "canceled wrapped", err: &url.Error{Op: "Get", URL: "http://u/", Err: fmt.Errorf("read: %w", context.Canceled)}, want: breaker.Ignored},
		{name: "dial error", err: dialErr, want: breaker.Failure},
		{name: "dial error wrapped", err: &url.Error{Op: "Get", URL: "http://u/", Err: dialErr}, want: breaker.Failure},
		{name: "deadline exceeded", err: context.DeadlineExceeded, want: breaker.Failure},
		{name: "error wins over status", status: 200, err: errors.New("EOF"), want: breaker.Failure},
		{name: "canceled wins over status", status: 502, err: context.Canceled, want: breaker.Ignored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.statuses != nil {
				cfg.FailureStatuses = tt.statuses
			}
			b, _ := newBreaker(t, cfg)
			if got := b.Classify(tt.status, tt.err); got != tt.want {
				t.Errorf("Classify(%d, %v) = %d, want %d", tt.status, tt.err, got, tt.want)
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[breaker.State]string{
		breaker.StateClosed:   "closed",
		breaker.StateHalfOpen: "half-open",
		breaker.StateOpen:     "open",
		7:                     "State(7)",
	} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
	if breaker.StateClosed != 0 || breaker.StateHalfOpen != 1 || breaker.StateOpen != 2 {
		t.Error("state numbers must match the sluice_breaker_state metric: 0 closed, 1 half-open, 2 open")
	}
}

func TestNameAndUnknownTransitions(t *testing.T) {
	b, _ := newBreaker(t, testConfig())
	if got := b.Name(); got != "users" {
		t.Errorf("Name() = %q, want users", got)
	}
	if got := b.Transitions(-1) + b.Transitions(3); got != 0 {
		t.Errorf("Transitions of unknown states = %d, want 0", got)
	}
}

func TestNilClockIsReal(t *testing.T) {
	b := breaker.New("users", testConfig(), nil)
	report(t, b, breaker.Success)
	for range 3 {
		report(t, b, breaker.Failure)
	}
	if left := b.OpenFor(); left <= 0 || left > 30*time.Second {
		t.Errorf("OpenFor() = %v after a trip on the real clock, want in (0, 30s]", left)
	}
	if until := b.OpenUntil(); until.IsZero() || until.After(time.Now().Add(30*time.Second)) {
		t.Errorf("OpenUntil() = %v, want within 30s from now", until)
	}
}

func TestDoubleDonePanics(t *testing.T) {
	b, _ := newBreaker(t, testConfig())
	done := mustAllow(t, b)
	done(breaker.Success)
	defer func() {
		if recover() == nil {
			t.Error("a second done did not panic")
		}
	}()
	done(breaker.Success)
}

// TestConcurrent runs Allow/done with mixed outcomes against a clock that
// moves under it. Run with -race. It checks that every admitted request is
// reported exactly once (the handle pool would panic on a double report),
// that nothing deadlocks, that the transition counts stay coherent, and that
// no probe slot leaked: afterwards the breaker still recovers.
func TestConcurrent(t *testing.T) {
	cfg := testConfig()
	cfg.OpenTimeout = 5 * time.Second
	cfg.HalfOpenRequests = 3
	b, clk := newBreaker(t, cfg)

	// The upstream is down 5s of every 20s on the fake clock, so the
	// breaker keeps cycling; a tenth of the requests are cancelled.
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

	const workers = 16
	var (
		calls, admitted, reported, refused atomic.Int64
		wg, bg                             sync.WaitGroup
		stop                               = make(chan struct{})
	)
	bg.Go(func() { // the clock, in small steps until the workers stop
		for clk.Now().Before(end) {
			clk.Advance(10 * time.Millisecond)
			runtime.Gosched()
		}
	})
	bg.Go(func() { // a metrics scraper
		for {
			select {
			case <-stop:
				return
			default:
				_ = b.State()
				_ = b.OpenFor()
				_ = b.OpenUntil()
				_ = b.Transitions(breaker.StateOpen)
				runtime.Gosched()
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
					runtime.Gosched() // let others in while this one is in flight
				}
				done(outcome(clk.Now(), w+i))
				reported.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()

	if admitted.Load() != reported.Load() {
		t.Fatalf("admitted %d, reported %d", admitted.Load(), reported.Load())
	}
	if admitted.Load()+refused.Load() != calls.Load() {
		t.Fatalf("admitted %d + refused %d != %d calls", admitted.Load(), refused.Load(), calls.Load())
	}
	if b.Transitions(breaker.StateOpen) == 0 {
		t.Fatal("the upstream was down a quarter of the time, yet the breaker never opened")
	}

	// Recovery: past any open period, HalfOpenRequests successes close it.
	clk.Advance(cfg.OpenTimeout)
	for range cfg.HalfOpenRequests {
		if b.State() == breaker.StateClosed {
			break
		}
		report(t, b, breaker.Success)
	}
	wantState(t, b, breaker.StateClosed)
	open, halfOpen, closed := b.Transitions(breaker.StateOpen), b.Transitions(breaker.StateHalfOpen), b.Transitions(breaker.StateClosed)
	// Every entry into open is followed by one into half-open (all open
	// periods are over now), and closed is entered only from half-open.
	if halfOpen != open || closed > halfOpen {
		t.Errorf("transitions: open %d, half-open %d, closed %d", open, halfOpen, closed)
	}
	t.Logf("admitted %d, refused %d; transitions: open %d, half-open %d, closed %d",
		admitted.Load(), refused.Load(), open, halfOpen, closed)
}

func TestAllowClosedAllocatesOnlyGobreakersClosure(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	b, _ := newBreaker(t, testConfig())
	allocs := testing.AllocsPerRun(1000, func() {
		done, _ := b.Allow()
		done(breaker.Success)
	})
	if allocs > 1 {
		t.Errorf("Allow+done allocates %v times per call, want at most 1 (gobreaker's closure)", allocs)
	}
}

func BenchmarkAllowDone(b *testing.B) {
	br := breaker.New("users", testConfig(), clock.Real())
	b.ReportAllocs()
	for b.Loop() {
		done, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		done(breaker.Success)
	}
}

func BenchmarkAllowDoneParallel(b *testing.B) {
	br := breaker.New("users", testConfig(), clock.Real())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done, err := br.Allow()
			if err != nil {
				b.Error(err)
				return
			}
			done(breaker.Success)
		}
	})
}

// BenchmarkAllowOpen is the refusal path while open: the gate alone.
func BenchmarkAllowOpen(b *testing.B) {
	br := breaker.New("users", testConfig(), clock.Real())
	for range 3 {
		done, _ := br.Allow()
		done(breaker.Failure)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Allow(); err == nil {
			b.Fatal("admitted while open")
		}
	}
}

// BenchmarkGobreakerTwoStep is the floor BenchmarkAllowDone is measured
// against: gobreaker's own Allow and done, with the same settings.
func BenchmarkGobreakerTwoStep(b *testing.B) {
	cb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name: "users", MaxRequests: 2, Interval: time.Hour, BucketPeriod: time.Hour / 10, Timeout: time.Nanosecond,
	})
	b.ReportAllocs()
	for b.Loop() {
		done, err := cb.Allow()
		if err != nil {
			b.Fatal(err)
		}
		done(nil)
	}
}
