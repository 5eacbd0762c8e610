package adaptive

import (
	"math/rand/v2"
	"testing"
	"time"
)

const (
	fast = 20 * time.Millisecond
	slow = 60 * time.Millisecond
)

// TestProbeIgnoresEarlierRequests checks that the first probe measures only
// requests admitted under its own limit: samples of requests that started
// before it (they ran at the old concurrency) keep it running.
func TestProbeIgnoresEarlierRequests(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			l := alg.new(Options{Initial: 50, Min: 1, Max: 100})
			now := epoch
			if got, _ := l.OnSample(now, fast, 50, false); got != probeLimit {
				t.Fatalf("first sample: limit %d, want the probe's %d", got, probeLimit)
			}
			for i := range 10 * probeSamples {
				now = now.Add(time.Millisecond)
				// Each took longer than the probe has been running.
				if got, _ := l.OnSample(now, now.Sub(epoch)+time.Millisecond, 50, false); got != probeLimit {
					t.Fatalf("sample %d of an earlier request: limit %d, want %d", i, got, probeLimit)
				}
			}
			for i := range probeSamples {
				now = now.Add(fast)
				got, _ := l.OnSample(now, fast, probeLimit, false)
				want := probeLimit
				if i == probeSamples-1 {
					want = 50 // the probe ends and restores the limit
				}
				if got != want {
					t.Fatalf("probe sample %d: limit %d, want %d", i, got, want)
				}
			}
		})
	}
}

// TestFlatLatencyGrowsToMax: latency that does not rise with the limit
// lets the limit grow to Max.
func TestFlatLatencyGrowsToMax(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			o := Options{Initial: 10, Min: 1, Max: 200}
			d := newDriver(t, alg.new(o))
			d.warm(fast, o)
			el := d.within(10*time.Second, fast, "at Max", func(l int) bool { return l == 200 })
			t.Logf("10 -> 200 in %v", el)
			if got := d.atLimit(1000, fast); got != 200 {
				t.Fatalf("limit %d after 1000 more samples, want it to stay at Max 200", got)
			}
		})
	}
}

// TestLatencyRiseBacksOffAndRecovers: when latency triples while every
// slot is in use, the limit backs off within a few samples; when it falls
// back, the limit grows again.
func TestLatencyRiseBacksOffAndRecovers(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			o := Options{Initial: 200, Min: 1, Max: 200}
			d := newDriver(t, alg.new(o))
			d.warm(fast, o)
			d.atLimit(100, fast)
			el := d.within(2*time.Second, slow, "halved", func(l int) bool { return l <= 100 })
			t.Logf("200 -> <=100 in %v of samples of %v", el, slow)
			el = d.within(5*time.Second, slow, "at most 20", func(l int) bool { return l <= 20 })
			t.Logf("<=100 -> <=20 in %v more of samples of %v", el, slow)
			low := d.l.Limit()
			el = d.within(10*time.Second, fast, "back at Max", func(l int) bool { return l == 200 })
			t.Logf("%d -> 200 in %v of samples of %v", low, el, fast)
		})
	}
}

// TestSlowerUpstreamIsReprobed: when the upstream gets slower at every
// concurrency, backing off cannot bring latency down. Once the limit is at
// probe level, a probe measures the new no-load latency and the limit grows
// again, rather than staying at its floor. (It grows back by the
// algorithm's own increase, one per round for AIMD, so "soon" means
// within probeAfter, not at once.)
func TestSlowerUpstreamIsReprobed(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			o := Options{Initial: 100, Min: 1, Max: 100}
			d := newDriver(t, alg.new(o))
			d.warm(fast, o)
			start := d.now
			d.within(5*time.Second, slow, "at probe level", func(l int) bool { return l <= probeLimit })
			el := d.within(probeAfter, slow, "back at Max", func(l int) bool { return l == 100 })
			t.Logf("at Max again after %v more, %v after latency rose", el, d.now.Sub(start))
		})
	}
}

// TestAppLimitedDoesNotGrow: with inflight far below the limit the samples
// say nothing about the limit, so it does not grow.
func TestAppLimitedDoesNotGrow(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			o := Options{Initial: 50, Min: 1, Max: 1000}
			d := newDriver(t, alg.new(o))
			d.warm(fast, o)
			for i := range 5000 {
				if got := d.sample(fast, 1+i%20, false); got != 50 { // inflight < 50/2
					t.Fatalf("sample %d: limit %d, want 50", i, got)
				}
			}
		})
	}
}

