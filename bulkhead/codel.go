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
	// waiter was dropped or timed out, newest first, stale waiters dropped
	// at dequeue and new waits bounded by CoDelTarget. The state machine
	// is in the package documentation.
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
// nobody is queued (or, under CoDel, everybody queued was stale and has
// been dropped). The caller grants to it.
func (b *Bulkhead) nextLocked() *waiter {
	if !b.codel {
		if b.depth == 0 {
			return nil
		}
		w := b.fifoNextLocked()
		b.removeLocked(w)
		return w
	}
	if b.depth == 0 && !b.overloaded && b.firstAbove.IsZero() {
		return nil // nothing queued and nothing to reset: no clock read
	}
	return b.nextCoDelLocked(b.clk.Now())
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

// nextCoDelLocked is nextLocked under the CoDel discipline, at time now.
// It runs the controller, then serves:
//
//   - Nobody queued: a slot finds nobody to serve, so whatever sojourns
//     were seen, the queue is not standing: the episode ends (CoDel resets
//     first_above_time when it dequeues from an empty queue). An overload
//     does not end here, see lapseLocked.
//   - Not overloaded: the FIFO choice. The detector first looks at the
//     sojourn (now minus enqueue time) of the oldest waiter queued, of any
//     class, as CoDel looks at the packet at the head of its queue:
//     without classes that is the waiter being granted. A sojourn above
//     target starts (or continues) an episode, remembered in firstAbove;
//     one at or below target ends it. A grant that sees a sojourn above
//     target while the episode has lasted interval or more turns overload
//     on, and is then served as below. (The oldest waiter, not the one
//     granted: with classes, a fresh critical waiter is granted ahead of
//     a standing queue of lower classes, and must not hide it.)
//   - Overloaded: every waiter whose sojourn exceeds target is dropped
//     with ErrTimeout (CoDel's drop at dequeue). Lists are in enqueue
//     order, so in each class they are a prefix from the head, and this
//     costs O(1) per waiter dropped. Then the newest waiter of the highest
//     class left is served (adaptive LIFO), if any is.
//
// Dropping every stale waiter, not only a stale candidate, changes no
// outcome, only its timing (see the package documentation).
func (b *Bulkhead) nextCoDelLocked(now time.Time) *waiter {
	b.lapseLocked(now)
	if b.depth == 0 {
		b.firstAbove = time.Time{}
		return nil
	}
	if !b.overloaded {
		switch {
		case now.Sub(b.standingSinceLocked()) <= b.target:
			b.firstAbove = time.Time{}
		case b.firstAbove.IsZero():
			b.firstAbove = now
		case now.Sub(b.firstAbove) >= b.interval:
			b.overloaded, b.firstAbove = true, time.Time{}
			b.lastDrop = now // the standing queue about to be dropped is the first refusal
		}
		if !b.overloaded {
			w := b.fifoNextLocked()
			b.removeLocked(w)
			return w
		}
	}
	for c := range b.queues {
		q := &b.queues[c]
		for q.head != nil && now.Sub(q.head.enqueued) > b.target {
			w := q.head
			b.removeLocked(w)
			b.decideLocked(w, waitDropped)
			b.lastDrop = now
		}
	}
	for c := range b.queues {
		if w := b.queues[c].tail; w != nil {
			b.removeLocked(w)
			return w
		}
	}
	return nil
}

// lapseLocked ends an overload once an interval has passed in which no
// waiter was dropped or timed out. It runs at every enqueue and dequeue,
// before they act on the mode, and at timeouts. Why the exit is an interval without
// refusals, and not CoDel's sojourn below target or an empty queue (both
// of which adaptive LIFO produces by itself), is in the package
// documentation.
func (b *Bulkhead) lapseLocked(now time.Time) {
	if b.overloaded && now.Sub(b.lastDrop) >= b.interval {
		b.overloaded = false
	}
}

// timedOutLocked records that a waiter timed out while the queue is
// overloaded: a refusal, so the overload goes on, unless it had already
// lapsed (an interval without refusals ended before this one).
func (b *Bulkhead) timedOutLocked() {
	if !b.overloaded {
		return
	}
	now := b.clk.Now()
	b.lapseLocked(now)
	if b.overloaded {
		b.lastDrop = now
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
