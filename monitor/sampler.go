package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"sluice/clock"
)

// Sampler samples every route's backpressure on one goroutine and keeps, per
// route, the last window samples (see the package documentation for the
// Flink model). Run drives it on the clock; tests call Sample by hand.
//
// All methods are safe for concurrent use. The sampler's mutex is taken only
// by Sample, SetSources and Backpressure, never by the request path, and
// never while a Source is being called: a Source that is slow, panics or
// reads the API back cannot stall or deadlock API readers.
type Sampler struct {
	interval time.Duration
	window   int
	clk      clock.Clock
	log      *slog.Logger

	roundMu sync.Mutex // serializes Sample rounds, so each Source sees one caller at a time; guards round
	round   []probe    // one round's work, reused so that a round allocates nothing

	mu     sync.Mutex          // guards routes and every field of the histories in it
	routes map[string]*history // by route name
}

// history is one route's window: a ring of window bits, bit i set when
// sample i was backpressured, with a running count of the set bits so that
// the ratio is O(1) however long the window.
type history struct {
	src  Source
	bits []uint64 // the ring, (window+63)/64 words
	next int      // ring position the next sample goes to
	n    int      // samples present, at most window
	hits int      // set bits among the n present

	endMs           int64   // Unix ms of the newest sample; 0 before the first
	queue, bulkhead float64 // usage at the newest sample
	failing         int     // consecutive rounds in which src panicked
}

// probe is one route's part of one Sample round. The fields after src are
// written outside the sampler's mutex, each probe by the round's goroutine
// only, then folded into the history under it.
type probe struct {
	name string
	h    *history
	src  Source

	bp              bool
	queue, bulkhead float64
	panicked        bool // src panicked: no sample for this route this round
	panicVal        any
	stack           []byte

	logFailure   bool // first panic after a good sample: log it
	resumedAfter int  // good sample after this many panicking rounds: log it
}

// NewSampler returns a Sampler that samples every interval and keeps the
// last window samples per route. A nil clk means the wall clock; a nil log
// means slog.Default(). Both interval and window come from validated config
// (monitoring.sample_interval, monitoring.samples), so a non-positive one is
// a programming error and panics.
func NewSampler(interval time.Duration, window int, clk clock.Clock, log *slog.Logger) *Sampler {
	if interval <= 0 {
		panic(fmt.Sprintf("monitor: sample interval %v is not positive", interval))
	}
	if window < 1 {
		panic(fmt.Sprintf("monitor: sample window %d is less than 1", window))
	}
	if clk == nil {
		clk = clock.Real()
	}
	if log == nil {
		log = slog.Default()
	}
	return &Sampler{
		interval: interval,
		window:   window,
		clk:      clk,
		log:      log,
		routes:   map[string]*history{},
	}
}

// Interval returns the sampling period.
func (s *Sampler) Interval() time.Duration { return s.interval }

// Window returns the number of samples behind each ratio.
func (s *Sampler) Window() int { return s.window }

// SetSources replaces the tracked routes at once, at start and on every
// config reload. A name present before keeps its sample history (and from
// now on is sampled through its new Source), so a reload does not reset
// every level to ok; a new name starts empty; a name not in sources is
// dropped. The map is copied. A nil Source is a programming error and
// panics.
func (s *Sampler) SetSources(sources map[string]Source) {
	for name, src := range sources {
		if src == nil {
			panic(fmt.Sprintf("monitor: nil Source for route %q", name))
		}
	}
	next := make(map[string]*history, len(sources))
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, src := range sources {
		h := s.routes[name]
		if h == nil {
			h = &history{bits: make([]uint64, (s.window+63)/64)}
		}
		h.src = src
		next[name] = h
	}
	s.routes = next
}

