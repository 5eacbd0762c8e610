// Package adaptive computes concurrency limits that follow an upstream's
// measured latency, so that nobody has to hand-tune max_concurrent. It
// implements two Limiters after Netflix's concurrency-limits library
// (AIMDLimit, Gradient2Limit) and borrows the no-load latency measurement of
// Envoy's adaptive concurrency filter (gradient controller).
//
// The caller reports every finished request through OnSample with the time
// it finished, how long it held its slot (rtt: upstream service time, queue
// wait excluded), how many slots were held (inflight), and whether it failed
// in a way that signals overload (dropped). Time is an argument: nothing here
// reads a clock, so tests replay sample streams exactly. Each limiter is a
// mutex around a few floats, allocates nothing per sample, and publishes its
// limit through an atomic so that Limit takes no lock.
//
// # The latency signals
//
// Both algorithms read two averages of the rtt, kept by baseline:
//
//	short   EWMA over 10 samples (factor 2/(n+1), Netflix ExpAvgMeasurement):
//	        what the upstream does now.
//	noLoad  what the upstream does when we are not queueing at it: Netflix's
//	        long-term rtt (EWMA over 600 samples), measured and kept honest
//	        as Envoy keeps its minRTT (below).
//
// The upstream counts as queueing when short > tolerance × noLoad, with
// tolerance = 1.5 (Netflix Gradient2Limit's rttTolerance).
//
// # Rounds
//
// The limit is decided once per round, not per sample, like Netflix's
// WindowedLimit (windows of at least 10 samples) and Envoy's sampling
// window. A round is 10 counted samples; after the limit changes, samples
// that finish within one short-term rtt of the change are not counted: they
// are of requests admitted under the old limit, and mostly show its
// latency. Without that hold-off, each of the requests in flight when the
// latency rose would cut the limit again: on a real upstream whose capacity
// halved, a per-sample AIMD fell to Min and lost half of the goodput, and
// a per-sample Gradient2 swung between 10 and 40 every second. The hold-off
// is by time, not by each request's start: of the requests admitted after
// a change the fastest finish first, and a round of them alone would read
// the latency low (in the noisy simulation the limit crept up to 2-3C that
// way). Dropped samples (and AIMD's 5× timeouts) cut at once, without
// waiting for the round, but the hold-off applies to them as well: one cut
// per round trip, as TCP halves its window once per window of losses.
//
// # Keeping noLoad honest
//
// Netflix feeds every sample into the long-term average. Under sustained
// load, with every slot in use, that average learns our own queueing: the
// limit settles where short ≈ 1.5 × long, long then drifts up towards
// short, the limit follows, and the two ratchet up together until Max.
// (Netflix's recovery rule, long *= 0.95 when long > 2 × short, only acts
// on the way down.) A per-sample port of Gradient2Limit, run in the tests'
// simulation against an upstream of capacity 20, climbs to a Max of 1000
// within about 2,000 samples. This package prevents that in three ways:
//
//   - noLoad learns (EWMA over 600 samples) only from samples that cannot
//     carry queueing we caused: not saturated (inflight < limit/2, Netflix's
//     app-limited condition) and with short within tolerance.
//   - A probe measures noLoad directly, as Envoy measures its minRTT: it
//     pins the limit to 4 (BBR's ProbeRTT window of 4 packets; Envoy pins
//     3), clamped to [Min, Max], ignores requests that started before the probe
//     (Envoy ignores samples from before its minRTT window), averages the
//     next 20, sets noLoad and short to that mean and restores the limit.
//     The mean rather than Envoy's p50, because noLoad is compared with
//     short, an average: for skewed latencies mean/median alone can exceed
//     the tolerance.
//   - A probe runs at the first sample (the limit starts at Initial, which
//     may already exceed the upstream's capacity, so the first samples say
//     nothing about its no-load latency), and whenever noLoad looks stale:
//     short has spent 10 s more out of the band [0.5, 1.25] × noLoad than
//     in it (BBR lets its min_rtt expire after 10 s; 1.25 is Envoy's
//     default 25% minRTT buffer for normal variance). When the limit is
//     already at probe level, 1 s is enough (Envoy re-measures once the
//     limit has sat at its minimum for 5 windows): backing off further
//     cannot help, so the latency there is the upstream's no-load latency.
//
// A probe fixes what learning cannot: a start above capacity, an upstream
// that became slower at every concurrency (the limit would otherwise stay
// at its floor), one that became faster (the limit would queue up to 1.5×
// a stale noLoad). Netflix's recovery rule is left out: noLoad no longer
// drifts up, so there is nothing to recover from, and under saturation a
// pull that only goes down walks noLoad down with every noise dip of short
// (in the simulation with heavy-tailed latency, AIMD's goodput fell from
// 0.88 to under 0.5 with it). Its case, short under half of noLoad, counts
// towards a probe instead (the band's lower bound). The band, not a single
// threshold crossing, decides staleness, so noise does not trigger probes
// while latency sits at noLoad. Under sustained overload the operating
// point lies above the band, so a probe runs every 10 s or so; each costs
// about one rtt of draining plus 20 samples at concurrency 4 (in the
// package's simulation, about 1% of goodput).
//
// # AIMD
//
// After Netflix AIMDLimit:
//
//	at a sample:      if dropped || rtt > 5 × noLoad:  limit = max(Min, floor(limit × 0.9))
//	at a round's end: if short > 1.5 × noLoad:          limit = max(Min, floor(limit × 0.9))
//	                  else if most samples had 2×inflight ≥ limit:
//	                                                    limit = min(Max, limit + 1)
//
// The backoff ratio 0.9 and the growth condition (the limit grows only while
// in use) are Netflix's; the increase is one per round (TCP's additive
// increase of one per round trip) where Netflix adds one per sample.
// Netflix's latency guard is a fixed 5 s timeout; here it is 5 × noLoad, and a second, smoothed guard compares short with the
// Gradient2 tolerance. The first catches a single stalled request, the
// second a standing queue, and only the second makes AIMD settle near the
// upstream's capacity: with rtt = service × inflight/capacity beyond
// capacity C, the 5× guard alone would let the limit sit near 5C. With both,
// the limit saw-tooths between about 0.9 × 1.5C and 1.5C.
//
// AIMD cuts by a fixed ratio whatever the size of the latency rise, and
// grows back by one per round: after a deep cut (a probe, a capacity
// change) it takes about one round per slot to grow back. Prefer
// Gradient2, which weighs latency proportionally.
//
// # Gradient2
//
// After Netflix Gradient2Limit, once per round:
//
//	at a sample:      if dropped: limit = max(Min, floor(limit × 0.9))
//	at a round's end: if most samples had 2×inflight < limit: unchanged
//	                  (app-limited: no evidence)
//	                  else:
//	                      gradient = clamp(1.25 × noLoad / short, 0.5, 1)
//	                      newLimit = limit × gradient + sqrt(limit)
//	                      limit    = clamp(limit × 0.8 + newLimit × 0.2, Min, Max)
//
// The gradient, its bounds and the smoothing 0.2 are Netflix's; the buffer
// 1.25 is Envoy's default 25% minRTT buffer (Envoy's formula is the same
// gradient, bounded to [0.5, 2]), where Netflix tolerates 1.5: that settled
// the limit near 1.9C in the bench, a line at the upstream as long as its
// capacity, and an admitted p99 at the bench target's limit of 3× the
// service time when the capacity halved; with 1.25 it was 2.3×
// (docs/BENCHMARKS.md). The headroom sqrt(limit) is Envoy's; Netflix's
// default is a constant 4. sqrt grows the limit faster
// when it is large, and at the gradient's floor (0.5) it lets the limit
// shrink to 4 instead of 8. Netflix's Gradient2 ignores dropped samples:
// their rtt is no service time, and a fast 503 would even read as good
// latency. Here a drop backs off as in AIMD.
//
// # Where the limits settle
//
// In the closed-loop model of the tests (an upstream of capacity C whose rtt
// is service × max(1, inflight/C), with every slot in use) the fixed points
// follow from the formulas above:
//
//	AIMD       between 0.9 × 1.5C and 1.5C     (C=20: 27..31, C=10: 13..16)
//	Gradient2  L = 1.25C + sqrt(L)             (C=20: 30.5,   C=10: 16.6)
//
// Both keep a standing queue at the upstream on purpose: the tolerance and
// the buffer are room for normal variance, and a limit at exactly C would lose goodput to
// every fluctuation. The admitted latency then sits near 1.5× (AIMD) and
// 1.5-1.7× (Gradient2) the service time. Min must be below the upstream's
// capacity: below a capacity of about 4 (the probe level) the no-load rtt
// cannot be measured and the limit settles higher relative to capacity.
//
// # References
//
//   - Netflix concurrency-limits, concurrency-limits-core:
//     limit/AIMDLimit.java, limit/Gradient2Limit.java,
//     limit/measurement/ExpAvgMeasurement.java, limit/WindowedLimit.java.
//   - Envoy, HTTP filters, Adaptive Concurrency: the gradient controller
//     (minRTT calculation, gradient, concurrency limit headroom), and
//     source/extensions/filters/http/adaptive_concurrency/controller/
//     gradient_controller.cc.
//   - BBR congestion control: Linux net/ipv4/tcp_bbr.c (min_rtt is a
//     10-second windowed minimum; PROBE_RTT holds the window at 4 packets)
//     and draft-cardwell-iccrg-bbr-congestion-control (ProbeRTT).
package adaptive
