package bulkhead

import (
	"context"
	"time"
)

// waitState is where a queued Acquire stands. Only a holder of b.mu moves
// it, and only away from waitQueued: once a grant or Close has decided for
// a waiter, nothing decides again.
type waitState uint8

const (
	waitQueued  waitState = iota // in the queue, undecided
	waitGranted                  // a Release handed it a slot: w.permit holds it
	waitClosed                   // Close failed it
)

// waiter is one queued Acquire, an intrusive node of the FIFO queue.
type waiter struct {
	prev, next *waiter   // queue links, guarded by b.mu
	state      waitState // guarded by b.mu
	permit     Permit    // the slot handed over, set with waitGranted
	// ready carries one token when a grant or Close moves state away from
	// waitQueued. The send happens under b.mu after the state is written,
	// so whoever receives the token may read state and permit without the
	// lock; the buffer of 1 means the sender never blocks under the lock.
	ready chan struct{}
}

// pushLocked appends w to the tail of the queue.
func (b *Bulkhead) pushLocked(w *waiter) {
	w.state = waitQueued
	w.prev, w.next = b.tail, nil
	if b.tail != nil {
		b.tail.next = w
	} else {
		b.head = w
	}
	b.tail = w
	b.depth++
	b.depthMirror.Store(int64(b.depth))
}

// removeLocked unlinks w, which must be queued, wherever it stands.
func (b *Bulkhead) removeLocked(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		b.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		b.tail = w.prev
	}
	w.prev, w.next = nil, nil
	b.depth--
	b.depthMirror.Store(int64(b.depth))
}

// wait blocks the queued waiter w until it is granted a slot, failed by
// Close, its ctx is done or max_wait passes, then settles the outcome. The
// timer is armed only here, once queuing is certain.
func (b *Bulkhead) wait(ctx context.Context, w *waiter) (Permit, error) {
	var expired <-chan time.Time
	var stop func() bool
	if b.maxWait > 0 {
		t := b.clk.NewTimer(b.maxWait)
		expired, stop = t.C(), t.Stop
	}
	woken := false
	select {
	case <-w.ready:
		woken = true
	case <-ctx.Done():
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
// gets the lock, a Release may have handed it a slot (state waitGranted,
// inflight counting the slot as ours). Dropping that slot would leak it
// forever; taking it after the caller gave up would hold it for nobody.
// So:
//
//   - still waitQueued: nobody decided for us. We unlink ourselves now, so
//     depth drops at once and no later Release can pick us, and fail with
//     ctx.Err(), or ErrTimeout if it was the timer.
//   - waitGranted and ctx done: the caller is gone. We pass the slot on
//     exactly as Release would (to the next waiter, or back to the pool)
//     and return ctx.Err(). This holds even if the grant's token is what
//     woke us: a done ctx wins, so a canceled caller never holds a slot it
//     could see is useless.
//   - waitGranted, ctx not done: the slot is ours and we keep it, even if
//     max_wait has also passed: refusing it would only waste capacity
//     someone else is queued for.
//   - waitClosed: ErrClosed (ctx.Err() if ctx is done).
//
// Since grant, Close and this function all move state only under b.mu and
// only away from waitQueued, a slot is neither lost nor granted twice.
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
		}
	case state == waitGranted && ctxErr != nil:
		s := w.permit.s
		s.gen.Add(1) // retire the never-returned permit, as Release would
		b.releaseLocked(s)
		err = ctxErr
	case state == waitGranted:
		p = w.permit
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
	b.waiters.Put(w)
	return p, err
}
