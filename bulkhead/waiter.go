package bulkhead

import (
	"context"
	"sync/atomic"
	"time"
)

// waitState is where a queued Acquire stands. Only a holder of b.mu moves
// it, and only away from waitQueued: once a grant, Close, a CoDel drop or
// a pass-over has decided for a waiter, nothing decides again.
type waitState uint8

const (
	waitQueued  waitState = iota // in the queue, undecided
	waitGranted                  // a Release or SetLimit handed it a slot: w.permit holds it
	waitClosed                   // Close failed it
	waitDropped                  // CoDel refused it: its sojourn exceeded the target while overloaded
	// waitAbandoned: a slot (or a CoDel refusal) came to it when its ctx
	// was already done. It was unlinked without a slot, and the slot went
	// on at once to the next waiter instead of waiting for this one's
	// goroutine to wake up and pass it on.
	waitAbandoned
)

// waiter is one queued Acquire, an intrusive node of its class's list.
type waiter struct {
	prev, next *waiter   // list links, guarded by b.mu
	state      waitState // guarded by b.mu
	class      Class     // the list it is queued in; set before it is pushed
	// done holds the caller's ctx.Done() (a <-chan struct{}), published
	// by the waiter's own goroutine as it starts to wait, so that a
	// hand-off can see that the caller has left (gone). It is the channel
	// and not ctx itself that other goroutines look at: a receive is safe
	// from any goroutine and runs none of the caller's code under b.mu,
	// whereas a ctx need not be safe to use from another goroutine (the
	// proxy's per-request routeCtx is not). Until it is published the
	// waiter counts as live, which only delays a pass-over to settle.
	done atomic.Value
	// enqueued is when it queued (CoDel only: the start of its sojourn),
	// guarded by b.mu.
	enqueued time.Time
	// maxWait bounds its wait (0 = none): max_wait, or the CoDel target
	// under overload. Set under b.mu before it is pushed, read by its own
	// goroutine.
	maxWait time.Duration
	permit  Permit // the slot handed over, set with waitGranted
	// ready carries one token when a decider moves state away from
	// waitQueued. The send happens under b.mu after the state is
	// written, so whoever receives the token may read state and permit
	// without the lock; the buffer of 1 means the sender never blocks
	// under the lock.
	ready chan struct{}
}

// waitList is the FIFO list of one class's waiters, oldest at the head.
// CoDel's LIFO serves from the tail of the same list, so one list serves
// both orders and enqueue order is always head to tail.
type waitList struct {
	head, tail *waiter
	n          int // waiters in the list
}

// pushLocked appends w to the tail of its class's list.
func (b *Bulkhead) pushLocked(w *waiter) {
	q := &b.queues[w.class]
	w.state = waitQueued
	w.prev, w.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.n++
	b.classDepthMirror[w.class].Store(int64(q.n))
	b.depth++
	b.depthMirror.Store(int64(b.depth))
}

// removeLocked unlinks w, which must be queued, wherever it stands.
func (b *Bulkhead) removeLocked(w *waiter) {
	q := &b.queues[w.class]
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next = nil, nil
	q.n--
	b.classDepthMirror[w.class].Store(int64(q.n))
	b.depth--
	b.depthMirror.Store(int64(b.depth))
}

// publishDone makes done (its caller's ctx.Done(), nil for a ctx that is
// never done) visible to hand-offs.
func (w *waiter) publishDone(done <-chan struct{}) {
	w.done.Store(done) // typed, so a nil channel is a valid value
}

