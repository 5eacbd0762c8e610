package monitor

import (
	"context"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/clock"
)

// counters are routes whose admission counters the test sets. Its mutex
// lets a test change them while Run samples on another goroutine.
type counters struct {
	mu     sync.Mutex // guards routes, order, panics
	routes map[string]Counts
	order  []string // names in the order they were first set
	panics int      // panic in this many rounds, then yield
}

func newCounters() *counters { return &counters{routes: map[string]Counts{}} }

func (c *counters) set(name string, admitted uint64, rejected ...uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.routes[name]; !ok {
		c.order = append(c.order, name)
	}
	c.routes[name] = Counts{Admitted: admitted, Rejected: slices.Clone(rejected)}
}

func (c *counters) remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.routes, name)
	c.order = slices.DeleteFunc(c.order, func(n string) bool { return n == name })
}

// all yields every route through one reused Rejected slice, as the admin
// server does, so a tracker that kept the caller's slice would be caught.
func (c *counters) all(yield func(string, Counts) bool) {
	c.mu.Lock()
	if c.panics > 0 {
		c.panics--
		c.mu.Unlock()
		panic("counters broke")
	}
	type entry struct {
		name string
		c    Counts
	}
	var entries []entry
	for _, name := range c.order {
		entries = append(entries, entry{name, c.routes[name]})
	}
	c.mu.Unlock()
	var buf []uint64
	for _, e := range entries {
		buf = append(buf[:0], e.c.Rejected...)
		if !yield(e.name, Counts{Admitted: e.c.Admitted, Rejected: buf}) {
			return
		}
	}
}

func wantRates(t *testing.T, tr *RateTracker, name string, want Rates) {
	t.Helper()
	got := tr.Rates(name)
	if got.Admitted != want.Admitted || got.Rejected != want.Rejected || !slices.Equal(got.ByReason, want.ByReason) {
		t.Fatalf("Rates(%q) = %+v, want %+v", name, got, want)
	}
}

func TestRatesNeedTwoSamples(t *testing.T) {
	clk := clock.NewFake(start)
	tr := NewRateTracker(2, clk, nil)
	c := newCounters()
	c.set("r", 10, 1, 2)

	wantRates(t, tr, "r", Rates{ByReason: []float64{0, 0}})
	tr.Sample(c.all)
	wantRates(t, tr, "r", Rates{ByReason: []float64{0, 0}})

	// A second sample at the same instant spans no time: still no rate.
	c.set("r", 20, 1, 2)
	tr.Sample(c.all)
	wantRates(t, tr, "r", Rates{ByReason: []float64{0, 0}})
	wantRates(t, tr, "unknown", Rates{ByReason: []float64{0, 0}})
}

func TestRatesOverTheWindow(t *testing.T) {
	clk := clock.NewFake(start)
	tr := NewRateTracker(2, clk, nil)
	c := newCounters()

	// Admitted grows 10 a second and reason 1 by 4 a second, except for
	// one burst of 60 admissions in the second second.
	admitted := []uint64{0, 10, 80, 90, 100, 110, 120, 130, 140}
	for i, a := range admitted {
		c.set("r", a, 0, 4*uint64(i))
		tr.Sample(c.all)
		clk.Advance(RateInterval)
		switch i {
		case 1:
			wantRates(t, tr, "r", Rates{Admitted: 10, Rejected: 4, ByReason: []float64{0, 4}})
		case 2:
			// Both seconds count: (80-0)/2.
			wantRates(t, tr, "r", Rates{Admitted: 40, Rejected: 4, ByReason: []float64{0, 4}})
		case 5:
			// Six samples span 5 s: (110-0)/5.
			wantRates(t, tr, "r", Rates{Admitted: 22, Rejected: 4, ByReason: []float64{0, 4}})
		case 6:
			// The oldest sample left the window: (120-10)/5.
			wantRates(t, tr, "r", Rates{Admitted: 22, Rejected: 4, ByReason: []float64{0, 4}})
		case 7:
			// The burst is still inside: (130-80)/5.
			wantRates(t, tr, "r", Rates{Admitted: 10, Rejected: 4, ByReason: []float64{0, 4}})
		}
	}
}

// TestRatesSpanTheSampleTimes checks that the rate divides by the time the
// samples actually span, not by their count: a round that came late does
// not inflate the rate.
func TestRatesSpanTheSampleTimes(t *testing.T) {
	clk := clock.NewFake(start)
	tr := NewRateTracker(1, clk, nil)
	c := newCounters()
	c.set("r", 0, 0)
	tr.Sample(c.all)
	clk.Advance(4 * time.Second)
	c.set("r", 10, 6)
	tr.Sample(c.all)
	wantRates(t, tr, "r", Rates{Admitted: 2.5, Rejected: 1.5, ByReason: []float64{1.5}})
}

