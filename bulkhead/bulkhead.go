package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"sluice/clock"
)

// The three ways an Acquire fails besides its context. admission maps them
// to the queue_full, queue_timeout and shutting_down reject reasons.
var (
	// ErrFull: the bulkhead is full and the queue is too full for the
	// request's class (Options.ShedAt; with no shedding, the queue is full,
	// which it always is with a max depth of 0). It is returned at once,
	// never after a wait: a client is never made to wait only to be refused.
	ErrFull = errors.New("bulkhead: queue full")
	// ErrTimeout: the caller waited its bound in the queue without a slot
	// (max_wait, or the CoDel target under overload), or CoDel refused it
	// while overloaded: because its wait had exceeded the target, or, as
	// it arrived, because the queue ahead of it would not drain within the
	// target.
	ErrTimeout = errors.New("bulkhead: queue wait timed out")
	// ErrClosed: Close was called (shutdown). Queued waiters fail with it,
	// and so does every later Acquire that would have had to wait.
	ErrClosed = errors.New("bulkhead: closed")
)

// Options configures a Bulkhead. Each field's zero value is documented
// where it is declared; NewWithOptions panics on values config validation
// rejects at load.
type Options struct {
	// MaxConcurrent is the initial limit on slots held at once, >= 1.
	// SetLimit changes it later.
	MaxConcurrent int
	// MaxDepth bounds the queue, all classes together, >= 0. 0 = never
	// queue: ErrFull as soon as every slot is held.
	MaxDepth int
	// MaxWait is the longest a waiter waits in the queue before
	// ErrTimeout. 0 = no limit: the wait is bounded only by the caller's
	// context (and, under CoDel overload, by CoDelTarget).
	MaxWait time.Duration
	// Clock is the time source of timers and sojourn times. nil = clock.Real().
	Clock clock.Clock
	// ShedAt[c] is the queue usage (depth / MaxDepth) at or above which a
	// request of class c that would have to wait is refused at once with
	// ErrFull: it is refused when depth >= ShedAt[c]·MaxDepth, i.e. when
	// depth >= ceil(ShedAt[c]·MaxDepth) (to within 1e-9, so 0.8 of 10 is
	// 8). With MaxDepth 10 and ShedAt 0.5, 5 waiters may be queued and the
	// sixth is refused. Each value is in [0, 1]; a zero entry means 1.0:
	// refused only when the queue is full, so the zero value is no
	// shedding. The config's defaults (priority.shed_at), applied by the
	// caller: critical 1.0, default 0.8, sheddable 0.5.
	ShedAt [numClasses]float64
	// Discipline is the queue discipline. The zero value is FIFO.
	Discipline Discipline
	// CoDelTarget is the sojourn CoDel tolerates. 0 = DefaultCoDelTarget
	// (5ms). Ignored under FIFO.
	CoDelTarget time.Duration
	// CoDelInterval is how long sojourns must stay above CoDelTarget
	// before the queue counts as overloaded, and how long it must then go
	// without dropping or timing out a waiter before it stops.
	// 0 = DefaultCoDelInterval (100ms). Ignored under FIFO.
	CoDelInterval time.Duration
}

