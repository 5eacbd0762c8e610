package admission

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"sluice/adaptive"
	"sluice/breaker"
	"sluice/bulkhead"
	"sluice/clock"
	"sluice/config"
	"sluice/redisstore"
)

// Controller admits or refuses the requests of one route. It is safe for
// concurrent use; its counters are atomics read without locks.
type Controller struct {
	route string
	clk   clock.Clock
	rl    *RateLimiter       // nil: no rate limit
	bh    *bulkhead.Bulkhead // nil: unlimited concurrency, no queue
	// br is the upstream's breaker (nil: none). It is swapped, not the
	// Controller, when a reload rebuilds the upstream but leaves the route
	// as it was, so the route keeps its bucket, queue and counters.
	br  atomic.Pointer[breaker.Breaker]
	svc serviceTime

	admitted atomic.Uint64
	rejected [NumReasons]atomic.Uint64
	inflight atomic.Int64 // admitted and not yet finished

	// Priority classes: the route's class, the header that may
	// override it (trusted only because the route names it), and counts.
	class    bulkhead.Class
	classHdr string
	byClass  [3]classCounts

	lim adaptive.Limiter // nil: a fixed max_concurrent

	prioritized bool   // the route has a priority block
	discipline  string // queue discipline as configured: fifo or codel

	lastRateLimited atomic.Uint64 // rate_limited count at the previous sample (sampler only)
}

// New builds the controller of a validated route. br is the breaker of the
// route's upstream, shared by every route to it, or nil. clk nil = wall clock.
// A global rate limit is local here; see NewShared.
func New(rc config.Route, br *breaker.Breaker, clk clock.Clock) *Controller {
	return NewShared(rc, br, clk, nil)
}

// NewShared is New with the store a global rate limit shares its buckets
// through (nil: every limit is local).
func NewShared(rc config.Route, br *breaker.Breaker, clk clock.Clock, s *redisstore.Store) *Controller {
	if clk == nil {
		clk = clock.Real()
	}
	c := &Controller{route: rc.Name, clk: clk}
	c.br.Store(br)
	if rc.RateLimit != nil {
		c.rl = newRateLimiter(*rc.RateLimit, rc.Name, s)
	}
	c.class = bulkhead.ClassDefault
	c.discipline = rc.Queue.Discipline
	if rc.Bulkhead != nil {
		o := bulkhead.Options{
			MaxConcurrent: rc.Bulkhead.MaxConcurrent,
			MaxDepth:      rc.Queue.MaxDepth,
			MaxWait:       rc.Queue.MaxWait,
			Clock:         clk,
		}
		if rc.Queue.Discipline == "codel" {
			o.Discipline, o.CoDelTarget, o.CoDelInterval = bulkhead.CoDel, rc.Queue.CoDel.Target, rc.Queue.CoDel.Interval
		}
		if p := rc.Priority; p != nil {
			c.prioritized = true
			c.class, _ = parseClass(p.Class)
			c.classHdr = p.Header
			o.ShedAt = [3]float64{
				bulkhead.ClassCritical:  p.ShedAt.Critical,
				bulkhead.ClassDefault:   p.ShedAt.Default,
				bulkhead.ClassSheddable: p.ShedAt.Sheddable,
			}
		}
		c.bh = bulkhead.NewWithOptions(o)
		if a := rc.Bulkhead.Adaptive; a != nil {
			ao := adaptive.Options{Initial: rc.Bulkhead.MaxConcurrent, Min: a.Min, Max: a.Max}
			if a.Algorithm == "aimd" {
				c.lim = adaptive.NewAIMD(ao)
			} else {
				c.lim = adaptive.NewGradient2(ao)
			}
		}
	}
	return c
}

// classCounts are one priority class's admissions and refusals.
type classCounts struct {
	admitted atomic.Uint64
	rejected [NumReasons]atomic.Uint64
}

