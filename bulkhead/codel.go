package bulkhead

import (
	"fmt"
	"time"
)

// Discipline is the order in which queued waiters of one class are served
// and how long they may wait. Classes are always served highest first.
type Discipline uint8

const (
	// FIFO serves the oldest waiter first; each waits at most MaxWait.
	FIFO Discipline = iota
	// CoDel is adaptive LIFO with CoDel-style sojourn control (Meta's
	// "Fail at Scale"; Nichols and Jacobson's CoDel): FIFO until the
	// sojourn of the oldest waiter has exceeded CoDelTarget at every grant
	// for CoDelInterval; then, until a CoDelInterval passes in which no
	// waiter was dropped or timed out, newest first (a stale waiter too if
	// nobody fresher waits: a freed slot never idles while anyone is
	// queued), waiters older than CoDelTarget refused at every grant,
	// arrival and timeout, new waits bounded by CoDelTarget, and a request
	// that the measured drain would not serve within CoDelTarget refused
	// as it arrives. The state machine is in the package documentation.
	CoDel
)

// String returns the name used in config: "fifo" or "codel".
func (d Discipline) String() string {
	switch d {
	case FIFO:
		return "fifo"
	case CoDel:
		return "codel"
	}
	return fmt.Sprintf("Discipline(%d)", uint8(d))
}

// The CoDel defaults, Meta's and the CoDel paper's: a standing queue worth
// 5ms is tolerated, and it must stand for 100ms (about a worst-case round
// trip) before it counts as overload rather than a burst.
const (
	DefaultCoDelTarget   = 5 * time.Millisecond
	DefaultCoDelInterval = 100 * time.Millisecond
)

// nextLocked unlinks and returns the waiter a free slot goes to, or nil if
// nobody it could go to is queued. The caller grants to it.
//
// A waiter whose ctx is already done (gone) is passed over
// (waitAbandoned): its caller has left, and granting to it would hold the
// slot idle until its goroutine woke, saw the done ctx and passed the slot
// on, which on a CPU-saturated machine is long after the slot freed. The
// waiter gets what settle would have given it anyway (ctx.Err()); the slot
// goes to the next waiter now rather than then. It applies to both
// disciplines.
//
// Under CoDel the controller (controlLocked) runs once per hand-off, at
// one clock read. Then, not overloaded, the pick is FIFO's; overloaded, it
// is lifoNextLocked's, and the stale waiters left are refused.
func (b *Bulkhead) nextLocked() *waiter {
	var now time.Time
	if b.codel {
		if b.depth == 0 && !b.overloaded && b.firstAbove.IsZero() {
			return nil // nothing queued and nothing to reset: no clock read
		}
		now = b.clk.Now()
		b.controlLocked(now)
	}
	for b.depth > 0 {
		var w *waiter
		if b.overloaded {
			w = b.lifoNextLocked(now)
		} else {
			w = b.fifoNextLocked()
		}
		b.removeLocked(w)
		if w.gone() {
			b.decideLocked(w, waitAbandoned)
			continue
		}
		if b.overloaded {
			// After the pick, not before: a stale waiter may be the one
			// served, and the pick must see every candidate.
			b.refuseStaleLocked(now)
		}
		return w
	}
	if b.codel {
		// A slot found nobody to serve: the queue is not standing. CoDel
		// resets first_above_time when it dequeues from an empty queue.
		b.firstAbove = time.Time{}
	}
	return nil
}

// fifoNextLocked returns the waiter FIFO serves next: the head of the
// highest class queued. The queue must be non-empty.
func (b *Bulkhead) fifoNextLocked() *waiter {
	for c := range b.queues {
		if w := b.queues[c].head; w != nil {
			return w
		}
	}
	panic("bulkhead: depth > 0 with every class list empty")
}