// gone reports whether w's caller is known to have left: the ctx.Done()
// it published is closed. Safe from any goroutine; a non-blocking receive
// that allocates nothing.
func (w *waiter) gone() bool {
	done, _ := w.done.Load().(<-chan struct{})
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// decideLocked moves an unlinked waiter from waitQueued to state and
// wakes it. The send cannot block: the buffer holds 1 and a waiter is
// decided once.
func (b *Bulkhead) decideLocked(w *waiter, state waitState) {
	w.state = state
	w.ready <- struct{}{}
}

// wait blocks the queued waiter w until it is granted a slot, failed by
// Close or a CoDel drop, passed over, its ctx is done or its wait bound
// (max_wait, or ctx's deadline if sooner) passes, then settles the outcome. The timer is armed only here, once
// queuing is certain.
func (b *Bulkhead) wait(ctx context.Context, w *waiter) (Permit, error) {
	var expired <-chan time.Time
	var stop func() bool
	bound := w.maxWait
	if dl, ok := ctx.Deadline(); ok {
		// The timer also ends the wait at ctx's deadline, read on the
		// bulkhead's clock, so a ctx whose Done does not follow its
		// deadline (the proxy's queue-wait context, which spares itself a
		// timer of its own) is bounded too.
		if left := max(dl.Sub(b.clk.Now()), time.Nanosecond); bound <= 0 || left < bound {
			bound = left
		}
	}
	if bound > 0 {
		t := b.clk.NewTimer(bound)
		expired, stop = t.C(), t.Stop
	}
	done := ctx.Done()
	w.publishDone(done)
	woken := false
	select {
	case <-w.ready:
		woken = true
	case <-done:
	case <-expired:
	}
	if stop != nil {
		stop()
	}
	return b.settle(ctx, w, woken)
}

// settle decides how w's wait ends, whichever event woke it, and recycles
// w. woken says whether the caller already took w's ready token.
//
// The grant-versus-cancel race is settled here, under the lock. Between
// the moment ctx is done or the timer fires and the moment the waiter
// gets the lock, a Release (or SetLimit) may have handed it a slot (state
// waitGranted, inflight counting the slot as ours). Dropping that slot
// would leak it forever; taking it after the caller gave up would hold it
// for nobody. So:
//
//   - still waitQueued: nobody decided for us. We unlink ourselves now, so
//     depth drops at once and no later grant can pick us, and fail with
//     ctx.Err(), or ErrTimeout if it was the timer.
//   - waitGranted and ctx done: the caller is gone. We pass the slot on
//     exactly as Release would (to the next waiter by class and
//     discipline, or back to the pool, or retired if the limit was
//     lowered) and return ctx.Err(). This holds even if the grant's token
//     is what woke us: a done ctx wins, so a canceled caller never holds a
//     slot it could see is useless.
//   - waitGranted, ctx not done: the slot is ours and we keep it, even if
//     the wait bound has also passed: refusing it would only waste
//     capacity someone else is queued for.
//   - waitClosed: ErrClosed (ctx.Err() if ctx is done).
//   - waitDropped: ErrTimeout (ctx.Err() if ctx is done). A drop never
//     carries a slot: the dropper unlinked us and went on to the next
//     waiter with the slot in hand.
//   - waitAbandoned: ctx.Err(), read again here: the lock holder that
//     passed us over saw ctx.Done() closed, which our snapshot, taken
//     before the lock, may predate (the timer woke us, then ctx was done),
//     and a ctx whose Done is closed has a non-nil Err. It never carries a
//     slot either.
//
// Since grant, Close, drop, pass-over and this function all move state
// only under b.mu and only away from waitQueued, and only the lock holder
// that unlinks a waiter decides for it, a slot is neither lost nor granted
// twice, whichever list and end it was taken from.
func (b *Bulkhead) settle(ctx context.Context, w *waiter, woken bool) (Permit, error) {
	ctxErr := ctx.Err() // one snapshot: the outcome is decided on it, not on a later look
	var p Permit
	var err error
	b.mu.Lock()
	state := w.state
	switch {
	case state == waitQueued:
		b.removeLocked(w)
		err = ctxErr
		if err == nil {
			err = ErrTimeout
			b.timedOutLocked()
		}
	case state == waitGranted && ctxErr != nil:
		s := w.permit.s
		s.gen.Add(1) // retire the never-returned permit, as Release would
		b.releaseLocked(s)
		err = ctxErr
	case state == waitGranted:
		p = w.permit
	case state == waitDropped:
		err = ctxErr
		if err == nil {
			err = ErrTimeout
		}
	case state == waitAbandoned:
		err = ctx.Err() // non-nil: a done ctx stays done
	default: // waitClosed
		err = ctxErr
		if err == nil {
			err = ErrClosed
		}
	}
	b.mu.Unlock()
	if state != waitQueued && !woken {
		// The decider sent the token under the lock before we read state,
		// so this never blocks; it empties ready for the next user of w.
		<-w.ready
	}
	w.permit = Permit{}
	w.publishDone(nil) // the next user of w publishes its own
	b.waiters.Put(w)
	return p, err
}
