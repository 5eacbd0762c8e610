// Package clock is the one time source of sluice's mechanisms. Bulkhead
// queues, breaker bookkeeping and samplers take a Clock so that tests drive
// a Fake and advance time by hand instead of sleeping (as x/time/rate takes
// "now" as an argument and CockroachDB's admission queue a timeSource).
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and makes timers.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that sends the time on C once d has passed.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer sluice uses.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// Real returns the wall clock.
func Real() Clock { return realClock{} }

type realClock struct{}

// IsReal reports whether c is the wall clock, whose times are the ones
// time.Now gives and so may be mixed with them (deadlines for net/http).
func IsReal(c Clock) bool {
	_, ok := c.(realClock)
	return ok
}

// Since is the time passed on c since t. On the wall clock it is
// time.Since, which reads only the monotonic clock when t carries a
// reading: half the cost of Now, whose wall reading is wasted on a
// difference.
func Since(c Clock, t time.Time) time.Duration {
	if _, ok := c.(realClock); ok {
		return time.Since(t)
	}
	return c.Now().Sub(t)
}

func (realClock) Now() time.Time                 { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// Fake is a Clock that moves only when told to. Its timers fire, in
// deadline order, when Advance or Set moves the time to or past them.
type Fake struct {
	mu      sync.Mutex // guards now, timers
	now     time.Time
	timers  []*fakeTimer // armed, not yet fired or stopped
	changed *sync.Cond   // signalled when timers changes
}

// NewFake returns a Fake clock set to t.
func NewFake(t time.Time) *Fake {
	f := &Fake{now: t}
	f.changed = sync.NewCond(&f.mu)
	return f
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer arms a timer that fires when the fake time reaches now+d. A
// timer with d <= 0 fires at once, as time.NewTimer's would.
func (f *Fake) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{f: f, at: f.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- f.now
		return t
	}
	f.timers = append(f.timers, t)
	f.changed.Broadcast()
	return t
}

// Advance moves the time forward by d and fires the timers due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setLocked(f.now.Add(d))
}

// Set moves the time to t (never backwards) and fires the timers due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.After(f.now) {
		f.setLocked(t)
	}
}

func (f *Fake) setLocked(t time.Time) {
	f.now = t
	sort.SliceStable(f.timers, func(i, j int) bool { return f.timers[i].at.Before(f.timers[j].at) })
	kept := f.timers[:0]
	for _, tm := range f.timers {
		if !tm.at.After(t) {
			tm.c <- tm.at // buffered 1, and each timer fires once
		} else {
			kept = append(kept, tm)
		}
	}
	clear(f.timers[len(kept):])
	f.timers = kept
	f.changed.Broadcast()
}

// Timers returns the number of armed timers.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// WaitTimers blocks until at least n timers are armed: a test uses it to
// know that goroutines have reached their timed wait before it advances time.
func (f *Fake) WaitTimers(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.timers) < n {
		f.changed.Wait()
	}
}

type fakeTimer struct {
	f  *Fake
	at time.Time
	c  chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	for i, tm := range t.f.timers {
		if tm == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			t.f.changed.Broadcast()
			return true
		}
	}
	return false
}

// Reporting is a Fake that sends the deadline of every timer it arms on
// Armed, so that a test knows the moment the code under test has begun to
// wait (a queued request arms its max_wait timer) and which deadline it
// waits for. Armed holds one deadline; NewTimer blocks while it is full,
// so the test decides the pace.
type Reporting struct {
	*Fake
	Armed chan time.Time
}

// NewReporting returns a Reporting clock set to t. Armed holds one
// pending deadline; a second arming waits until the test has read it.
func NewReporting(t time.Time) Reporting {
	return Reporting{Fake: NewFake(t), Armed: make(chan time.Time, 1)}
}

// NewTimer arms a Fake timer and reports its deadline on Armed.
func (c Reporting) NewTimer(d time.Duration) Timer {
	at := c.Now().Add(d)
	tm := c.Fake.NewTimer(d)
	c.Armed <- at
	return tm
}
