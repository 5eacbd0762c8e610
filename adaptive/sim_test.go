package adaptive

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// upstream is the simulation's synthetic upstream: it serves c requests at
// once, each in service; beyond c they share it, so latency grows with the
// excess, rtt = service × max(1, inflight/c), and throughput stays at
// c/service.
type upstream struct {
	service time.Duration
	c       int
}

func (u upstream) rtt(inflight int) time.Duration {
	return time.Duration(float64(u.service) * math.Max(1, float64(inflight)/float64(u.c)))
}

// phase is a stretch of simulated time against one upstream.
type phase struct {
	up  upstream
	dur time.Duration
	// settleIn is how long the limit may take to settle; 10 s (the bench
	// target of docs/BENCHMARKS.md's scenario (b)) when zero.
	settleIn time.Duration
}

// phaseStats describes how a limiter did in one phase.
type phaseStats struct {
	samples int
	entered int // samples until the limit was first in range (not at probe level)
	// settled is how many samples, and how long, it took until the mean
	// limit over every later window of 100 samples was within range (a
	// probe, about 25 samples at 4, moves that mean by a quarter of the
	// limit at most); settled < 0: the last window was out of range.
	settled   int
	settledIn time.Duration
	mean      float64 // of the limit over the phase's last 10 s
	goodput   float64 // completions over the last 10 s / the upstream's capacity
	p99       float64 // of rtt over the last 10 s, in service times
}

// window is the span, in samples, of the moving mean that decides settling.
const window = 100

// sim drives a limiter in closed loop: demand always exceeds the limit, so
// every slot is in use (inflight = the limit), and requests finish one
// every rtt/inflight. With noise > 0 each rtt is scaled by a log-normal
// factor of mean 1 (sigma noise) from a seeded generator.
type sim struct {
	l     Limiter
	now   time.Time
	noise float64
	rng   *rand.Rand
}

// run plays ph and reports how the limiter did; lo and hi bound the range
// it should settle in.
func (s *sim) run(ph phase, lo, hi float64) phaseStats {
	start := s.now
	tail := start.Add(ph.dur - 10*time.Second)
	var (
		st         phaseStats
		ring       [window]int
		ringSum    int
		entered    = -1
		lastOut    = -1 // index of the last sample whose window was out of range
		lastOutAt  time.Duration
		tailSum    float64
		tailRTT    []float64
		tailOpened time.Time
	)
	for i := 0; s.now.Sub(start) < ph.dur; i++ {
		lim := s.l.Limit()
		mean := ph.up.rtt(lim)
		rtt := mean
		if s.noise > 0 {
			rtt = time.Duration(float64(mean) * math.Exp(s.rng.NormFloat64()*s.noise-s.noise*s.noise/2))
		}
		s.now = s.now.Add(mean / time.Duration(lim))
		got, _ := s.l.OnSample(s.now, rtt, lim, false)
		st.samples++
		if entered < 0 && got != probeLimit && float64(got) >= lo && float64(got) <= hi {
			entered = i + 1
		}
		ringSum += got - ring[i%window]
		ring[i%window] = got
		if m := float64(ringSum) / window; i >= window-1 && (m < lo || m > hi) {
			lastOut, lastOutAt = i, s.now.Sub(start)
		}
		if !s.now.Before(tail) {
			if len(tailRTT) == 0 {
				tailOpened = s.now
			}
			tailSum += float64(got)
			tailRTT = append(tailRTT, float64(rtt)/float64(ph.up.service))
		}
	}
	st.entered = entered
	st.settled, st.settledIn = lastOut+1, lastOutAt
	if lastOut == st.samples-1 {
		st.settled = -1
	}
	st.mean = tailSum / float64(len(tailRTT))
	capacity := s.now.Sub(tailOpened).Seconds() * float64(ph.up.c) / ph.up.service.Seconds()
	st.goodput = float64(len(tailRTT)) / capacity
	slices.Sort(tailRTT)
	st.p99 = tailRTT[len(tailRTT)*99/100]
	return st
}

// settleRange is where each algorithm should settle against an upstream of
// capacity c. AIMD saw-tooths between 0.9 × 1.5c and 1.5c; Gradient2's
// fixed point is L = 1.25c + sqrt(L) (1.53c for c = 20, 1.66c for c = 10):
// see "Where the limits settle" in the package documentation.
func settleRange(alg string, c int) (lo, hi float64) {
	if alg == "gradient2" {
		return 0.7 * float64(c), 1.8 * float64(c)
	}
	return 0.7 * float64(c), 1.6 * float64(c)
}

