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
