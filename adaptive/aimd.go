package adaptive

import (
	"sync"
	"sync/atomic"
	"time"
)

const (
	// backoffRatio multiplies the limit on a drop (Netflix AIMDLimit).
	backoffRatio = 0.9
	// timeoutFactor: a sample slower than timeoutFactor × the no-load rtt
	// counts as dropped (AIMD's latency guard; Netflix AIMDLimit's timeout).
	timeoutFactor = 5
)

// NewAIMD returns a limiter that, once per round of samples, adds one to the
// limit while the limit is in use, and multiplies it by 0.9 when the
// short-term rtt is over 1.5× the no-load rtt or a sample was dropped or
// took over 5× the no-load rtt (those at once). Samples of requests that
// started before the limit last changed are not counted. It panics if o
// does not Validate.
func NewAIMD(o Options) Limiter {
	o.mustValidate()
	a := &aimd{min: o.Min, max: o.Max, limit: o.Initial}
	a.cur.Store(int64(o.Initial))
	return a
}

var _ Limiter = (*aimd)(nil)

type aimd struct {
	min, max int
	cur      atomic.Int64 // limit, for Limit without mu

	mu    sync.Mutex // guards limit, b
	limit int
	b     baseline
}

func (a *aimd) Limit() int { return int(a.cur.Load()) }

func (a *aimd) OnSample(now time.Time, rtt time.Duration, inflight int, dropped bool) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.limit
	a.limit = a.updateLocked(now, rtt, inflight, dropped)
	if a.limit == old {
		return old, false
	}
	a.b.changed(now)
	a.cur.Store(int64(a.limit))
	return a.limit, true
}

func (a *aimd) updateLocked(now time.Time, rtt time.Duration, inflight int, dropped bool) int {
	l := a.limit
	switch {
	case !dropped && rtt <= 0:
		return l // no latency to learn from (a clock step, a broken caller)
	case a.b.probing:
		if restore, done := a.b.probeSample(now, rtt, dropped); done {
			return int(restore)
		}
		return l
	case !a.b.known:
		return a.probeLocked(now)
	case !a.b.settled(now):
		return l // it ran under an earlier limit: no evidence about this one
	case dropped:
		return a.backoff() // at once: the next cut needs a request admitted after this one
	}
	saturated := 2*inflight >= l
	a.b.sample(now, rtt, saturated)
	if a.b.stale(l <= a.probeLevel()) {
		return a.probeLocked(now)
	}
	if float64(rtt) > timeoutFactor*a.b.noLoad {
		return a.backoff()
	}
	switch done, roundSaturated := a.b.endRound(saturated); {
	case !done:
		return l
	case a.b.queueing():
		return a.backoff()
	case roundSaturated: // the limit is in use, so it may grow
		return min(a.max, l+1)
	}
	return l
}

// backoff is the limit cut by backoffRatio.
func (a *aimd) backoff() int { return max(a.min, int(float64(a.limit)*backoffRatio)) }

// probeLocked starts a probe of the no-load rtt and returns the limit to
// run it at.
func (a *aimd) probeLocked(now time.Time) int {
	a.b.startProbe(now, float64(a.limit))
	return a.probeLevel()
}

// probeLevel is the limit a probe runs at.
func (a *aimd) probeLevel() int { return min(a.max, max(a.min, probeLimit)) }