// Bulkhead is a pool of slots with a bounded queue of waiters in front of
// it, one list per class. See the package documentation for the model.
type Bulkhead struct {
	maxDepth int
	maxWait  time.Duration
	clk      clock.Clock
	// shedDepth[c] is the depth at or above which class c is refused
	// rather than queued (shedDepth; at most maxDepth, so it is also the
	// full-queue check).
	shedDepth [numClasses]int
	codel     bool          // Discipline is CoDel
	target    time.Duration // CoDel target, defaulted
	interval  time.Duration // CoDel interval, defaulted

	// mu guards limit, inflight, queues, depth, closed, free, firstAbove,
	// overloaded, lastDrop, and the links and state of every queued waiter.
	mu       sync.Mutex
	limit    int // slots that may be held; SetLimit changes it
	inflight int // slots held by permits, including ones granted to waiters not yet awake
	// queues holds the waiters of each class, oldest at the head, linked
	// through waiter.prev/next. Invariant: the queue is non-empty only
	// while inflight >= limit, because a freed slot goes straight to a
	// waiter instead of back to the pool, and a waiter is granted at once
	// whenever the limit is raised.
	queues [numClasses]waitList
	depth  int  // waiters in all queues
	closed bool // Close was called
	// free is a stack of retired permit states, linked through
	// permitState.next. It is only touched inside critical sections the
	// fast path holds anyway, so recycling costs nothing, and unlike a
	// sync.Pool it never loses entries to the GC: at most as many states
	// as the highest limit are ever allocated.
	free *permitState
	// The CoDel controller (codel.go). firstAbove is when the current
	// episode of sojourns above target began (zero: none; always zero
	// while overloaded); overloaded says the queue is in LIFO mode;
	// lastDrop is, while overloaded, when a waiter was last dropped or
	// timed out (or the overload began).
	firstAbove time.Time
	overloaded bool
	lastDrop   time.Time
	// The drain estimate (drainLocked). drainFrom opens the window being
	// measured (zero: none), drained counts the releases in it, and
	// withinTarget is how many slots the releases free within target, as
	// last measured (0: not yet).
	drainFrom    time.Time
	drained      int
	withinTarget int

	// Lock-free mirrors of limit, inflight, depth and each class's depth,
	// stored under mu after every change, for gauges and the backpressure
	// sampler.
	limitMirror      atomic.Int64
	inflightMirror   atomic.Int64
	depthMirror      atomic.Int64
	classDepthMirror [numClasses]atomic.Int64

	// waiters recycles waiter structs (as CockroachDB's admission queue
	// pools its waitingWork). A sync.Pool rather than the free list because
	// a granted waiter finishes outside the lock.
	waiters sync.Pool

	// testingOnGrant, if set (tests only, before first use), is called
	// under mu after every grant with the new inflight and the limit, so
	// that tests can check the limit was respected at the moment of each
	// grant, which no outside observer can see.
	testingOnGrant func(inflight, limit int)
	// testingOnRelease, if set (tests only, before first use), is called
	// under mu at the end of every release of a slot (Release, or a granted
	// waiter passing its slot on) with the depth the release found and
	// whether it handed the slot to a waiter, so that tests can check that
	// a freed slot never goes idle while anyone waits.
	testingOnRelease func(queued int, granted bool)
	// testingWithinTarget, if > 0 (tests only, before first use), pins the
	// drain estimate withinTarget at that value, for scenarios about the
	// other rules of an overloaded queue.
	testingWithinTarget int
}

// New returns a bulkhead with maxConcurrent slots (at least 1) and a FIFO
// queue of at most maxDepth waiters (0 = never queue: ErrFull as soon as
// every slot is held), without shedding by class. A waiter gives up with
// ErrTimeout after maxWait; a maxWait of 0 sets no limit, leaving the wait
// bounded only by the caller's context. A nil clk means clock.Real().
//
// New panics on maxConcurrent < 1, maxDepth < 0 or maxWait < 0: config
// validation rejects those at load, so reaching here with one is a bug.
func New(maxConcurrent, maxDepth int, maxWait time.Duration, clk clock.Clock) *Bulkhead {
	switch {
	case maxConcurrent < 1:
		panic(fmt.Sprintf("bulkhead: maxConcurrent must be >= 1, got %d", maxConcurrent))
	case maxDepth < 0:
		panic(fmt.Sprintf("bulkhead: maxDepth must be >= 0, got %d", maxDepth))
	case maxWait < 0:
		panic(fmt.Sprintf("bulkhead: maxWait must be >= 0, got %v", maxWait))
	}
	return NewWithOptions(Options{MaxConcurrent: maxConcurrent, MaxDepth: maxDepth, MaxWait: maxWait, Clock: clk})
}