// lifoNextLocked returns the waiter an overloaded CoDel queue serves at
// now (adaptive LIFO): the newest waiter of the highest class that has one
// whose sojourn is at most target; if every waiter is stale, the newest of
// the highest class queued, stale as it is. A slot is never left idle
// while anyone waits: on a CPU-saturated machine it is timers and wake-ups
// that run late, so a queue of stale waiters is likely exactly then, and
// a waiter served late still does useful work where an idle slot does
// none. Lists are in enqueue order, so each class's tail is its freshest
// waiter and this costs one look per class. The queue must be non-empty.
func (b *Bulkhead) lifoNextLocked(now time.Time) *waiter {
	var stale *waiter
	for c := range b.queues {
		w := b.queues[c].tail
		if w == nil {
			continue
		}
		if now.Sub(w.enqueued) <= b.target {
			return w
		}
		if stale == nil {
			stale = w
		}
	}
	if stale == nil {
		panic("bulkhead: depth > 0 with every class list empty")
	}
	return stale
}

// refuseStaleLocked refuses, at now, every queued waiter whose sojourn
// exceeds target: it fails with ErrTimeout (CoDel's drop), a refusal, so
// the overload goes on. A stale waiter whose ctx is done is passed over
// instead: its caller left, which is a cancel, not a refusal. Lists are in
// enqueue order, so in each class the stale waiters are a prefix from the
// head, and this costs O(1) per waiter refused plus one look per class.
// It runs only while overloaded, at every hand-off, enqueue and timeout.
func (b *Bulkhead) refuseStaleLocked(now time.Time) {
	for c := range b.queues {
		q := &b.queues[c]
		for q.head != nil && now.Sub(q.head.enqueued) > b.target {
			w := q.head
			b.removeLocked(w)
			if w.gone() {
				b.decideLocked(w, waitAbandoned)
				continue
			}
			b.decideLocked(w, waitDropped)
			b.lastDrop = now
		}
	}
}

// standingSinceLocked returns the enqueue time of the oldest waiter
// queued, of any class: the age of the standing queue. The queue must be
// non-empty.
func (b *Bulkhead) standingSinceLocked() time.Time {
	var oldest time.Time
	for c := range b.queues {
		if w := b.queues[c].head; w != nil && (oldest.IsZero() || w.enqueued.Before(oldest)) {
			oldest = w.enqueued
		}
	}
	return oldest
}

// controlLocked runs the CoDel controller at a hand-off at time now, before
// the waiter is picked:
//
//   - Nobody queued: nothing to detect (nextLocked then ends the episode:
//     a slot found nobody to serve). An overload does not end here, see
//     lapseLocked.
//   - Not overloaded: the detector looks at the sojourn (now minus enqueue
//     time) of the oldest waiter queued, of any class, as CoDel looks at
//     the packet at the head of its queue: without classes that is the
//     waiter FIFO grants. A sojourn above target starts (or continues) an
//     episode, remembered in firstAbove; one at or below target ends it.
//     A hand-off that sees a sojourn above target while the episode has
//     lasted interval or more turns overload on, and is then served as an
//     overloaded one. (The oldest waiter, not the one granted: with
//     classes, a fresh critical waiter is granted ahead of a standing
//     queue of lower classes, and must not hide it.)
//
// Overloaded, nextLocked serves by lifoNextLocked and then refuses the
// stale waiters left (refuseStaleLocked).
func (b *Bulkhead) controlLocked(now time.Time) {
	b.drainLocked(now)
	b.lapseLocked(now)
	if b.overloaded || b.depth == 0 {
		return
	}
	switch {
	case now.Sub(b.standingSinceLocked()) <= b.target:
		b.firstAbove = time.Time{}
	case b.firstAbove.IsZero():
		b.firstAbove = now
	case now.Sub(b.firstAbove) >= b.interval:
		b.overloaded, b.firstAbove = true, time.Time{}
		b.lastDrop = now // the standing queue about to be refused is the first refusal
	}
}