func parseClass(s string) (bulkhead.Class, bool) {
	switch s {
	case "critical":
		return bulkhead.ClassCritical, true
	case "default":
		return bulkhead.ClassDefault, true
	case "sheddable":
		return bulkhead.ClassSheddable, true
	}
	return bulkhead.ClassDefault, false
}

// ClassOf is the request's priority class: the trusted header's value
// when the route names one and it is a class, else the route's own
// (default for a route without priority).
func (c *Controller) ClassOf(r *http.Request) bulkhead.Class {
	if c.classHdr != "" {
		if v := r.Header.Get(c.classHdr); v != "" {
			if cl, ok := parseClass(v); ok {
				return cl
			}
		}
	}
	return c.class
}

// Decision is the outcome of Admit. An admitted decision holds a bulkhead
// slot and a breaker ticket until Finish; a refused one holds nothing.
type Decision struct {
	Reason Reason
	// RetryAfter is the honest wait before retrying, per the rejection
	// table of docs/SPEC.md; 0 for admitted requests and ClientGone.
	RetryAfter time.Duration
	// QueueWait is the time spent waiting in the bulkhead queue.
	QueueWait time.Duration
	// Class is the request's priority class.
	Class bulkhead.Class
	// Bulkheaded says the request reached the bulkhead (it was not refused
	// before), so QueueWait is a measurement.
	Bulkheaded bool

	// RateLimit state for the IETF RateLimit header, set when the route has
	// a rate limit (whatever the outcome).
	HasRateLimit bool
	Remaining    int           // whole tokens left in the key's bucket
	Reset        time.Duration // until the bucket is full again

	c         *Controller
	permit    bulkhead.Permit
	hasPermit bool
	brDone    func(breaker.Outcome)
	start     time.Time // when the request got its slot
}

// Admit runs r through the route's admission, in the order of docs/SPEC.md:
// rate limit, bulkhead (waiting in the bounded queue if it is full), then
// the upstream's breaker. ctx bounds the queue wait (the route deadline and the
// client's own cancellation).
//
// An open breaker is also checked before queueing: there is no point making
// a client wait for a slot only to refuse it at the end (docs/SPEC.md: never
// make a client wait only to be refused).
func (c *Controller) Admit(ctx context.Context, r *http.Request) Decision {
	return c.AdmitAt(ctx, r, c.clk.Now())
}

// AdmitAt is Admit for a request that arrived at now, read from the clock
// the controller was built with. The proxy has read it already when the
// request came in, and on a virtual machine a clock read can cost 100 ns,
// a sixth of a whole refusal.
func (c *Controller) AdmitAt(ctx context.Context, r *http.Request, now time.Time) Decision {
	d := Decision{Class: c.ClassOf(r)}
	if c.rl != nil {
		ok, remaining, reset, delay := c.rl.Allow(r, now)
		d.HasRateLimit, d.Remaining, d.Reset = true, remaining, reset
		if !ok {
			return c.refuse(d, RateLimited, delay)
		}
	}
	br := c.br.Load()
	if br != nil {
		if left := br.OpenFor(); left > 0 {
			return c.refuse(d, BreakerOpen, left)
		}
	}
	start := now
	if c.bh != nil {
		d.Bulkheaded = true
		// Try first: a free slot needs no second clock read (time.Now is
		// ~50 ns here, a quarter of the whole fast path).
		p, ok := c.bh.TryAcquireClass(d.Class)
		if !ok {
			var err error
			p, err = c.bh.AcquireClass(ctx, d.Class)
			if errors.Is(err, bulkhead.ErrFull) {
				// Refused without waiting (never after a wait): no
				// queue wait to measure, and no clock to read.
				return c.refuseQueue(d, err)
			}
			start = c.clk.Now()
			d.QueueWait = start.Sub(now)
			if err != nil {
				return c.refuseQueue(d, err)
			}
		}
		d.permit, d.hasPermit = p, true
	}
	if br != nil {
		done, err := br.Allow()
		if err != nil {
			// Half-open with every probe out, or opened while we queued.
			if d.hasPermit {
				d.permit.Release()
				d.hasPermit = false
			}
			return c.refuse(d, BreakerOpen, br.OpenFor())
		}
		d.brDone = done
	}
	c.admitted.Add(1)
	c.byClass[d.Class].admitted.Add(1)
	c.inflight.Add(1)
	d.c, d.start = c, start
	return d
}

