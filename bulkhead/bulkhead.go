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
	// ErrFull: the bulkhead is full and so is the queue (always so with a
	// max depth of 0). It is returned at once, never after a wait: a client
	// is never made to wait only to be refused.
	ErrFull = errors.New("bulkhead: queue full")
	// ErrTimeout: the caller waited max_wait in the queue without a slot.
	ErrTimeout = errors.New("bulkhead: queue wait timed out")
	// ErrClosed: Close was called (shutdown). Queued waiters fail with it,
	// and so does every later Acquire that would have had to wait.
	ErrClosed = errors.New("bulkhead: closed")
)

// Bulkhead is a pool of maxConcurrent slots with a bounded FIFO queue of
// waiters in front of it. See the package documentation for the model.
type Bulkhead struct {
	maxConcurrent int
	maxDepth      int
	maxWait       time.Duration
	clk           clock.Clock

	mu       sync.Mutex // guards inflight, head, tail, depth, closed, free
	inflight int        // slots held by permits, including ones granted to waiters not yet awake
	// head and tail are the FIFO queue of waiters, linked through
	// waiter.prev/next. Invariant: the queue is non-empty only while
	// inflight == maxConcurrent, because a freed slot goes straight to the
	// head waiter instead of back to the pool.
	head, tail *waiter
	depth      int  // waiters in the queue
	closed     bool // Close was called
	// free is a stack of retired permit states, linked through
	// permitState.next. It is only touched inside critical sections the
	// fast path holds anyway, so recycling costs nothing, and unlike a
	// sync.Pool it never loses entries to the GC: at most maxConcurrent
	// states are ever allocated.
	free *permitState

	// Lock-free mirrors of inflight and depth, stored under mu after every
	// change, for gauges and the backpressure sampler.
	inflightMirror atomic.Int64
	depthMirror    atomic.Int64

	// waiters recycles waiter structs (as CockroachDB's admission queue
	// pools its waitingWork). A sync.Pool rather than the free list because
	// a granted waiter finishes outside the lock.
	waiters sync.Pool
}

// New returns a bulkhead with maxConcurrent slots (at least 1) and a queue
// of at most maxDepth waiters (0 = never queue: ErrFull as soon as every
// slot is held). A waiter gives up with ErrTimeout after maxWait; a maxWait
// of 0 sets no limit, leaving the wait bounded only by the caller's
// context. A nil clk means clock.Real().
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
	if clk == nil {
		clk = clock.Real()
	}
	b := &Bulkhead{maxConcurrent: maxConcurrent, maxDepth: maxDepth, maxWait: maxWait, clk: clk}
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

// Acquire takes a slot, waiting in the FIFO queue if none is free.
//
// It first tries as TryAcquire does, without arming a timer; a free slot is
// granted even if ctx is already done (as x/sync/semaphore does): ctx only
// bounds waiting. Otherwise it fails at once with ErrClosed after Close,
// ErrFull if the queue is full, or ctx.Err() if ctx is already done; else
// it queues and returns when a slot is handed to it, ctx is done
// (ctx.Err()), max_wait passes (ErrTimeout) or Close is called (ErrClosed).
//
// When several of those happen together, the outcome is settled under the
// lock when the waiter wakes: a done ctx always wins (a slot granted
// meanwhile is passed on to the next waiter), then a grant (even if
// max_wait has also passed), then Close, then the timeout.
func (b *Bulkhead) Acquire(ctx context.Context) (Permit, error) {
	b.mu.Lock()
	if b.availableLocked() {
		p := b.takeLocked()
		b.mu.Unlock()
		return p, nil
	}
	var err error
	switch {
	case b.closed:
		err = ErrClosed
	case b.depth >= b.maxDepth:
		err = ErrFull
	default:
		// Err, not Done: Done would allocate a channel on a fresh
		// cancelCtx. Err is an atomic load and never calls back into us.
		err = ctx.Err()
	}
	if err != nil {
		b.mu.Unlock()
		return Permit{}, err
	}
	w := b.waiters.Get().(*waiter)
	b.pushLocked(w)
	b.mu.Unlock()
	return b.wait(ctx, w)
}

// Close shuts the queue: every queued waiter fails with ErrClosed, and so
// will every later Acquire that would have to wait. Permits already held
// release normally, and TryAcquire and Acquire still take a slot that is
// free, so in-flight work drains. Close is idempotent.
func (b *Bulkhead) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for b.head != nil {
		w := b.head
		b.removeLocked(w)
		w.state = waitClosed
		w.ready <- struct{}{} // buffered 1, and a waiter is woken once
	}
}

// Inflight returns the number of slots held now (lock-free).
func (b *Bulkhead) Inflight() int { return int(b.inflightMirror.Load()) }

// Depth returns the number of waiters queued now (lock-free).
func (b *Bulkhead) Depth() int { return int(b.depthMirror.Load()) }

// MaxConcurrent returns the number of slots.
func (b *Bulkhead) MaxConcurrent() int { return b.maxConcurrent }

// MaxDepth returns the most waiters the queue holds.
func (b *Bulkhead) MaxDepth() int { return b.maxDepth }

// MaxWait returns the longest a waiter waits (0 = no limit).
func (b *Bulkhead) MaxWait() time.Duration { return b.maxWait }

// availableLocked reports whether a caller may take a slot without queuing:
// one is free and no waiter is ahead of it.
func (b *Bulkhead) availableLocked() bool {
	return b.inflight < b.maxConcurrent && b.head == nil
}

// takeLocked occupies a free slot and returns its permit.
func (b *Bulkhead) takeLocked() Permit {
	b.inflight++
	b.inflightMirror.Store(int64(b.inflight))
	return b.issueLocked()
}

// releaseLocked gives back the slot of a retired permit state s: straight
// to the head waiter if there is one (inflight unchanged, so nobody can
// take it in between), else back to the pool.
func (b *Bulkhead) releaseLocked(s *permitState) {
	s.next = b.free
	b.free = s
	if w := b.head; w != nil {
		b.removeLocked(w)
		w.permit = b.issueLocked()
		w.state = waitGranted
		w.ready <- struct{}{} // buffered 1, and a waiter is woken once
		return
	}
	b.inflight--
	b.inflightMirror.Store(int64(b.inflight))
}
