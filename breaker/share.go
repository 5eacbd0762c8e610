package breaker

import "time"

// OnTrip sets the hook called each time the breaker trips open because of
// its own outcomes: closed to open, and half-open to open after a failed
// probe. openFor is the length of the open period, OpenTimeout. It is never
// called for an open period started or extended by OpenRemote. fn nil
// removes the hook; a trip while no hook is set is not reported later. Safe
// to call concurrently with the breaker's use.
//
// fn runs on the goroutine of a done call that reported a failure (the
// tripping one, or a concurrent one that got there first), before that done
// returns, and after the breaker has released its locks: it may call any
// method of the breaker. It is on the request path, so it must return
// quickly and never block: hand the trip to a channel or goroutine.
func (b *Breaker) OnTrip(fn func(openFor time.Duration)) {
	if fn == nil {
		b.onTrip.Store(nil)
		return
	}
	b.onTrip.Store(&fn)
}

// reportTrips hands the trips counted since the last call to the hook.
func (b *Breaker) reportTrips() {
	n := b.trips.Swap(0)
	fn := b.onTrip.Load()
	if fn == nil {
		return
	}
	for range n {
		(*fn)(b.cfg.OpenTimeout)
	}
}

// OpenRemote opens the breaker for d on its clock, as if it had tripped
// here, and reports whether it changed anything. While the open period
// runs, Allow refuses and OpenFor counts down from d; then the breaker is
// half-open with at most HalfOpenRequests probes, whose outcomes close or
// reopen it as after a local trip. The OnTrip hook is not called.
//
// If an open period is running already, one that ends later than now+d is
// left alone (false), and one that ends earlier is extended to now+d
// (true); an extension is not a new entry into open, so Transitions does not
// count it. d <= 0 does nothing.
//
// Otherwise (closed, or half-open with probes out or not) the gobreaker
// instance is replaced by a fresh one driven open: gobreaker has no way to
// force its open state, and a synthetic failure cannot reach an instance
// whose half-open probe slots are all taken. Requests admitted before the
// replacement report to the instance that admitted them, which no longer
// decides anything: their outcomes belong to a period that ended, as
// gobreaker discards the outcomes of an earlier generation, and none of
// them holds a probe slot of the new half-open period.
func (b *Breaker) OpenRemote(d time.Duration) bool {
	if d <= 0 {
		return false
	}
	var fresh *core
	for {
		b.mu.Lock()
		c := b.cur.Load()
		if extended, open := c.extendLocked(d); open {
			b.mu.Unlock()
			return extended
		}
		if fresh != nil {
			// c's gate is noGate and stays so: only gateClosed writes it
			// outside b.mu, and c's state changes are ignored from now on.
			fresh.gate.Store(int64(addSat(b.since(), d)))
			// Counted before fresh is published, so that whoever sees it
			// (State open, a probe admitted) also sees the entry counted,
			// as gobreaker's lock ensures for a local trip.
			b.transitions[StateOpen].Add(1)
			b.cur.Store(fresh)
			b.mu.Unlock()
			return true
		}
		// Built without b.mu: driving it open calls its onStateChange,
		// which takes b.mu (and ignores it, as it is not cur).
		b.mu.Unlock()
		fresh = b.openCore()
	}
}

// extendLocked extends c's running open period to end at now+d if it would
// end earlier. open reports whether an open period was running; if not, c's
// gate is noGate (a passed one is settled, as gateClosed does). b.mu must be
// held.
func (c *core) extendLocked(d time.Duration) (extended, open bool) {
	for {
		if !c.gateClosed() {
			return false, false
		}
		g, now := c.gate.Load(), int64(c.b.since())
		if g == noGate || now >= g {
			continue // over since gateClosed looked: settle it
		}
		until := int64(addSat(time.Duration(now), d))
		if until <= g {
			return false, true
		}
		// Fails only if a gateClosed found the period over meanwhile.
		if c.gate.CompareAndSwap(g, until) {
			return true, true
		}
	}
}

// openCore returns a new core whose gobreaker is open, with fresh counts,
// for OpenRemote to publish. The one synthetic failure that trips it is in
// counts that the trip clears. Its gate is left to the caller.
func (b *Breaker) openCore() *core {
	c := b.newCore()
	c.forced = true
	done, err := c.cb.Allow()
	if err != nil {
		// A new gobreaker is closed, and closed admits everything.
		panic("breaker: a new gobreaker refused a request: " + err.Error())
	}
	done(errFailure)
	c.forced = false
	return c
}