// checkPhase asserts the bench targets of docs/BENCHMARKS.md on the
// phase's last 10 s (goodput >= 90% of capacity, admitted p99 <= 3× the
// service time) and that the limit settled in range within 10 s.
func checkPhase(t *testing.T, alg, name string, ph phase, st phaseStats) {
	t.Helper()
	lo, hi := settleRange(alg, ph.up.c)
	t.Logf("%-22s C=%-2d service=%-4v in range after %4d samples, settled after %5d (%5.2fs); last 10 s: mean limit %5.1f (%.2fC), goodput %.3f, p99 rtt %.2f× service",
		name, ph.up.c, ph.up.service, st.entered, st.settled, st.settledIn.Seconds(), st.mean, st.mean/float64(ph.up.c), st.goodput, st.p99)
	switch {
	case st.entered < 0:
		t.Errorf("%s: limit never in [%.1f, %.1f]", name, lo, hi)
	case st.settled < 0:
		t.Errorf("%s: limit still out of [%.1f, %.1f] at the end", name, lo, hi)
	case st.settledIn > cmp.Or(ph.settleIn, 10*time.Second):
		t.Errorf("%s: took %v to settle in [%.1f, %.1f], want <= %v", name, st.settledIn, lo, hi, cmp.Or(ph.settleIn, 10*time.Second))
	case st.mean < lo || st.mean > hi:
		t.Errorf("%s: mean limit %.1f outside [%.1f, %.1f]", name, st.mean, lo, hi)
	case st.goodput < 0.9:
		t.Errorf("%s: goodput %.3f of capacity, want >= 0.9", name, st.goodput)
	case st.p99 > 3:
		t.Errorf("%s: p99 rtt %.2f× service, want <= 3", name, st.p99)
	}
}

// TestSimulationCapacityHalves is the unit-level version of the bench's
// scenario (b) (docs/BENCHMARKS.md): starting from sluice's default limit of 50, above the
// upstream's capacity of 20, the limit settles near it; when the capacity
// halves to 10, it settles near the new one.
func TestSimulationCapacityHalves(t *testing.T) {
	runPhases(t, 50, []namedPhase{
		{"capacity 20", phase{up: upstream{20 * time.Millisecond, 20}, dur: 30 * time.Second}},
		{"capacity halves to 10", phase{up: upstream{20 * time.Millisecond, 10}, dur: 30 * time.Second}},
	})
}

// TestSimulationRegimes changes the upstream in the ways the no-load rtt
// must follow: slower at every concurrency, more capacity, faster.
func TestSimulationRegimes(t *testing.T) {
	runPhases(t, 10, []namedPhase{
		{"start below capacity", phase{up: upstream{20 * time.Millisecond, 20}, dur: 30 * time.Second}},
		{"service time triples", phase{up: upstream{60 * time.Millisecond, 20}, dur: 30 * time.Second}},
		// A faster upstream shows only as latency out of band for
		// probeAfter, then a probe measures it.
		{"service time back", phase{up: upstream{20 * time.Millisecond, 20}, dur: 30 * time.Second, settleIn: probeAfter + 5*time.Second}},
		{"capacity doubles", phase{up: upstream{20 * time.Millisecond, 40}, dur: 30 * time.Second}},
		{"service time halves", phase{up: upstream{10 * time.Millisecond, 40}, dur: 30 * time.Second}},
	})
}

type namedPhase struct {
	name string
	phase
}

// runPhases plays phases in turn against each algorithm, starting at the
// limit initial, and checks each with checkPhase.
func runPhases(t *testing.T, initial int, phases []namedPhase) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			s := &sim{l: alg.new(Options{Initial: initial, Min: 1, Max: 1000}), now: epoch}
			for _, ph := range phases {
				lo, hi := settleRange(alg.name, ph.up.c)
				checkPhase(t, alg.name, ph.name, ph.phase, s.run(ph.phase, lo, hi))
			}
		})
	}
}

// TestSimulationNoRatchet runs ten minutes of sustained overload with
// noisy latency: the limit must not drift up (as Netflix's Gradient2 does
// when its long-term rtt learns the queueing the limit causes) or down.
// The first two minutes are left to settle (with noise, Gradient2 nears its
// fixed point from below over a few minutes); after that, every minute's
// mean stays in the settle range, and the last four minutes' mean within
// 15 % of minutes three to six.
func TestSimulationNoRatchet(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			s := &sim{l: alg.new(Options{Initial: 50, Min: 1, Max: 1000}), now: epoch,
				noise: 0.5, rng: rand.New(rand.NewPCG(1, 2))}
			up := upstream{20 * time.Millisecond, 20}
			lo, hi := settleRange(alg.name, up.c)
			var means []float64
			for range 10 {
				st := s.run(phase{up: up, dur: time.Minute}, 0, math.Inf(1))
				means = append(means, math.Round(st.mean*10)/10)
				if st.goodput < 0.9 {
					t.Errorf("goodput %.3f of capacity, want >= 0.9", st.goodput)
				}
			}
			t.Logf("mean limit over the last 10 s of each minute: %v", means)
			for i, m := range means[2:] {
				if m < lo || m > hi {
					t.Errorf("minute %d: mean limit %.1f outside [%.1f, %.1f]", i+3, m, lo, hi)
				}
			}
			mid, last := mean(means[2:6]), mean(means[6:])
			if math.Abs(last-mid) > 0.15*mid {
				t.Errorf("mean limit drifted from %.1f (minutes 3-6) to %.1f (minutes 7-10)", mid, last)
			}
		})
	}
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}
