package adaptive

import (
	"testing"
	"time"
)

// algorithms lists the constructors, so each behaviour is checked for both.
var algorithms = []struct {
	name string
	new  func(Options) Limiter
}{
	{"aimd", NewAIMD},
	{"gradient2", NewGradient2},
}

// epoch is where every test's fake time starts.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// driver feeds a limiter samples on a fake timeline: with inflight requests
// of rtt each, one finishes every rtt/inflight.
type driver struct {
	t   testing.TB
	l   Limiter
	now time.Time
}

func newDriver(t testing.TB, l Limiter) *driver { return &driver{t: t, l: l, now: epoch} }

// sample feeds one sample and checks the limiter's own invariants.
func (d *driver) sample(rtt time.Duration, inflight int, dropped bool) int {
	d.t.Helper()
	d.now = d.now.Add(rtt / time.Duration(max(inflight, 1)))
	before := d.l.Limit()
	got, changed := d.l.OnSample(d.now, rtt, inflight, dropped)
	if now := d.l.Limit(); got != now || changed != (got != before) {
		d.t.Fatalf("OnSample = (%d, %v), Limit %d before and %d after", got, changed, before, now)
	}
	return got
}

// atLimit feeds n samples of rtt with every slot in use.
func (d *driver) atLimit(n int, rtt time.Duration) int {
	d.t.Helper()
	for range n {
		d.sample(rtt, d.l.Limit(), false)
	}
	return d.l.Limit()
}

// until feeds samples of rtt with every slot in use until cond holds of the
// limit, and returns how many it took; it fails the test after max.
func (d *driver) until(max int, rtt time.Duration, what string, cond func(limit int) bool) int {
	d.t.Helper()
	for i := 1; i <= max; i++ {
		if cond(d.sample(rtt, d.l.Limit(), false)) {
			return i
		}
	}
	d.t.Fatalf("limit %d after %d samples of %v: never %s", d.l.Limit(), max, rtt, what)
	return 0
}

// within feeds samples of rtt with every slot in use until cond holds of
// the limit, and returns the fake time it took; it fails the test after
// max of fake time.
func (d *driver) within(max time.Duration, rtt time.Duration, what string, cond func(limit int) bool) time.Duration {
	d.t.Helper()
	start := d.now
	for d.now.Sub(start) <= max {
		if cond(d.sample(rtt, d.l.Limit(), false)) {
			return d.now.Sub(start)
		}
	}
	d.t.Fatalf("limit %d after %v of samples of %v: never %s", d.l.Limit(), max, rtt, what)
	return 0
}

// warm runs the first probe at rtt and checks that the limit is back at
// o.Initial afterwards.
func (d *driver) warm(rtt time.Duration, o Options) {
	d.t.Helper()
	level := min(o.Max, max(o.Min, probeLimit))
	if got := d.sample(rtt, d.l.Limit(), false); got != level {
		d.t.Fatalf("first sample: limit %d, want the probe's %d", got, level)
	}
	initial := o.Initial
	d.until(probeSamples+probeLimit+2, rtt, "restored after the first probe", func(l int) bool { return l == initial })
}
