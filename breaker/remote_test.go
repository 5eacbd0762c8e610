package breaker

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"sluice/clock"
	"sluice/config"
)

func remoteTestConfig() config.Breaker {
	return config.Breaker{
		ConsecutiveFailures: 1,
		FailureRatio:        1,
		MinRequests:         1000,
		Window:              time.Hour,
		OpenTimeout:         50 * time.Millisecond,
		HalfOpenRequests:    3,
	}
}

// The core OpenRemote publishes is open in gobreaker's eyes, and the
// synthetic failure that tripped it is nowhere in its counts.
func TestOpenCore(t *testing.T) {
	b := New("users", remoteTestConfig(), clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)))
	c := b.openCore()
	if c.forced {
		t.Fatal("openCore left the core forced: its ReadyToTrip would always trip")
	}
	if n := c.cb.Counts(); n != (gobreaker.Counts{}) {
		t.Fatalf("counts %+v after the forced trip, want zero", n)
	}
	if st := c.cb.State(); st == gobreaker.StateClosed {
		t.Fatal("gobreaker closed after the forced trip")
	}
	if c.gate.Load() != noGate || b.cur.Load() == c || b.Transitions(StateOpen) != 0 || b.trips.Load() != 0 {
		t.Fatal("building a core changed the breaker before it was published")
	}
}

// TestProbeLimitWithConcurrentOpenRemote hammers Allow and done while remote
// opens of all lengths replace the gobreaker instance and the clock moves.
// Run with -race. The upstream always fails, and the breaker has tripped
// before the workers start, so it is never closed again and every admitted
// request is a probe; no half-open period may have more than
// HalfOpenRequests of them in flight at once.
//
// A probe's period is told by the core in charge and the count of entries
// into open, both read before and after its Allow: if neither moved, the
// probe was admitted in the half-open period that followed that entry, on
// that core. A probe whose Allow straddled a change is not counted, which
// only makes the check weaker. The test's in-flight count rises after
// Allow returns and falls before done is called, so it never exceeds the
// breaker's own.
func TestProbeLimitWithConcurrentOpenRemote(t *testing.T) {
	cfg := remoteTestConfig()
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	b := New("users", cfg, clk)
	done, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	done(Failure)
	if b.State() != StateOpen {
		t.Fatal("one failure did not trip the breaker")
	}

	type period struct {
		c     *core
		opens uint64
	}
	var (
		mu       sync.Mutex // guards inFlight, worst
		inFlight = map[period]int{}
		worst    int

		calls, admitted, reported, refused, counted atomic.Int64
		wg, bg                                      sync.WaitGroup
	)
	end := t0.Add(time.Minute)
	bg.Go(func() { // the clock
		for clk.Now().Before(end) {
			clk.Advance(5 * time.Millisecond)
			runtime.Gosched()
		}
	})
	bg.Go(func() { // remote opens, shorter and longer than OpenTimeout
		remotes := []time.Duration{time.Millisecond, 10 * time.Millisecond, 80 * time.Millisecond, 0}
		for i, next := 0, t0; clk.Now().Before(end); i++ {
			// One every 20ms of fake time (four steps), give or take.
			for now := clk.Now(); now.Before(next) && now.Before(end); now = clk.Now() {
				runtime.Gosched()
			}
			next = next.Add(20 * time.Millisecond)
			b.OpenRemote(remotes[i%len(remotes)])
		}
	})
	for w := range 12 {
		wg.Go(func() {
			for i := 0; clk.Now().Before(end); i++ {
				calls.Add(1)
				c0, o0 := b.cur.Load(), b.Transitions(StateOpen)
				done, err := b.Allow()
				if err != nil {
					if !errors.Is(err, ErrOpen) {
						t.Errorf("Allow: %v", err)
						return
					}
					refused.Add(1)
					continue
				}
				admitted.Add(1)
				p := period{b.cur.Load(), b.Transitions(StateOpen)}
				tracked := p == period{c0, o0}
				if tracked {
					counted.Add(1)
					mu.Lock()
					inFlight[p]++
					worst = max(worst, inFlight[p])
					mu.Unlock()
				}
				for range (w + i) % 4 { // hold the probe a while
					runtime.Gosched()
				}
				if tracked {
					mu.Lock()
					inFlight[p]--
					mu.Unlock()
				}
				o := Failure
				if i%3 == 0 {
					o = Ignored // frees the slot, says nothing
				}
				done(o)
				reported.Add(1)
			}
		})
	}
	wg.Wait()
	bg.Wait()

	if admitted.Load() != reported.Load() || admitted.Load()+refused.Load() != calls.Load() {
		t.Fatalf("calls %d, admitted %d, refused %d, reported %d", calls.Load(), admitted.Load(), refused.Load(), reported.Load())
	}
	if worst > cfg.HalfOpenRequests {
		t.Fatalf("%d probes of one half-open period in flight at once, want at most %d", worst, cfg.HalfOpenRequests)
	}
	if counted.Load() == 0 {
		t.Fatal("no probe was admitted in a period the test could tell")
	}

	// No probe slot leaked: past any open period, the full number of
	// probes is admitted, and their successes close the breaker.
	clk.Advance(80 * time.Millisecond)
	var probes []func(Outcome)
	for range cfg.HalfOpenRequests {
		done, err := b.Allow()
		if err != nil {
			t.Fatalf("probe %d after the run: %v", len(probes)+1, err)
		}
		probes = append(probes, done)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("probe %d after the run: err %v, want ErrOpen", cfg.HalfOpenRequests+1, err)
	}
	for _, done := range probes {
		done(Success)
	}
	if st := b.State(); st != StateClosed {
		t.Fatalf("State() = %v after %d successful probes, want closed", st, cfg.HalfOpenRequests)
	}
	open, halfOpen := b.Transitions(StateOpen), b.Transitions(StateHalfOpen)
	if open != halfOpen {
		t.Errorf("transitions: open %d, half-open %d: every open period ends in one half-open entry", open, halfOpen)
	}
	t.Logf("admitted %d (%d tracked, at most %d at once), refused %d; open %d, half-open %d",
		admitted.Load(), counted.Load(), worst, refused.Load(), open, halfOpen)
}