// NewWithOptions returns a bulkhead configured by o. It panics on a value
// outside the ranges documented on Options: config validation rejects
// those at load, so reaching here with one is a bug.
func NewWithOptions(o Options) *Bulkhead {
	switch {
	case o.MaxConcurrent < 1:
		panic(fmt.Sprintf("bulkhead: Options.MaxConcurrent must be >= 1, got %d", o.MaxConcurrent))
	case o.MaxDepth < 0:
		panic(fmt.Sprintf("bulkhead: Options.MaxDepth must be >= 0, got %d", o.MaxDepth))
	case o.MaxWait < 0:
		panic(fmt.Sprintf("bulkhead: Options.MaxWait must be >= 0, got %v", o.MaxWait))
	case o.Discipline > CoDel:
		panic(fmt.Sprintf("bulkhead: Options.Discipline: unknown %v", o.Discipline))
	case o.CoDelTarget < 0:
		panic(fmt.Sprintf("bulkhead: Options.CoDelTarget must be >= 0, got %v", o.CoDelTarget))
	case o.CoDelInterval < 0:
		panic(fmt.Sprintf("bulkhead: Options.CoDelInterval must be >= 0, got %v", o.CoDelInterval))
	}
	b := &Bulkhead{maxDepth: o.MaxDepth, maxWait: o.MaxWait, clk: o.Clock, limit: o.MaxConcurrent}
	for c, at := range o.ShedAt {
		if !(at >= 0 && at <= 1) { // also catches NaN
			panic(fmt.Sprintf("bulkhead: Options.ShedAt[%v] must be in [0, 1], got %v", Class(c), at))
		}
		b.shedDepth[c] = shedDepth(at, o.MaxDepth)
	}
	if b.clk == nil {
		b.clk = clock.Real()
	}
	if o.Discipline == CoDel {
		b.codel = true
		b.target, b.interval = o.CoDelTarget, o.CoDelInterval
		if b.target == 0 {
			b.target = DefaultCoDelTarget
		}
		if b.interval == 0 {
			b.interval = DefaultCoDelInterval
		}
	}
	b.limitMirror.Store(int64(b.limit))
	b.waiters.New = func() any { return &waiter{ready: make(chan struct{}, 1)} }
	return b
}

// TryAcquire takes a slot if one is free and nobody is queued. It never
// blocks and never queues. It refuses while waiters are queued even if it
// could see a slot, so that it cannot barge past them (with the queue
// invariant above, that cannot happen anyway; the check states the rule).
// It keeps working after Close.
func (b *Bulkhead) TryAcquire() (Permit, bool) {
	b.mu.Lock()
	if !b.availableLocked() {
		b.mu.Unlock()
		return Permit{}, false
	}
	p := b.takeLocked()
	b.mu.Unlock()
	return p, true
}

// TryAcquireClass is TryAcquire for a request of class c. The class
// changes nothing here, since a request that would wait is refused
// whatever its class, and no class barges past a queued waiter of any
// class; it is taken for symmetry with AcquireClass and checked.
func (b *Bulkhead) TryAcquireClass(c Class) (Permit, bool) {
	checkClass(c)
	return b.TryAcquire()
}

// Acquire is AcquireClass(ctx, ClassDefault).
func (b *Bulkhead) Acquire(ctx context.Context) (Permit, error) {
	return b.AcquireClass(ctx, ClassDefault)
}

// AcquireClass takes a slot for a request of class c, waiting in c's
// queue if none is free.
//
// It first tries as TryAcquire does, without arming a timer; a free slot is
// granted even if ctx is already done (as x/sync/semaphore does): ctx only
// bounds waiting. Otherwise it fails at once with ErrClosed after Close,
// ErrFull if the queue is too full for c (Options.ShedAt), or ctx.Err() if
// ctx is already done; else it queues and returns when a slot is handed to
// it, ctx is done (ctx.Err()), its wait bound passes or CoDel refuses it
// (ErrTimeout), or Close is called (ErrClosed).
//
// When several of those happen together, the outcome is settled under the
// lock when the waiter wakes: a done ctx always wins (a slot granted
// meanwhile is passed on to the next waiter, and a hand-off that finds ctx
// done passes the waiter over), then a grant (even if the wait bound has
// also passed), then Close or a CoDel refusal, then the timeout.
func (b *Bulkhead) AcquireClass(ctx context.Context, c Class) (Permit, error) {
	checkClass(c)
	b.mu.Lock()
	if b.availableLocked() {
		p := b.takeLocked()
		b.mu.Unlock()
		return p, nil
	}
	if b.closed {
		b.mu.Unlock()
		return Permit{}, ErrClosed
	}
	var now time.Time
	if b.codel {
		// Read under mu, so enqueue and grant times are ordered as the
		// critical sections are and no sojourn comes out negative.
		now = b.clk.Now()
		b.arriveLocked(now) // before the mode sets the wait bound and the depth decides shedding
	}
	var err error
	if b.depth >= b.shedDepth[c] {
		err = ErrFull
	} else if b.predictedLateLocked(c) {
		err = ErrTimeout
		b.lastDrop = now // a refusal: the overload goes on
	} else {
		// Err, not Done: Done would allocate a channel on a fresh
		// cancelCtx. Err is an atomic load and never calls back into us.
		err = ctx.Err()
	}
	if err != nil {
		b.mu.Unlock()
		return Permit{}, err
	}
	w := b.waiters.Get().(*waiter)
	w.class, w.enqueued = c, now
	w.maxWait = b.queueWaitLocked()
	b.pushLocked(w)
	b.mu.Unlock()
	return b.wait(ctx, w)
}

