package overload

import (
	"fmt"
	"time"
)

// Shed is how much the saturation detector sheds, lowest classes first.
type Shed uint8

const (
	// ShedNone: nothing is shed.
	ShedNone Shed = iota
	// ShedSheddable: requests of class sheddable are refused.
	ShedSheddable
	// ShedDefault: requests of classes sheddable and default are refused;
	// critical ones still pass. The detector never goes further.
	ShedDefault
)

// String names the level for logs and the API: "none", "sheddable" or
// "default" (the highest class shed).
func (s Shed) String() string {
	switch s {
	case ShedNone:
		return "none"
	case ShedSheddable:
		return "sheddable"
	case ShedDefault:
		return "default"
	}
	return fmt.Sprintf("Shed(%d)", uint8(s))
}

// Classes names the classes refused at this level, lowest first.
func (s Shed) Classes() []string {
	switch s {
	case ShedSheddable:
		return []string{"sheddable"}
	case ShedDefault:
		return []string{"sheddable", "default"}
	}
	return []string{}
}

// DetectorOptions tune the saturation detector. Zero fields take the
// defaults documented on each.
type DetectorOptions struct {
	// Threshold is the p99 scheduling latency above which a sample counts
	// as saturated. Default 10ms: a goroutine made runnable waits that
	// long for a CPU only when every P is busy with a backlog, far beyond
	// the microseconds of a healthy process, and it is still short beside
	// the latency a user would notice.
	Threshold time.Duration
	// EnterAfter is the number of saturated samples in a row that start
	// shedding sheddable requests. Default 2, so that one slow sample (a
	// GC pause, a burst of wakeups) sheds nothing.
	EnterAfter int
	// EscalateAfter is how long saturation must go on while sheddable
	// requests are shed before default ones are too. Default 1s.
	EscalateAfter time.Duration
	// LeaveAfter is how long samples must stay at or under the threshold
	// before the detector steps down one level. Default 1s.
	LeaveAfter time.Duration
}

// detector is the saturation state machine (see the package
// documentation). It is driven only by Manager.Sample, under its mutex.
type detector struct {
	DetectorOptions

	level     Shed
	hot       int       // saturated samples in a row
	hotSince  time.Time // the first of them
	coolSince time.Time // the first of the current run of calm samples; zero while saturated
	since     time.Time // when level was entered
}

func newDetector(o DetectorOptions) detector {
	if o.Threshold <= 0 {
		o.Threshold = 10 * time.Millisecond
	}
	if o.EnterAfter <= 0 {
		o.EnterAfter = 2
	}
	if o.EscalateAfter <= 0 {
		o.EscalateAfter = time.Second
	}
	if o.LeaveAfter <= 0 {
		o.LeaveAfter = time.Second
	}
	return detector{DetectorOptions: o}
}

// observe takes the p99 of one sample, taken at now, and returns the
// level to shed at.
func (d *detector) observe(now time.Time, p99 time.Duration) Shed {
	if p99 > d.Threshold {
		d.coolSince = time.Time{}
		if d.hot == 0 {
			d.hotSince = now
		}
		d.hot++
		switch d.level {
		case ShedNone:
			if d.hot >= d.EnterAfter {
				d.level, d.since = ShedSheddable, now
			}
		case ShedSheddable:
			// Saturated all along since shedding began (or since a calm
			// spell too short to step down ended): shedding the
			// sheddable class was not enough.
			from := d.since
			if d.hotSince.After(from) {
				from = d.hotSince
			}
			if now.Sub(from) >= d.EscalateAfter {
				d.level, d.since = ShedDefault, now
			}
		}
		return d.level
	}
	d.hot = 0
	if d.coolSince.IsZero() {
		d.coolSince = now
	}
	if d.level != ShedNone && now.Sub(d.coolSince) >= d.LeaveAfter {
		// One level per calm second: the next step down waits for
		// another, so load comes back in the order it was shed.
		d.level--
		d.since, d.coolSince = now, now
	}
	return d.level
}