// TestAdmitRechecksCore plays the race admit's second check guards against:
// a caller loads the core and passes its gate, OpenRemote replaces the core,
// the remote open period passes, and the caller then reaches the old core's
// gobreaker, which admits it as a probe. Admitted, it would be a probe
// beyond what the new core's half-open period allows.
func TestAdmitRechecksCore(t *testing.T) {
	cfg := remoteTestConfig()
	cfg.HalfOpenRequests = 1
	clk := clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	b := New("users", cfg, clk)
	done, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	done(Failure)
	clk.Advance(cfg.OpenTimeout)

	old := b.cur.Load()
	if old.gateClosed() { // the racing caller's first check: passes
		t.Fatal("gate closed after OpenTimeout")
	}
	if !b.OpenRemote(time.Second) {
		t.Fatal("OpenRemote while half-open = false")
	}
	clk.Advance(time.Second)

	if _, err := b.admit(old); !errors.Is(err, ErrOpen) {
		t.Fatalf("admit on the replaced core: err %v, want ErrOpen", err)
	}
	if n := old.cb.Counts(); n.Requests != 1 || n.TotalExclusions != 1 {
		t.Fatalf("old core's counts %+v: its probe slot was not handed back as an exclusion", n)
	}
	probe, err := b.Allow()
	if err != nil {
		t.Fatalf("probe after the remote open: %v", err)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("second probe: err %v, want ErrOpen", err)
	}
	probe(Success)
	if st := b.State(); st != StateClosed {
		t.Fatalf("State() = %v after the probe succeeded, want closed", st)
	}
}