// SetLimit sets the number of slots that may be held at once (n >= 1;
// SetLimit panics otherwise). Raising it grants queued waiters at once, in
// the order a release would (highest class first, then by the
// discipline), up to the new limit. Lowering it never revokes a held
// permit: releases return slots to nobody until fewer than n are held, so
// in-flight work drains down to the new limit. The adaptive-concurrency
// controller calls it; it is safe at any time, also after Close.
func (b *Bulkhead) SetLimit(n int) {
	if n < 1 {
		panic(fmt.Sprintf("bulkhead: SetLimit(%d): the limit must be >= 1", n))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.limit = n
	b.limitMirror.Store(int64(n))
	for b.inflight < b.limit {
		w := b.nextLocked()
		if w == nil {
			break
		}
		b.inflight++
		b.inflightMirror.Store(int64(b.inflight))
		b.grantLocked(w)
	}
}

// Close shuts the queue: every queued waiter fails with ErrClosed, and so
// will every later Acquire that would have to wait. Permits already held
// release normally, and TryAcquire and Acquire still take a slot that is
// free, so in-flight work drains. Close is idempotent.
func (b *Bulkhead) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for c := range b.queues {
		for b.queues[c].head != nil {
			w := b.queues[c].head
			b.removeLocked(w)
			b.decideLocked(w, waitClosed)
		}
	}
	// Nobody will queue again: nothing is left to control.
	b.overloaded, b.firstAbove = false, time.Time{}
}

// Inflight returns the number of slots held now (lock-free). It exceeds
// Limit only after SetLimit lowered the limit, until held permits drain.
func (b *Bulkhead) Inflight() int { return int(b.inflightMirror.Load()) }

// Depth returns the number of waiters queued now, all classes (lock-free).
func (b *Bulkhead) Depth() int { return int(b.depthMirror.Load()) }

// DepthOf returns the number of waiters of class c queued now (lock-free).
func (b *Bulkhead) DepthOf(c Class) int {
	checkClass(c)
	return int(b.classDepthMirror[c].Load())
}

// Limit returns the current limit on slots held at once (lock-free).
func (b *Bulkhead) Limit() int { return int(b.limitMirror.Load()) }

// MaxConcurrent returns the current limit, as Limit does: the initial
// max_concurrent until SetLimit changes it.
func (b *Bulkhead) MaxConcurrent() int { return b.Limit() }

// MaxDepth returns the most waiters the queue holds.
func (b *Bulkhead) MaxDepth() int { return b.maxDepth }

// MaxWait returns the longest a waiter waits (0 = no limit) outside CoDel
// overload.
func (b *Bulkhead) MaxWait() time.Duration { return b.maxWait }

// availableLocked reports whether a caller may take a slot without queuing:
// one is free and no waiter of any class is ahead of it.
func (b *Bulkhead) availableLocked() bool {
	return b.inflight < b.limit && b.depth == 0
}

// takeLocked occupies a free slot and returns its permit.
func (b *Bulkhead) takeLocked() Permit {
	b.inflight++
	b.inflightMirror.Store(int64(b.inflight))
	if b.testingOnGrant != nil {
		b.testingOnGrant(b.inflight, b.limit)
	}
	return b.issueLocked()
}

// grantLocked hands an unlinked waiter the slot already counted for it in
// inflight.
func (b *Bulkhead) grantLocked(w *waiter) {
	w.permit = b.issueLocked()
	b.decideLocked(w, waitGranted)
	if b.testingOnGrant != nil {
		b.testingOnGrant(b.inflight, b.limit)
	}
}

// releaseLocked gives back the slot of a retired permit state s: straight
// to the next waiter if there is one and the limit allows (inflight
// unchanged, so nobody can take it in between), else back to the pool.
// After SetLimit lowered the limit below inflight, the slot is retired
// instead, however many are queued: that is how in-flight work drains.
func (b *Bulkhead) releaseLocked(s *permitState) {
	s.next = b.free
	b.free = s
	queued := b.depth
	var w *waiter
	if b.inflight <= b.limit {
		w = b.nextLocked()
	}
	b.drained++
	if w != nil {
		b.grantLocked(w)
	} else {
		b.inflight--
		b.inflightMirror.Store(int64(b.inflight))
	}
	if b.testingOnRelease != nil {
		b.testingOnRelease(queued, w != nil)
	}
}
