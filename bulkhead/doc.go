// Package bulkhead is a concurrency pool with a bounded FIFO wait queue:
// at most max_concurrent requests of a route run at once, at most
// max_depth more wait their turn, each for at most max_wait.
//
// # Model
//
// One mutex guards everything that decides who runs: the count of held
// slots (inflight) and an intrusive doubly linked list of waiters. Each
// waiter has a channel with a buffer of 1 on which it is told, once, that
// its fate was decided (a slot granted, or Close).
//
//	Acquire
//	   |
//	   +-- a slot free and nobody queued? ---- yes ---> Permit  (no timer, no allocation)
//	   |
//	   +-- closed? ---------------------------------> ErrClosed  } at once,
//	   +-- queue full (always, if max_depth 0)? ----> ErrFull    } never after a wait
//	   |
//	   v  enqueue at the tail, then arm the max_wait timer
//
//	        queue (FIFO, <= max_depth)             slots (max_concurrent = 3)
//	   tail                         head          +-----+-----+-----+
//	  [ w3 ] --> [ w2 ] --> [ w1 ] ------------>  |  P  |  P  |  P  |  inflight = 3
//	                          ^                   +-----+-----+-----+
//	                          |                               |
//	                          +--------- Release -------------+
//	              direct hand-off under the lock: w1 is unlinked, marked
//	              granted and sent a token; inflight stays 3
//
// A slot freed while anyone is queued never returns to the pool: Release
// hands it straight to the head waiter. That is what makes the queue strict
// FIFO: nobody arriving later, through TryAcquire or Acquire, can take the
// slot between the Release and the waiter waking up. It also gives the
// invariant "the queue is non-empty only while every slot is held".
//
// # The grant-versus-cancel race
//
// A waiter wakes for one of four reasons: granted, closed, ctx done, or
// max_wait passed. The last two are noticed outside the lock, so a grant
// can land between them and the waiter reacting:
//
//	waiter w1                         releaser
//	---------                         --------
//	ctx.Done() fires
//	                                  lock; w1 is head: unlink, granted, token; unlock
//	lock; look at own state  <-- granted!
//
// The waiter settles this under the lock by looking at its state, which
// only a lock holder changes and only once:
//
//	state      ctx done                          ctx not done (timer fired)
//	queued     unlink self, ctx.Err()            unlink self, ErrTimeout
//	granted    pass the slot on, ctx.Err()       keep it: success
//	closed     ctx.Err()                         ErrClosed
//
// Passing the slot on is exactly Release: to the next head waiter, or back
// to the pool. So a slot is never lost (a canceled waiter does not drop
// it) and never granted twice (only the lock holder that unlinks a waiter
// grants to it). A waiter whose timer fired but who was granted keeps the
// slot: refusing it would waste capacity that was already ours.
//
// # Permits
//
// A Permit is a value: a pointer to recycled per-slot state plus the
// generation it was issued at. Release moves the generation on with a
// compare-and-swap, so a second Release of the same Permit (or of a copy)
// fails the swap and panics before any count changes, even if the state
// has since been reissued. Permit states are recycled through a free list
// kept under the lock and waiters through a sync.Pool, so the fast
// path (TryAcquire, Acquire with a free slot, Release) allocates nothing
// and a wait allocates only its timer. Inflight and Depth read atomic mirrors that
// are stored under the lock, so gauges and samplers never take it.
//
// Time comes from a clock.Clock: tests drive a clock.Fake and assert that
// a waiter times out after exactly max_wait, never sleeping.
package bulkhead