func (c *Controller) refuseQueue(d Decision, err error) Decision {
	switch {
	case errors.Is(err, bulkhead.ErrFull):
		return c.refuse(d, QueueFull, c.queueRetryAfter())
	case errors.Is(err, bulkhead.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		// The route deadline passing in the queue is a queue timeout too:
		// the client is refused for capacity, not for a slow upstream.
		return c.refuse(d, QueueTimeout, c.queueRetryAfter())
	case errors.Is(err, bulkhead.ErrClosed):
		return c.refuse(d, ShuttingDown, 0)
	}
	d.Reason = ClientGone
	c.rejected[ClientGone].Add(1)
	c.byClass[d.Class].rejected[ClientGone].Add(1)
	return d
}

func (c *Controller) refuse(d Decision, r Reason, retryAfter time.Duration) Decision {
	c.rejected[r].Add(1)
	c.byClass[d.Class].rejected[r].Add(1)
	d.Reason, d.RetryAfter = r, retryAfter
	return d
}

// queueRetryAfter estimates how long the queue ahead takes to drain, per
// docs/SPEC.md: (depth+1) × recent mean service time ÷ max_concurrent.
func (c *Controller) queueRetryAfter() time.Duration {
	return time.Duration(int64(c.bh.Depth()+1) * int64(c.svc.mean()) / int64(c.bh.MaxConcurrent()))
}

// SetBreaker points the route at its upstream's new breaker after a reload
// rebuilt the upstream. Requests admitted before report to the old one.
func (c *Controller) SetBreaker(br *breaker.Breaker) { c.br.Store(br) }

// Refuse counts a refusal decided outside Admit (no_healthy_upstream).
func (c *Controller) Refuse(r Reason) { c.rejected[r].Add(1) }

// RefuseClass counts a refusal of a request of class cl decided outside
// Admit (overloaded: the saturation detector sheds by class).
func (c *Controller) RefuseClass(cl bulkhead.Class, r Reason) {
	c.rejected[r].Add(1)
	c.byClass[cl].rejected[r].Add(1)
}

// Finish ends an admitted request: it reports the outcome to the breaker,
// frees the bulkhead slot and feeds the service-time estimate. Call it
// exactly once per admitted decision; it does nothing for a refused one.
func (d *Decision) Finish(o breaker.Outcome) { d.FinishSample(o, SampleOK) }

// Sample is what a finished request tells an adaptive limit.
type Sample uint8

const (
	// SampleOK: the request's time holding its slot is a latency sample.
	SampleOK Sample = iota
	// SampleDropped: the upstream timed out or answered that it is
	// overloaded (503, 429): the limit backs off.
	SampleDropped
	// SampleSkip: nothing to learn (the client left first).
	SampleSkip
)

// FinishSample is Finish that also feeds an adaptive limit.
func (d *Decision) FinishSample(o breaker.Outcome, sample Sample) {
	c := d.c
	if c == nil {
		return
	}
	d.c = nil
	if d.brDone != nil {
		d.brDone(o)
		d.brDone = nil
	}
	now := c.clk.Now()
	held := now.Sub(d.start)
	if c.lim != nil && sample != SampleSkip {
		// Sampled while the slot is still held, so inflight counts this one.
		if n, changed := c.lim.OnSample(now, held, c.bh.Inflight(), sample == SampleDropped); changed {
			c.bh.SetLimit(n)
		}
	}
	if d.hasPermit {
		d.permit.Release()
		d.hasPermit = false
	}
	c.svc.observe(held)
	c.inflight.Add(-1)
}

// AdmittedClass is the number of requests of class cl admitted so far.
func (c *Controller) AdmittedClass(cl bulkhead.Class) uint64 { return c.byClass[cl].admitted.Load() }

// RejectedClass is the number of requests of class cl refused for r so far.
func (c *Controller) RejectedClass(cl bulkhead.Class, r Reason) uint64 {
	return c.byClass[cl].rejected[r].Load()
}

// HasPriority reports whether the route classes its requests.
func (c *Controller) HasPriority() bool { return c.prioritized }

// QueueDiscipline is the queue discipline as configured (fifo or codel).
func (c *Controller) QueueDiscipline() string { return c.discipline }

// Adaptive returns the route's adaptive limiter, or nil for a fixed limit.
func (c *Controller) Adaptive() adaptive.Limiter { return c.lim }

// Route returns the route's name.
func (c *Controller) Route() string { return c.route }

// RateLimiter returns the route's rate limiter, or nil.
func (c *Controller) RateLimiter() *RateLimiter { return c.rl }

// Bulkhead returns the route's bulkhead, or nil.
func (c *Controller) Bulkhead() *bulkhead.Bulkhead { return c.bh }

// Admitted is the number of requests admitted so far.
func (c *Controller) Admitted() uint64 { return c.admitted.Load() }

// Rejected is the number of requests refused for r so far.
func (c *Controller) Rejected(r Reason) uint64 { return c.rejected[r].Load() }

// Inflight is the number of admitted requests not yet finished.
func (c *Controller) Inflight() int64 { return c.inflight.Load() }

// QueueDepth is the number of requests waiting for a slot now.
func (c *Controller) QueueDepth() int {
	if c.bh == nil {
		return 0
	}
	return c.bh.Depth()
}

// MeanServiceTime is the recent mean time admitted requests held a slot.
func (c *Controller) MeanServiceTime() time.Duration { return c.svc.mean() }

// Close refuses every queued request with ShuttingDown (graceful drain).
func (c *Controller) Close() {
	if c.bh != nil {
		c.bh.Close()
	}
}

// Backpressured reports whether a request arriving at now could not start
// at once: the bulkhead is full, requests are waiting, or the rate limit
// would refuse it. A route-wide bucket is read directly; per-key buckets
// cannot all be read, so a keyed route counts as backpressured when it
// refused a request for rate since the previous sample. Called only by the
// backpressure sampler (it keeps the previous count between calls); it takes
// no lock on the request path beyond the route-wide bucket's own.
func (c *Controller) Backpressured(now time.Time) bool {
	if c.bh != nil && (c.bh.Depth() > 0 || c.bh.Inflight() >= c.bh.MaxConcurrent()) {
		return true
	}
	if c.rl == nil {
		return false
	}
	if g := c.rl.global; g != nil && g.store.Up() && g.single != nil {
		return g.backpressured(now)
	}
	if c.rl.single != nil {
		return c.rl.single.TokensAt(now) < 1
	}
	n := c.rejected[RateLimited].Load()
	return c.lastRateLimited.Swap(n) != n
}

// QueueUsage is depth ÷ max_depth (Flink's inPoolUsage), 0 without a queue.
func (c *Controller) QueueUsage() float64 {
	if c.bh == nil || c.bh.MaxDepth() == 0 {
		return 0
	}
	return float64(c.bh.Depth()) / float64(c.bh.MaxDepth())
}

// BulkheadUsage is inflight ÷ max_concurrent (Flink's outPoolUsage), 0 when
// concurrency is unlimited.
func (c *Controller) BulkheadUsage() float64 {
	if c.bh == nil {
		return 0
	}
	return float64(c.bh.Inflight()) / float64(c.bh.MaxConcurrent())
}
