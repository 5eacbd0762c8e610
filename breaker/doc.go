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
// Only the open period uses the injected clock. The closed-state rolling
// window (Window, in ten buckets of Window/10) runs on gobreaker's wall
// clock, and the move from open to half-open is lazy, as in gobreaker: it
// happens at the first Allow, State or Transitions call after the gate.
package breaker