func TestRatesRoutesComeAndGo(t *testing.T) {
	clk := clock.NewFake(start)
	tr := NewRateTracker(1, clk, nil)
	c := newCounters()
	c.set("a", 0, 0)
	c.set("b", 100, 0)
	tr.Sample(c.all)
	clk.Advance(RateInterval)
	c.set("a", 5, 1)
	c.set("b", 103, 0)
	tr.Sample(c.all)
	wantRates(t, tr, "a", Rates{Admitted: 5, Rejected: 1, ByReason: []float64{1}})
	wantRates(t, tr, "b", Rates{Admitted: 3, ByReason: []float64{0}})

	// b leaves (a reload removed it): it is forgotten, and when it comes
	// back its history starts afresh rather than spanning the gap.
	c.remove("b")
	clk.Advance(RateInterval)
	tr.Sample(c.all)
	wantRates(t, tr, "b", Rates{ByReason: []float64{0}})
	c.set("b", 200, 0)
	clk.Advance(RateInterval)
	tr.Sample(c.all)
	wantRates(t, tr, "b", Rates{ByReason: []float64{0}})
	clk.Advance(RateInterval)
	c.set("b", 207, 0)
	tr.Sample(c.all)
	wantRates(t, tr, "b", Rates{Admitted: 7, ByReason: []float64{0}})
	// a is unaffected: 5 admitted and 1 rejected over 4 s.
	wantRates(t, tr, "a", Rates{Admitted: 1.25, Rejected: 0.25, ByReason: []float64{0.25}})
}

// TestRatesCounterRestart checks a route whose counters start again from
// zero, as a reload that changes its settings does: the new counts are
// growth, never a wrap-around of uint64.
func TestRatesCounterRestart(t *testing.T) {
	clk := clock.NewFake(start)
	tr := NewRateTracker(2, clk, nil)
	c := newCounters()
	for _, n := range []uint64{100, 110, 120} {
		c.set("r", n, 50, n)
		tr.Sample(c.all)
		clk.Advance(RateInterval)
	}
	// Admitted and reason 1 went down: all three counters restarted, so
	// reason 0's 60 is all new too, although it is above the 50 before.
	c.set("r", 4, 60, 4)
	tr.Sample(c.all)
	// Over 3 s: 10+10+4 admitted, 0+0+60 and 10+10+4 rejected.
	wantRates(t, tr, "r", Rates{Admitted: 8, Rejected: 28, ByReason: []float64{20, 8}})
	clk.Advance(RateInterval)
	c.set("r", 8, 60, 8)
	tr.Sample(c.all)
	// Over 4 s: 28 admitted, 60 and 28 rejected.
	wantRates(t, tr, "r", Rates{Admitted: 7, Rejected: 22, ByReason: []float64{15, 7}})

	// One counter going down is enough: admitted grew from 8 to 12, but
	// reason 1 fell from 8 to 2, so 12, 60 and 2 are all new. Over 5 s:
	// 40 admitted, 120 and 30 rejected.
	clk.Advance(RateInterval)
	c.set("r", 12, 60, 2)
	tr.Sample(c.all)
	wantRates(t, tr, "r", Rates{Admitted: 8, Rejected: 30, ByReason: []float64{24, 6}})
}

func TestRatesSumReasons(t *testing.T) {
	clk := clock.NewFake(start)
	tr := NewRateTracker(3, clk, nil)
	c := newCounters()
	c.set("r", 0, 0, 0, 0)
	tr.Sample(c.all)
	clk.Advance(2 * RateInterval)
	c.set("r", 0, 2, 4, 8)
	tr.Sample(c.all)
	wantRates(t, tr, "r", Rates{Rejected: 7, ByReason: []float64{1, 2, 4}})
}

func TestRatesWrongReasonCountPanics(t *testing.T) {
	tr := NewRateTracker(2, clock.NewFake(start), nil)
	c := newCounters()
	c.set("r", 1, 1)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `"r" has 1 rejection counters, want 2`) {
			t.Fatalf("recovered %v, want the length mismatch", r)
		}
	}()
	tr.Sample(c.all)
}

func TestNewRateTrackerDefaults(t *testing.T) {
	tr := NewRateTracker(0, nil, nil)
	if tr.clk == nil || tr.log == nil {
		t.Fatal("nil clock or logger not defaulted")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("negative reasons did not panic")
		}
	}()
	NewRateTracker(-1, nil, nil)
}

