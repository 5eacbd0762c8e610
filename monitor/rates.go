package monitor

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"sluice/clock"
)

// RateInterval is the period at which RateTracker.Run samples.
const RateInterval = time.Second

// rateSamples is how many samples a route's rates are computed over: six
// samples one RateInterval apart span 5 s, enough to smooth a single bursty
// second without lagging far behind.
const rateSamples = 6

// Counts is one reading of a route's monotonic admission counters.
type Counts struct {
	Admitted uint64
	// Rejected holds one counter per rejection reason, in an order the
	// caller keeps fixed (sluice uses admission.Rejections). Its length is
	// the reasons the RateTracker was made with. RateTracker.Sample copies
	// it, so the caller may reuse one slice for every route.
	Rejected []uint64
}

// Rates are a route's per-second rates over its recent samples. Every figure
// is 0 until the route has two samples a positive time apart.
type Rates struct {
	Admitted float64 // requests admitted per second
	Rejected float64 // requests refused per second, all reasons together
	// ByReason is the refusals per second of each reason, indexed as
	// Counts.Rejected; its length is always the tracker's reasons.
	ByReason []float64
}

// RateTracker turns the routes' monotonic counters into per-second rates for
// the admin API. It keeps each route's last rateSamples readings, one per
// RateInterval, and divides the growth across them by the time they span.
// Run drives it on the clock; tests call Sample by hand.
//
// All methods are safe for concurrent use. Rates never waits on a round's
// iterator (the round holds only roundMu while it runs), so a slow iterator
// cannot stall API readers and an iterator may itself call Rates.
type RateTracker struct {
	reasons int
	clk     clock.Clock
	log     *slog.Logger

	roundMu sync.Mutex // serializes Sample rounds, so samples enter each history in time order; guards round
	round   []reading  // one round's readings, reused from round to round

	mu     sync.Mutex              // guards routes and every history in it
	routes map[string]*rateHistory // by route name
}

// reading is one route's counters as a Sample round copied them.
type reading struct {
	name     string
	admitted uint64
	rejected []uint64
}

// rateHistory is one route's ring of the last rateSamples samples.
type rateHistory struct {
	ring  [rateSamples]rateSample
	first int // ring index of the oldest sample
	n     int // samples present, at most rateSamples
}

type rateSample struct {
	at       time.Time
	admitted uint64
	rejected []uint64 // by reason index; allocated once per ring slot
}

// NewRateTracker returns a RateTracker for counters with the given number
// of rejection reasons. A nil clk means the wall clock; a nil log means
// slog.Default(). A negative reasons is a programming error and panics.
func NewRateTracker(reasons int, clk clock.Clock, log *slog.Logger) *RateTracker {
	if reasons < 0 {
		panic(fmt.Sprintf("monitor: %d rejection reasons", reasons))
	}
	if clk == nil {
		clk = clock.Real()
	}
	if log == nil {
		log = slog.Default()
	}
	return &RateTracker{reasons: reasons, clk: clk, log: log, routes: map[string]*rateHistory{}}
}

// Sample takes one reading of every route routes yields, at clk.Now(). A
// route routes no longer yields (one a reload removed) is forgotten, and
// starts afresh if it comes back. Counts whose Rejected has the wrong length
// are a programming error and panic.
//
// routes runs before mu is taken: the round copies every reading, then
// records them all in one short critical section.
func (t *RateTracker) Sample(routes iter.Seq2[string, Counts]) {
	t.roundMu.Lock()
	defer t.roundMu.Unlock()
	now := t.clk.Now()
	n := 0
	for name, c := range routes {
		if len(c.Rejected) != t.reasons {
			panic(fmt.Sprintf("monitor: route %q has %d rejection counters, want %d", name, len(c.Rejected), t.reasons))
		}
		if n == len(t.round) {
			t.round = append(t.round, reading{})
		}
		r := &t.round[n]
		r.name, r.admitted, r.rejected = name, c.Admitted, append(r.rejected[:0], c.Rejected...)
		n++
	}
	round := t.round[:n]

	t.mu.Lock()
	defer t.mu.Unlock()
	seen := make(map[string]bool, len(round))
	for i := range round {
		r := &round[i]
		h := t.routes[r.name]
		if h == nil {
			h = &rateHistory{}
			t.routes[r.name] = h
		}
		h.add(now, r)
		seen[r.name] = true
	}
	for name := range t.routes {
		if !seen[name] {
			delete(t.routes, name)
		}
	}
}