// TestDroppedBacksOffMultiplicatively: each dropped sample multiplies the
// limit by 0.9, rounding down, never below Min — also while app-limited —
// but at most once per short-term rtt: drops that finish sooner after a cut
// are of requests admitted under the old limit.
func TestDroppedBacksOffMultiplicatively(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			o := Options{Initial: 100, Min: 5, Max: 100}
			d := newDriver(t, alg.new(o))
			d.warm(fast, o)
			want := []int{90, 81, 72, 64, 57, 51, 45, 40, 36, 32, 28, 25, 22, 19, 17, 15, 13, 11, 9, 8, 7, 6, 5, 5, 5}
			for i, w := range want {
				inflight := 100
				if i%2 == 1 {
					inflight = 1
				}
				d.now = d.now.Add(fast) // the hold-off of the previous cut is over
				if got := d.sample(fast, inflight, true); got != w {
					t.Fatalf("drop %d: limit %d, want %d", i+1, got, w)
				}
				// More drops within the hold-off change nothing.
				for j := range 5 {
					if got := d.sample(fast, 100, true); got != w {
						t.Fatalf("drop %d, %d more within %v: limit %d, want %d", i+1, j+1, fast, got, w)
					}
				}
			}
		})
	}
}

// TestLimitStaysWithinBounds is a property test: whatever the sample
// stream — any rtt, including zero, negative and huge ones, any inflight,
// drops, time that stalls or steps back — the limit stays in [Min, Max],
// and OnSample's answer agrees with Limit.
func TestLimitStaysWithinBounds(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			for seed := range uint64(100) {
				rng := rand.New(rand.NewPCG(seed, 9))
				lo := 1 + rng.IntN(10)
				hi := lo + rng.IntN(300)
				initial := lo + rng.IntN(hi-lo+1)
				l := alg.new(Options{Initial: initial, Min: lo, Max: hi})
				now := epoch
				prev := initial
				for i := range 3000 {
					now = now.Add(time.Duration(rng.Int64N(int64(50*time.Millisecond))) - 5*time.Millisecond)
					var rtt time.Duration
					switch rng.IntN(10) {
					case 0:
						rtt = -time.Duration(rng.Int64N(int64(time.Second)))
					case 1:
						rtt = 0
					case 2:
						rtt = time.Duration(rng.Int64N(int64(time.Hour)))
					default:
						rtt = time.Duration(1 + rng.Int64N(int64(200*time.Millisecond)))
					}
					inflight := rng.IntN(2*hi + 2)
					got, changed := l.OnSample(now, rtt, inflight, rng.IntN(20) == 0)
					if got < lo || got > hi {
						t.Fatalf("seed %d sample %d: limit %d outside [%d, %d]", seed, i, got, lo, hi)
					}
					if got != l.Limit() || changed != (got != prev) {
						t.Fatalf("seed %d sample %d: OnSample = (%d, %v), Limit %d, previous %d", seed, i, got, changed, l.Limit(), prev)
					}
					prev = got
				}
			}
		})
	}
}

// TestOneCutPerRoundTrip: when latency jumps, the requests already in
// flight all finish slow. They were admitted under the old limit, so
// together they justify one cut, not one each: a limiter that cut per
// sample collapsed to Min in the bench when the upstream's capacity halved.
func TestOneCutPerRoundTrip(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			o := Options{Initial: 100, Min: 1, Max: 100}
			d := newDriver(t, alg.new(o))
			d.warm(fast, o)
			d.atLimit(200, fast)
			var cuts []int
			for range 100 { // 100 slow requests, all finishing within 20 ms
				before := d.l.Limit()
				d.now = d.now.Add(fast / 100)
				if got, _ := d.l.OnSample(d.now, slow, 100, false); got != before {
					cuts = append(cuts, got)
				}
			}
			if len(cuts) != 1 || cuts[0] >= 100 {
				t.Fatalf("limits after each cut: %v, want exactly one cut", cuts)
			}
			t.Logf("one cut, to %d", cuts[0])
		})
	}
}