// lapseLocked ends an overload once an interval has passed in which no
// waiter was dropped or timed out. It runs at every enqueue and hand-off,
// before they act on the mode, and at timeouts. Why the exit is an
// interval without refusals, and not CoDel's sojourn below target or an
// empty queue (both of which adaptive LIFO produces by itself), is in the
// package documentation.
func (b *Bulkhead) lapseLocked(now time.Time) {
	if b.overloaded && now.Sub(b.lastDrop) >= b.interval {
		b.overloaded = false
	}
}

// timedOutLocked records that a waiter timed out while the queue is
// overloaded: a refusal, so the overload goes on, unless it had already
// lapsed (an interval without refusals ended before this one). A timeout
// is also a moment to refuse the waiters that have turned stale since the
// last event, as an enqueue does: waiters that queued before the overload
// began wait under max_wait, and no timer of theirs fires at target.
func (b *Bulkhead) timedOutLocked() {
	if !b.overloaded {
		return
	}
	now := b.clk.Now()
	b.lapseLocked(now)
	if b.overloaded {
		b.lastDrop = now
		b.refuseStaleLocked(now)
	}
}

// arriveLocked runs the controller for a request about to queue at now,
// before the mode decides its wait bound and before the depth decides
// whether it may queue at all: it ends a lapsed overload, and, while
// overloaded, refuses the waiters that have turned stale since the last
// event (the arrival path of refusals). That is what refuses a waiter
// that queued before the overload began (its timer is max_wait) soon after
// it turns stale: under overload, arrivals come faster than slots free.
// And a stale waiter refused here no longer counts against ShedAt, so it
// cannot get a fresh arrival refused with ErrFull in its place.
func (b *Bulkhead) arriveLocked(now time.Time) {
	b.drainLocked(now)
	b.lapseLocked(now)
	if b.overloaded {
		b.refuseStaleLocked(now)
	}
}

// queueWaitLocked is the wait bound of a waiter queuing now: max_wait, or
// under CoDel overload target (max_wait if that is shorter), so a request
// that arrives into a standing queue learns quickly that it will not be
// served in time. 0 means no limit.
func (b *Bulkhead) queueWaitLocked() time.Duration {
	if !b.overloaded || (b.maxWait > 0 && b.maxWait < b.target) {
		return b.maxWait
	}
	return b.target
}

// drainLocked keeps, at now, the drain estimate: how many slots the
// releases free within target, from the departure rate RFC 8033 (PIE)
// predicts queuing delay from. A window opens at the first controller
// event and closes at the first one at least interval/2 later, which
// turns the releases counted in it into withinTarget = max(1,
// floor(releases × target / window)). Every release counts, whether it
// handed its slot to a waiter or back to the pool: a slot that goes back
// is taken by the next arrival, so under overload the releases' rate is
// the upstream's throughput whatever the queue's length, and an estimate
// that came out too low (the upstream got faster) is corrected by the next
// window even though a queue kept that short sometimes empties. It runs
// at every enqueue and hand-off, before they act on the mode, so an
// overload begins with the rate of the standing interval that led to it.
// Costs one comparison; the clock was read anyway.
func (b *Bulkhead) drainLocked(now time.Time) {
	if b.testingWithinTarget > 0 {
		b.withinTarget = b.testingWithinTarget
		return
	}
	if b.drainFrom.IsZero() {
		b.drainFrom, b.drained = now, 0
		return
	}
	if window := now.Sub(b.drainFrom); window >= b.interval/2 {
		b.withinTarget = max(1, int(int64(b.drained)*int64(b.target)/int64(window)))
		b.drainFrom, b.drained = now, 0
	}
}

// predictedLateLocked reports whether a class c request about to queue
// while overloaded would, by the drain estimate, still be waiting at
// target: as many waiters of its class and higher as the releases of a
// target's time serve are queued already. Such a request is refused at
// once rather than at target (rule 5 of the package documentation).
func (b *Bulkhead) predictedLateLocked(c Class) bool {
	if !b.overloaded || b.withinTarget == 0 {
		return false
	}
	ahead := 0
	for k := Class(0); k <= c; k++ {
		ahead += b.queues[k].n
	}
	return ahead >= b.withinTarget
}