// Sample takes one sample of every route at clk.Now(). Run calls it every
// interval; tests call it by hand.
//
// The Sources are called outside the mutex: the round copies the route
// list, probes each Source, then records all results in one short critical
// section. A route SetSources dropped meanwhile is recorded into its
// orphaned history, which is harmless. A Source that panics is recovered on
// its own, so one broken route costs only its own sample, not the round;
// the panic is logged once when it starts and once when it stops, not at
// every interval.
func (s *Sampler) Sample() {
	s.roundMu.Lock()
	defer s.roundMu.Unlock()
	s.round = s.round[:0] // a round that panicked may have left entries
	now := s.clk.Now()

	s.mu.Lock()
	for name, h := range s.routes {
		s.round = append(s.round, probe{name: name, h: h, src: h.src})
	}
	s.mu.Unlock()

	for i := range s.round {
		s.round[i].take(now)
	}

	endMs := now.UnixMilli()
	s.mu.Lock()
	for i := range s.round {
		s.round[i].recordLocked(endMs, s.window)
	}
	s.mu.Unlock()

	for i := range s.round {
		p := &s.round[i]
		switch {
		case p.logFailure:
			s.log.Error("monitor: backpressure source panicked; its samples are skipped until it stops",
				"route", p.name, "panic", p.panicVal, "stack", string(p.stack))
		case p.resumedAfter > 0:
			s.log.Info("monitor: backpressure source works again",
				"route", p.name, "skipped_samples", p.resumedAfter)
		}
	}
	clear(s.round) // drop the references to Sources and histories until the next round
	s.round = s.round[:0]
}

// take asks the Source, recovering a panic so that the rest of the round
// goes on.
func (p *probe) take(now time.Time) {
	defer func() {
		if r := recover(); r != nil {
			p.panicked, p.panicVal, p.stack = true, r, debug.Stack()
		}
	}()
	p.bp = p.src.Backpressured(now)
	p.queue = usage(p.src.QueueUsage())
	p.bulkhead = usage(p.src.BulkheadUsage())
}

// recordLocked folds the probe into its history. s.mu must be held.
func (p *probe) recordLocked(endMs int64, window int) {
	h := p.h
	if p.panicked {
		p.logFailure = h.failing == 0
		h.failing++
		return
	}
	p.resumedAfter, h.failing = h.failing, 0

	word, bit := h.next/64, uint64(1)<<(h.next%64)
	if h.n == window {
		if h.bits[word]&bit != 0 { // the oldest sample leaves the window
			h.hits--
		}
	} else {
		h.n++
	}
	if p.bp {
		h.bits[word] |= bit
		h.hits++
	} else {
		h.bits[word] &^= bit
	}
	if h.next++; h.next == window {
		h.next = 0
	}
	h.endMs, h.queue, h.bulkhead = endMs, p.queue, p.bulkhead
}

// Run calls Sample every interval until ctx is done. The interval runs from
// the end of one round to the start of the next, so a slow round stretches
// the period rather than bunching samples together. Timers come from the
// injected clock, so a clock.Fake drives Run in tests. A panic in a round is
// recovered and logged and the loop goes on: losing backpressure reporting
// must never take the proxy down.
func (s *Sampler) Run(ctx context.Context) {
	for {
		t := s.clk.NewTimer(s.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		if ctx.Err() != nil { // both were ready and select picked the timer
			return
		}
		s.sampleRecovering()
	}
}

func (s *Sampler) sampleRecovering() {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("monitor: backpressure sampling round panicked",
				"panic", r, "stack", string(debug.Stack()))
		}
	}()
	s.Sample()
}

// Backpressure returns the route's current figures, and false for a route
// the sampler does not track. The level is computed over the samples
// present so far, so a route has a meaningful level before its window
// fills; before the first sample it reads ok with ratio 0 and samples 0.
func (s *Sampler) Backpressure(name string) (Backpressure, bool) {
	s.mu.Lock()
	h, ok := s.routes[name]
	var bp Backpressure
	if ok {
		bp = Backpressure{
			Samples:       h.n,
			EndTimestamp:  h.endMs,
			QueueUsage:    h.queue,
			BulkheadUsage: h.bulkhead,
		}
		if h.n > 0 {
			bp.Ratio = float64(h.hits) / float64(h.n)
		}
	}
	s.mu.Unlock()
	if !ok {
		return Backpressure{}, false
	}
	bp.Level = LevelOf(bp.Ratio)
	bp.SampleIntervalMs = s.interval.Milliseconds()
	return bp, true
}
