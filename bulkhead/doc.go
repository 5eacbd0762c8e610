// Package bulkhead is a concurrency pool with a bounded, prioritized wait
// queue: at most limit requests of a route run at once (max_concurrent,
// or what the adaptive controller sets through SetLimit), at most
// max_depth more wait their turn, each for at most max_wait. Requests come
// in three classes, served highest first and shed lowest first, and the
// queue is FIFO or CoDel (adaptive LIFO under overload).
//
// # Model
//
// One mutex guards everything that decides who runs: the limit, the count
// of held slots (inflight) and one intrusive doubly linked list of waiters
// per class, each in arrival order. Each waiter has a channel with a
// buffer of 1 on which it is told, once, that its fate was decided (a slot
// granted, Close, a CoDel refusal, or passed over because its ctx was done).
//
//	AcquireClass(ctx, c)
//	   |
//	   +-- inflight < limit and nobody queued? -- yes --> Permit  (no timer, no clock, no allocation)
//	   |
//	   +-- closed? -----------------------------------> ErrClosed  } at once,
//	   +-- depth >= ceil(ShedAt[c] * max_depth)? -----> ErrFull    } never after a wait
//	   |   (the full queue is the ShedAt 1.0 case;
//	   |    with max_depth 0 nobody ever waits)
//	   v
//	   enqueue at the tail of c's list, then arm the timer: max_wait, or the
//	   CoDel target while overloaded
//
//	          queues (<= max_depth in all)                 slots (limit = 3)
//	             tail                  head              +-----+-----+-----+
//	critical    [ c2 ] --> [ c1 ] ----------+            |  P  |  P  |  P  |  inflight = 3
//	default     [ d3 ] --> [ d2 ] --> [ d1 ] |            +-----+-----+-----+
//	sheddable   [ s1 ] ---------------------+                        |
//	                                   ^                             |
//	                                   +------- Release ------------+
//	              direct hand-off under the lock: FIFO picks c1 (the head of
//	              the highest class queued), CoDel overloaded picks c2 (the
//	              tail); it is unlinked, marked granted and sent a token;
//	              inflight stays 3
//
// A slot freed while anyone is queued never returns to the pool: Release
// hands it straight to the next waiter. That is what makes the order
// strict: nobody arriving later, through TryAcquire or Acquire, can take
// the slot between the Release and the waiter waking up, and no class can
// barge past another's waiters except through the order above. It also
// gives the invariant "the queue is non-empty only while inflight >=
// limit". Under either discipline, a freed slot goes back to the pool
// only if the hand-off finds nobody queued whose ctx is still live: a
// waiter whose ctx is already done is passed over at once (unlinked, told,
// and it returns ctx.Err()), since its caller has left and handing it the
// slot would hold the slot idle until its goroutine woke up to pass it on,
// which on a CPU-saturated machine is late. The waiter's outcome is the
// one it would have had anyway; the slot is used at once rather than
// then (see the grant-versus-cancel race below).
//
// # Classes and shedding
//
// A released slot goes to the highest class queued: critical, then
// default, then sheddable (Google SRE's criticality). Within a class the
// discipline picks. Lower classes are refused earlier as the queue fills:
// a class c request that would have to wait is refused with ErrFull when
// depth >= ShedAt[c]·max_depth. The thresholds are turned into integer
// depths once, at construction, so the check per request is one
// comparison; with the shed_at defaults (1.0, 0.8, 0.5) and max_depth 10,
// sheddable is refused once 5 are queued, default once 8 are, critical
// once 10 are. A waiter already queued is never evicted by a higher class:
// it is served after them or times out.
//
// # The limit
//
// SetLimit moves the limit at any time. Raising it grants queued waiters
// at once, in the order a Release would, until inflight reaches the new
// limit. Lowering it revokes nothing: a Release while inflight > limit
// retires the slot (inflight drops, nobody is granted), so in-flight work
// drains down to the new limit, and only then do releases hand slots to
// waiters again. A grant therefore never takes inflight above the limit of
// its moment; Inflight may exceed Limit only while a lowering drains.
//
// # CoDel
//
// The CoDel discipline is Meta's adaptive LIFO with controlled delay
// ("Fail at Scale", 2015), its detector the one of Nichols and Jacobson's
// CoDel ("Controlling Queue Delay", 2012). The sojourn of a waiter is the
// time since it queued. At every grant, the detector looks at the sojourn
// of the oldest waiter queued, of any class (CoDel looks at the packet at
// the head of its queue; without classes that is the waiter granted, and
// with classes it keeps fresh critical waiters served first from hiding a
// standing queue behind them). "Above" means strictly more than target;
// a waiter is stale when its sojourn is above target. A refusal is a
// waiter refused for being stale or timed out while overloaded, or an
// arrival refused by rule 5 below; a cancel is not one.
//
//	              grant sees sojourn <= target, or a slot finds nobody queued
//	       +-------------------------------------------------------+
//	       v                                                       |
//	  +------------+  grant sees sojourn > target   +----------------------+
//	->|    FIFO    |------------------------------->|   FIFO, in episode   |--+ grant sees sojourn
//	  | no episode |                                |   firstAbove = t0    |  | > target at
//	  +------------+                                +----------------------+<-+ now < t0+interval
//	       ^                                                  |
//	       |                                                  | grant sees sojourn > target
//	       |                                                  | at now >= t0 + interval
//	       |                                                  v
//	       |  an enqueue, grant or timeout at    +-----------------------+
//	       |  now >= lastDrop + interval:        |      OVERLOADED       |--+ a refusal:
//	       +- an interval without a refusal -----|  lastDrop = now       |  | lastDrop = now
//	          (or Close)                         |  serve newest, refuse |<-+
//	                                             |  stale, new waits     |
//	                                             |  <= target, refuse    |
//	                                             |  arrivals predicted   |
//	                                             |  late                 |
//	                                             +-----------------------+
//
// While not overloaded, grants are FIFO and each waiter waits at most
// max_wait: a burst is absorbed exactly as under FIFO. While overloaded:
//
//  1. a slot (freed by Release, added by SetLimit, or passed on by a
//     canceled grant) goes to the newest waiter of the highest class that
//     has one at most target old (LIFO: a fresh request can still meet
//     its deadline, a stale one likely cannot); if every waiter is stale,
//     to the newest waiter of the highest class, stale as it is. A slot is
//     never left idle while anyone waits: served late beats not served,
//     and a queue of stale waiters is most likely exactly when the machine
//     is CPU-saturated, because then it is timers and wake-ups that run
//     late;
//  2. at that grant, every other waiter whose sojourn exceeds target is
//     refused: it fails with ErrTimeout (CoDel's drop at dequeue);
//  3. a request that queues waits at most target (max_wait if shorter)
//     instead of max_wait, so a request arriving into a standing queue
//     learns within target that it will not be served: its own timer
//     refuses it at target, whether or not a slot frees;
//  4. every enqueue and every timeout also refuses every waiter whose
//     sojourn exceeds target (the arrival path), an enqueue before it
//     checks the depth. A waiter that queued before the overload began
//     keeps its max_wait timer, so it is these events that refuse it once
//     it turns stale: the first enqueue, grant or timeout after that
//     moment, and under overload requests arrive faster than slots free.
//     (With no event at all, it waits for the next one, or is served by
//     rule 1 if that is a grant.) And a stale waiter never counts against
//     ShedAt to get a fresh arrival refused with ErrFull;
//  5. a request that would queue behind as many waiters of its class and
//     higher as the releases serve within target is refused at once with
//     ErrTimeout, without waiting (after the stale waiters are refused and
//     the depth checked): by the drain estimate it would still be queued
//     at target, and refusing it then costs the machine a timer, a
//     parked goroutine and a second wake-up, which on a CPU-saturated
//     machine come late. The estimate is PIE's (RFC 8033): the departure
//     rate. Every release is counted, and a window of at least interval/2
//     gives withinTarget = max(1, floor(releases × target / window)).
//     Windows are measured in FIFO mode too, so an overload begins with
//     the drain of the standing interval that led to it; under overload a
//     slot a release gives back to the pool goes to the next arrival, so
//     the releases' rate stays the upstream's throughput even when the
//     short queue empties, and an estimate that was too low (the upstream
//     got faster) is corrected by the next window.
//
// Lists are in arrival order, so the stale waiters are a prefix of each
// list, and refusing them costs O(1) each, plus one look per class. A
// stale waiter whose ctx is done is passed over instead of refused (its
// caller left: a cancel, not a refusal).
//
// The effect: under sustained overload the standing queue stays younger
// than target, so admitted latency stays near the service time, and the
// requests that cannot be served are refused as they arrive (rule 5) or
// after target, rather than after max_wait, at the same goodput. Rule 5
// does not make the order FIFO: under LIFO a waiter pushed back by newer
// arrivals still turns stale and is refused by rules 2 to 4; what it
// bounds is how many can be kept waiting for that. (A real-clock run of the shape of
// docs/BENCHMARKS.md's scenario (c), 20 slots of 20ms, queue 100 / 250ms, 5x Poisson load:
// admitted wait p99 about 108ms under FIFO, 2.5ms under CoDel.)
//
// Both edges take an interval: in after an interval of sojourns above
// target, out after an interval without refusals. Neither CoDel's exit (a
// dequeue that sees a sojourn below target) nor "the queue empties" can
// serve under adaptive LIFO, because the controller's own actions produce
// both: every grant goes to the newest waiter and every wait is bounded
// by target, so grants see sojourns at or below target, overload or not;
// and when overload begins after a standing interval, a full queue is all
// stale (a full queue refuses fresh arrivals), so the first grant refuses
// all of it but the newest waiter. Either exit would return to FIFO at
// once, and the queue would stand for another interval before the next,
// single, LIFO grant. What does tell overload apart is the refusals:
// under sustained overload the requests that cannot be served keep being
// refused, and once demand falls below capacity they stop (Folly's Codel
// likewise holds its overloaded state for an interval at a time). The
// episode in FIFO mode ends, as in CoDel, when a dequeue finds the queue
// empty: a slot found nobody to serve, so the queue was not standing. A
// queue emptied by timeouts or cancels, with every slot still busy, does
// not end it.
//
// The mode changes only at enqueues, grants and timeouts, under the lock,
// and a waiter keeps the bound it queued with. Refusing the stale waiters
// at each of those events, not only when a slot frees, is what makes
// refusals timely. At an enqueue it costs no goodput as long as a slot
// frees within target: the arrival is fresher than every stale waiter, so
// that grant serves it first. Otherwise, as at a timeout, it refuses
// waiters that a slot freeing later could still have served: the price of
// refusing on time, the one a waiter that queued while overloaded pays to
// its own timer.
//
// The controller reads the clock only on the slow path, under the lock
// (enqueue times and grant times are then ordered as the critical
// sections are): when a request is about to queue, when a slot is handed
// to a waiter, and when one times out while overloaded. The fast path
// never reads it.
//
// # The grant-versus-cancel race
//
// A waiter wakes for one of six reasons: granted, closed, refused by
// CoDel (dropped), passed over, ctx done, or its wait bound passed. The
// last two are noticed outside the lock, so a grant (or a drop) can land
// between them and the waiter reacting:
//
//	waiter w1                         releaser
//	---------                         --------
//	ctx.Done() fires
//	                                  lock; w1 is next: unlink, granted, token; unlock
//	lock; look at own state  <-- granted!
//
// The waiter settles this under the lock by looking at its state, which
// only a lock holder changes and only once:
//
//	state      ctx done                          ctx not done (timer fired)
//	queued     unlink self, ctx.Err()            unlink self, ErrTimeout
//	granted    pass the slot on, ctx.Err()       keep it: success
//	closed     ctx.Err()                         ErrClosed
//	dropped    ctx.Err()                         ErrTimeout
//	passed     ctx.Err()                         ctx.Err(), read again: the hand-off
//	over                                         saw ctx done after the waiter looked
//
// Passing the slot on is exactly Release: to the next waiter by class and
// discipline (which, overloaded, refuses the stale ones), or back to the
// pool, or retired if the limit was lowered meanwhile. So a slot is never
// lost (a canceled waiter does not drop it) and never granted twice (only
// the lock holder that unlinks a waiter decides for it, whichever list and
// end it took it from). A dropped or passed-over waiter never holds a
// slot: the decider keeps the slot in hand and goes on to the next waiter.
// The hand-off looks at the waiter's ctx.Done() before granting (the
// channel, which the waiter publishes as it starts to wait, not the ctx,
// which need not be safe to use from another goroutine), so a waiter
// whose ctx was done before the slot freed is passed over rather than
// granted: the slot is not held idle until the waiter's goroutine runs. A waiter
// whose timer fired but who was granted keeps the slot: refusing it would
// waste capacity that was already ours (under CoDel, the stale waiter
// rule 1 serves is often one whose timer fired while its goroutine had
// not yet run).
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
// and a wait allocates only its timer. Limit, Inflight, Depth and DepthOf
// read atomic mirrors that are stored under the lock, so gauges and
// samplers never take it.
//
// Time comes from a clock.Clock: tests drive a clock.Fake and assert that
// a waiter times out after exactly its bound and that CoDel changes mode
// at exactly the documented instants, never sleeping.
package bulkhead
