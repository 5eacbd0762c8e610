// Package breaker gives each upstream a circuit breaker, built on
// github.com/sony/gobreaker/v2's TwoStepCircuitBreaker.
//
// # Model
//
//	           ConsecutiveFailures failures in a row, or
//	           failures/counted >= FailureRatio once counted >= MinRequests
//	┌────────┐ ───────────────────────────────────────────────────▶ ┌──────┐
//	│ closed │                                                       │ open │
//	└────────┘ ◀─┐                                                   └──────┘
//	             │ HalfOpenRequests probes                     OpenTimeout │ ▲
//	             │ all succeed            ┌───────────┐        on clk      │ │ any probe
//	             └─────────────────────── │ half-open │ ◀──────────────────┘ │ fails
//	                                      └───────────┘ ─────────────────────┘
//
// "counted" is successes plus failures: a request whose outcome is Ignored
// (the client cancelled; see Classify) counts neither way, and neither does a
// request still in flight. gobreaker's Counts.Requests is incremented when a
// request is admitted, so Requests − TotalExclusions would also count the
// in-flight requests and dilute the failure ratio exactly when a slow
// upstream piles them up; the trip rule uses TotalSuccesses + TotalFailures.
// gobreaker evaluates the rule only when a failure is recorded.
//
// Half-open admits HalfOpenRequests probes at a time (an Ignored probe frees
// its slot); the breaker closes once that many probes have succeeded in a row
// and reopens on the first failed one. Outcomes reported for requests
// admitted before the last state change are discarded by gobreaker.
//
// # Time
//
// gobreaker reads time.Now itself and has no clock hook, but the open period
// must run on the injected clock.Clock: tests step it with a Fake, and
// Retry-After must be the exact time left. So the wrapper, not gobreaker, is
// the authority on the open period:
//
//   - gobreaker gets a 1ns Timeout, so from its point of view every open
//     period is over at once;
//   - when gobreaker enters open, OnStateChange records the gate,
//     clk.Now()+OpenTimeout. The callback runs under gobreaker's lock, so it
//     does atomic stores and one clock read and never calls back in;
//   - while the gate is in the future, Allow refuses and State reports open
//     without touching gobreaker. Once it has passed, gobreaker's own
//     Allow (its 1ns timeout long gone) moves to half-open and admits probes.
//
// gobreaker may still move to half-open early: any call into it during the
// open period, such as the done of a request admitted before the trip,
// finds the 1ns timeout expired. That is harmless because nothing reaches
// gobreaker's Allow while the gate is closed, except a caller that checked
// the gate just before the trip; Allow therefore checks the gate again after
// gobreaker admits, and hands the slot back as Ignored if the breaker opened
// meanwhile. For the same reason the entry into half-open is counted (see
// Transitions) when the gate is first seen to have passed, not in
// OnStateChange.
//
// Each gobreaker instance has its own gate; OpenRemote (below) replaces the
// instance, gate and all, in one atomic store, so a caller never pairs one
// instance with another's gate. Allow also checks, after gobreaker admits,
// that the instance it used is still the current one.
//
// Only the open period uses the injected clock. The closed-state rolling
// window (Window, in ten buckets of Window/10) runs on gobreaker's wall
// clock, and the move from open to half-open is lazy, as in gobreaker: it
// happens at the first Allow, State or Transitions call after the gate.
//
// # Sharing across replicas
//
// Replicas in front of the same upstream share its trips through two hooks;
// the transport between them is not this package's business.
//
//   - OnTrip(fn) reports the breaker's own trips: fn(OpenTimeout) once each
//     time closed or half-open goes to open because of outcomes reported
//     here. onStateChange only counts the trip, under gobreaker's lock; the
//     done call that reported the failure calls fn once that lock is
//     released, so fn may call back into the breaker. It runs on the
//     request path and must return quickly: hand off to a channel.
//   - OpenRemote(d) opens the breaker for d on its clock as if it had
//     tripped here, without calling fn (a trip received is not published
//     again). A running open period that ends later is kept; one that ends
//     earlier is extended.
//
// gobreaker has no way to force its open state, and the one way in, a
// synthetic failure through Allow and done with ReadyToTrip made to return
// true, is shut while half-open has all its probe slots out. So unless an
// open period is already running, OpenRemote builds a new gobreaker
// instance, trips it with one synthetic failure before anyone else can see
// it (the trip clears the counts that failure went into), sets its gate to
// now+d and makes it the current one. From then on the breaker behaves as
// after a local trip: refusals with OpenFor counting down from d, then
// HalfOpenRequests probes that close or reopen it. Requests admitted
// earlier report to the instance that admitted them, whose state changes
// are ignored from then on, as gobreaker itself discards the outcomes of an
// earlier generation; they hold no probe slot of the new instance. An
// extension only moves the gate: while a gate runs, gobreaker has admitted
// no request whose outcome it would count.
//
// Transitions counts a remote open as an entry into open, as a trip, but
// not an extension: the breaker was open already. The counts gobreaker
// keeps never see the synthetic failure.
package breaker
