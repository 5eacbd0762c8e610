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

// NewAIMD returns a limiter that adds one to the limit for each good sample
// while the limit is in use, and multiplies it by 0.9 for each sample that
// was dropped, took over 5× the no-load rtt, or found the short-term rtt
// over 1.5× the no-load rtt. It panics if o does not Validate.
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
	}
	if !dropped {
		a.b.sample(now, rtt, 2*inflight >= l)
		if a.b.stale(l <= a.probeLevel()) {
			return a.probeLocked(now)
		}
	}
	switch {
	case dropped || float64(rtt) > timeoutFactor*a.b.noLoad || a.b.queueing():
		return max(a.min, int(float64(l)*backoffRatio))
	case 2*inflight >= l: // the limit is in use, so it may grow
		return min(a.max, l+1)
	}
	return l
}

// probeLocked starts a probe of the no-load rtt and returns the limit to
// run it at.
func (a *aimd) probeLocked(now time.Time) int {
	a.b.startProbe(now, float64(a.limit))
	return a.probeLevel()
}

// probeLevel is the limit a probe runs at.
func (a *aimd) probeLevel() int { return min(a.max, max(a.min, probeLimit)) }
