package adaptive

import (
	"math"
	"time"
)

// Constants shared by both algorithms. The package documentation gives the
// source of each.
const (
	// shortWindow is the span, in samples, of the short-term rtt average.
	shortWindow = 10
	// longWindow is the span, in samples, of the no-load rtt average.
	longWindow = 600
	// tolerance is how far the short-term rtt may exceed the no-load rtt
	// before the upstream counts as queueing.
	tolerance = 1.5
	// bandAbove and bandBelow bound the short-term rtt, as multiples of
	// the no-load rtt, within which the no-load rtt counts as confirmed:
	// latency is at its no-load level, give or take normal variance.
	bandAbove = 1.25
	bandBelow = 0.5
	// probeLimit is the concurrency a probe pins the limit to (clamped to
	// [Min, Max]; it may raise a lower limit, so that a probe takes a few
	// rtts rather than probeSamples of them).
	probeLimit = 4
	// probeSamples is how many samples a probe averages.
	probeSamples = 20
	// probeAfter is how much more time the short-term rtt may spend out of
	// band than in it before a probe measures the no-load rtt again.
	probeAfter = 10 * time.Second
	// probeFloorAfter replaces probeAfter once the limit is down at the
	// probe's own concurrency: backing off further cannot help, so
	// whatever latency the upstream shows there is its no-load latency.
	probeFloorAfter = time.Second
	// roundSamples is how many fresh samples a round takes: the limit is
	// decided once per round (Netflix WindowedLimit's default window
	// size).
	roundSamples = 10
)

// ewmaFactor is Netflix ExpAvgMeasurement's weight for a window of n samples.
func ewmaFactor(n int) float64 { return 2 / float64(n+1) }

var (
	shortFactor = ewmaFactor(shortWindow)
	longFactor  = ewmaFactor(longWindow)
)

// baseline tracks the latency signals both algorithms read: the short-term
// rtt (what the upstream does now) and the no-load rtt (what it does when we
// are not queueing at it), and runs the probes that measure the latter.
//
// Its zero value has no no-load rtt yet (known is false): its owner starts
// a probe at the first sample. Not safe for concurrent use; its owner's
// mutex guards it.
type baseline struct {
	known  bool    // a probe has ended: noLoad and short hold values > 0
	short  float64 // ns, EWMA over shortWindow samples
	noLoad float64 // ns

	last    time.Time     // when the previous sample finished
	offBand time.Duration // time out of band minus time in band, >= 0

	// Rounds: a limit change shows in latency only about one rtt after
	// it, so samples that finish within the short-term rtt of changedAt
	// are not counted, and the limit is decided once per round of
	// roundSamples counted samples.
	changedAt time.Time
	round     int // fresh samples in this round
	roundSat  int // of them, saturated

	probing    bool
	probeStart time.Time // samples of requests started before it are ignored
	probeN     int
	probeSum   float64 // ns, of the probe's samples so far
	saved      float64 // the limit to restore when the probe ends
}

// startProbe begins measuring the no-load rtt at now; limit is the owner's
// limit, handed back when the probe ends.
func (b *baseline) startProbe(now time.Time, limit float64) {
	b.probing = true
	b.probeStart = now
	b.probeN = 0
	b.probeSum = 0
	b.saved = limit
}

// probeSample feeds one sample to a running probe. It reports whether the
// probe ended, and then the limit to restore.
func (b *baseline) probeSample(now time.Time, rtt time.Duration, dropped bool) (restore float64, done bool) {
	// A request that started before the probe ran at the old concurrency:
	// its latency is no no-load latency (Envoy ignores samples from before
	// its minRTT window the same way). A drop carries no service time.
	if dropped || now.Add(-rtt).Before(b.probeStart) {
		return 0, false
	}
	b.probeSum += float64(rtt)
	b.probeN++
	if b.probeN < probeSamples {
		return 0, false
	}
	// The mean, not a percentile: it is compared with short, an average,
	// and for skewed latencies mean/median alone can exceed the tolerance.
	b.known = true
	b.noLoad = b.probeSum / probeSamples
	b.short = b.noLoad
	b.last = now
	b.offBand = 0
	b.probing = false
	return b.saved, true
}

// changed records that the owner's limit changed at now: a new round starts,
// of requests admitted under the new limit.
func (b *baseline) changed(now time.Time) {
	b.changedAt = now
	b.round, b.roundSat = 0, 0
}

// settled reports whether a sample finishing at now tells of the current
// limit: the short-term rtt has passed since it changed, so the requests
// in flight were mostly admitted under it. It is a hold-off by time, not
// a filter on each request's start: of the requests admitted after a
// change, the first to finish are the fastest, and a round of them alone
// would read the latency low. (A clock that steps back moves changedAt
// back with it, so that samples are not ignored until it catches up.)
func (b *baseline) settled(now time.Time) bool {
	if now.Before(b.changedAt) {
		b.changedAt = now
	}
	return now.Sub(b.changedAt) >= time.Duration(b.short)
}

// endRound counts one fresh sample towards the round and reports whether
// the round is complete, and then whether most of its samples were
// saturated; a complete round starts the next one.
func (b *baseline) endRound(saturated bool) (done, roundSaturated bool) {
	b.round++
	if saturated {
		b.roundSat++
	}
	if b.round < roundSamples {
		return false, false
	}
	roundSaturated = 2*b.roundSat >= b.round
	b.round, b.roundSat = 0, 0
	return true, roundSaturated
}

// sample feeds one finished, not dropped request (rtt > 0) to the averages.
//
// saturated says the limit was in use (inflight at least half of it):
// such a sample may carry queueing we caused, and a no-load rtt that learned
// from it would let the limit ratchet up under sustained load (Netflix's
// Gradient2 long-term average does). Unsaturated samples within tolerance
// keep the no-load rtt current; probes refresh it when nothing else can.
func (b *baseline) sample(now time.Time, rtt time.Duration, saturated bool) {
	r := float64(rtt)
	b.short += (r - b.short) * shortFactor
	if !saturated && b.short <= tolerance*b.noLoad {
		b.noLoad += (r - b.noLoad) * longFactor
	}
	// A sample stands for at most the time its request was in flight, so
	// an idle gap before it does not count as time out of band.
	dt := min(max(now.Sub(b.last), 0), rtt)
	b.last = now
	if b.short > bandAbove*b.noLoad || b.short < bandBelow*b.noLoad {
		b.offBand += dt
	} else {
		b.offBand = max(b.offBand-dt, 0)
	}
}

// stale reports whether the no-load rtt needs measuring again: latency has
// kept off it, more often than not, for probeAfter — or for
// probeFloorAfter while the limit is already at probe level (atFloor).
func (b *baseline) stale(atFloor bool) bool {
	return b.offBand >= probeAfter || atFloor && b.offBand >= probeFloorAfter
}

// queueing reports whether the short-term rtt exceeds the tolerance.
func (b *baseline) queueing() bool { return b.short > tolerance*b.noLoad }

// clamp bounds x to [lo, hi].
func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }
