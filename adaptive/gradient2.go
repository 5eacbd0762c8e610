package adaptive

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// smoothing weighs a new estimate against the current limit (Netflix
	// Gradient2Limit).
	smoothing = 0.2
	// minGradient bounds how far one sample can cut the estimate (Netflix
	// Gradient2Limit; Envoy's gradient controller).
	minGradient = 0.5
	// buffer is how far above the no-load rtt the short-term rtt may sit
	// before the gradient cuts: Envoy's default minRTT buffer of 25 %
	// (Netflix's Gradient2Limit tolerates 50 %, which settles the limit
	// near 1.9× the upstream's capacity: a line at the upstream as long as
	// its capacity, and twice the service time in every admitted request).
	buffer = 1.25
	// floorLevel: below floorLevel × the probe level the limit counts as
	// at its floor. At the gradient's floor the limit tends to the fixed
	// point of L = 0.5L + sqrt(L), 4, but only from above, more slowly
	// as it nears it.
	floorLevel = 1.5
)

// queueSize is the headroom the limit grows by while latency is within
// tolerance: Envoy's burst headroom, the square root of the limit.
func queueSize(limit float64) float64 { return math.Sqrt(limit) }

// NewGradient2 returns a limiter that scales the limit by the ratio of the
// no-load rtt (with a buffer of 1.25) to the short-term rtt and adds
// headroom, after Netflix's Gradient2Limit. It panics if o does not
// Validate.
func NewGradient2(o Options) Limiter {
	o.mustValidate()
	g := &gradient2{min: float64(o.Min), max: float64(o.Max), est: float64(o.Initial)}
	g.cur.Store(int64(o.Initial))
	return g
}

var _ Limiter = (*gradient2)(nil)

type gradient2 struct {
	min, max float64
	cur      atomic.Int64 // int(est), for Limit without mu

	mu  sync.Mutex // guards est, b
	est float64    // the limit, before truncation to an int
	b   baseline
}

func (g *gradient2) Limit() int { return int(g.cur.Load()) }

func (g *gradient2) OnSample(now time.Time, rtt time.Duration, inflight int, dropped bool) (int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := int(g.est)
	g.est = g.updateLocked(now, rtt, inflight, dropped)
	l := int(g.est)
	if l == old {
		return old, false
	}
	g.b.changed(now)
	g.cur.Store(int64(l))
	return l, true
}

func (g *gradient2) updateLocked(now time.Time, rtt time.Duration, inflight int, dropped bool) float64 {
	est := g.est
	switch {
	case !dropped && rtt <= 0:
		return est // no latency to learn from (a clock step, a broken caller)
	case g.b.probing:
		if restore, done := g.b.probeSample(now, rtt, dropped); done {
			return restore
		}
		return est
	case !g.b.known:
		return g.probeLocked(now)
	case !g.b.settled(now):
		return est // it ran under an earlier limit: no evidence about this one
	case dropped:
		// Netflix's Gradient2Limit ignores drops, and a fast 503 would even
		// read as good latency. Back off as AIMD does instead, at once.
		return math.Max(g.min, math.Floor(est*backoffRatio))
	}
	saturated := 2*float64(inflight) >= est
	g.b.sample(now, rtt, saturated)
	if g.b.stale(est < floorLevel*g.probeLevel()) {
		return g.probeLocked(now)
	}
	if done, roundSaturated := g.b.endRound(saturated); !done || !roundSaturated {
		return est // mid-round, or app-limited: the latency says nothing about this limit
	}
	grad := clamp(buffer*g.b.noLoad/g.b.short, minGradient, 1)
	n := est*grad + queueSize(est)
	n = est*(1-smoothing) + n*smoothing
	return clamp(n, g.min, g.max)
}

// probeLocked starts a probe of the no-load rtt and returns the limit to
// run it at.
func (g *gradient2) probeLocked(now time.Time) float64 {
	g.b.startProbe(now, g.est)
	return g.probeLevel()
}

// probeLevel is the limit a probe runs at.
func (g *gradient2) probeLevel() float64 { return clamp(probeLimit, g.min, g.max) }