// add appends a sample, dropping the oldest when the ring is full.
func (h *rateHistory) add(now time.Time, r *reading) {
	i := (h.first + h.n) % rateSamples
	if h.n == rateSamples {
		h.first = (h.first + 1) % rateSamples
	} else {
		h.n++
	}
	s := &h.ring[i]
	s.at, s.admitted, s.rejected = now, r.admitted, append(s.rejected[:0], r.rejected...)
}

// at returns the i-th oldest sample present.
func (h *rateHistory) at(i int) *rateSample { return &h.ring[(h.first+i)%rateSamples] }

// Rates returns the route's current rates; all zero for a route the tracker
// has fewer than two samples of, or does not know. A reading in which any
// of a route's counters went down marks a restart of them all from zero,
// and its counts are taken as the growth since the reading before.
func (t *RateTracker) Rates(name string) Rates {
	out := Rates{ByReason: make([]float64, t.reasons)}
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.routes[name]
	if h == nil || h.n < 2 {
		return out
	}
	secs := h.at(h.n - 1).at.Sub(h.at(0).at).Seconds()
	if secs <= 0 {
		return out
	}
	// The growth is summed sample to sample rather than taken as newest
	// minus oldest, so that a restart of the counters in the window is
	// counted rather than wrapping around uint64.
	var admitted uint64
	rejected := make([]uint64, t.reasons)
	var zero rateSample // counters that have just started
	for i := 1; i < h.n; i++ {
		prev, cur := h.at(i-1), h.at(i)
		if cur.resetSince(prev) {
			// The counters restarted from zero in between (a reload that
			// changes a route's settings gives it a new admission
			// controller): all of cur's counts are new, as in
			// Prometheus' rate().
			prev = &zero
		}
		admitted += cur.admitted - prev.admitted
		for j, n := range cur.rejected {
			rejected[j] += n - prev.counter(j)
		}
	}
	out.Admitted = float64(admitted) / secs
	for i, n := range rejected {
		r := float64(n) / secs
		out.ByReason[i] = r
		out.Rejected += r
	}
	return out
}

// resetSince reports whether any counter of s is below its value in prev,
// which a monotonic counter does only when it restarted from zero.
func (s *rateSample) resetSince(prev *rateSample) bool {
	if s.admitted < prev.admitted {
		return true
	}
	for i, n := range s.rejected {
		if n < prev.rejected[i] {
			return true
		}
	}
	return false
}

// counter returns rejection counter i, 0 for a sample that holds none.
func (s *rateSample) counter(i int) uint64 {
	if i < len(s.rejected) {
		return s.rejected[i]
	}
	return 0
}

// Run samples routes at once and then every RateInterval until ctx is done.
// Timers come from the injected clock, so a clock.Fake drives Run in tests.
// A panic in a round is recovered and logged and the loop goes on: losing
// the API's rates must never take the proxy down.
func (t *RateTracker) Run(ctx context.Context, routes iter.Seq2[string, Counts]) {
	for {
		t.sampleRecovering(routes)
		tm := t.clk.NewTimer(RateInterval)
		select {
		case <-ctx.Done():
			tm.Stop()
			return
		case <-tm.C():
		}
	}
}

func (t *RateTracker) sampleRecovering(routes iter.Seq2[string, Counts]) {
	defer func() {
		if r := recover(); r != nil {
			t.log.Error("monitor: rate sampling round panicked",
				"panic", r, "stack", string(debug.Stack()))
		}
	}()
	t.Sample(routes)
}