// TestRatesIteratorMayReadTracker checks that the routes iterator runs
// outside the tracker's mutex: reading the rates from it must not deadlock.
func TestRatesIteratorMayReadTracker(t *testing.T) {
	clk := clock.NewFake(start)
	tr := NewRateTracker(0, clk, nil)
	var seen []Rates
	routes := func(yield func(string, Counts) bool) {
		seen = append(seen, tr.Rates("r"))
		yield("r", Counts{Admitted: uint64(len(seen))})
	}
	tr.Sample(routes)
	clk.Advance(RateInterval)
	tr.Sample(routes)
	clk.Advance(RateInterval)
	tr.Sample(routes)
	if len(seen) != 3 || seen[2].Admitted != 1 {
		t.Fatalf("rates read from the iterator: %+v", seen)
	}
}

func runRates(t *testing.T, tr *RateTracker, routes iter.Seq2[string, Counts]) (stop func()) {
	t.Helper()
	return runUntilStopped(t, func(ctx context.Context) { tr.Run(ctx, routes) })
}

func TestRatesRunSamplesEverySecond(t *testing.T) {
	clk := clock.NewFake(start)
	tr := NewRateTracker(1, clk, nil)
	c := newCounters()
	c.set("r", 0, 0)
	stop := runRates(t, tr, c.all)

	// Run samples at once, then arms its timer.
	clk.WaitTimers(1)
	c.set("r", 30, 3)
	clk.Advance(RateInterval - time.Nanosecond)
	if clk.Timers() != 1 {
		t.Fatal("Run sampled before the interval was over")
	}
	wantRates(t, tr, "r", Rates{ByReason: []float64{0}})
	clk.Advance(time.Nanosecond)
	clk.WaitTimers(1) // the second round is recorded once Run re-arms
	wantRates(t, tr, "r", Rates{Admitted: 30, Rejected: 3, ByReason: []float64{3}})

	stop()
	if n := clk.Timers(); n != 0 {
		t.Fatalf("%d timers left armed after Run returned", n)
	}
	c.set("r", 1000, 3)
	clk.Advance(10 * RateInterval)
	wantRates(t, tr, "r", Rates{Admitted: 30, Rejected: 3, ByReason: []float64{3}})
}

func TestRatesRunRecoversPanic(t *testing.T) {
	clk := clock.NewFake(start)
	logs := &syncBuffer{}
	tr := NewRateTracker(1, clk, slog.New(slog.NewTextHandler(logs, nil)))
	c := newCounters()
	c.set("r", 0, 0)
	runRates(t, tr, c.all)

	clk.WaitTimers(1)
	c.mu.Lock()
	c.panics = 1
	c.mu.Unlock()
	clk.Advance(RateInterval) // this round panics
	clk.WaitTimers(1)
	c.set("r", 20, 0)
	clk.Advance(RateInterval)
	clk.WaitTimers(1)
	// The panicking round took no sample: 20 over the 2 s since the first.
	wantRates(t, tr, "r", Rates{Admitted: 10, ByReason: []float64{0}})
	if out := logs.String(); !strings.Contains(out, "rate sampling round panicked") || !strings.Contains(out, "counters broke") {
		t.Fatalf("panic not logged:\n%s", out)
	}
}

// TestRatesConcurrent runs rounds and readers at once, for the race
// detector; the figures must stay those of whole rounds.
func TestRatesConcurrent(t *testing.T) {
	clk := clock.NewFake(start)
	tr := NewRateTracker(1, clk, nil)
	var mu sync.Mutex // guards n
	n := uint64(0)
	routes := func(yield func(string, Counts) bool) {
		mu.Lock()
		v := n
		mu.Unlock()
		yield("r", Counts{Admitted: v, Rejected: []uint64{v}})
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 200 {
			mu.Lock()
			n += 10
			mu.Unlock()
			clk.Advance(RateInterval)
			tr.Sample(routes)
		}
	})
	for range 2 {
		wg.Go(func() {
			for range 200 {
				r := tr.Rates("r")
				if r.Admitted != r.Rejected || r.ByReason[0] != r.Rejected || (r.Admitted != 0 && r.Admitted != 10) {
					t.Errorf("torn rates %+v", r)
					return
				}
			}
		})
	}
	wg.Wait()
	wantRates(t, tr, "r", Rates{Admitted: 10, Rejected: 10, ByReason: []float64{10}})
}
