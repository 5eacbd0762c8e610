// Package admission decides, per route, whether a request may go on to the
// upstream, and if not, why and for how long the client should stay away.
//
// # The model
//
// Each route has a Controller that composes, in the order of docs/SPEC.md:
//
//	request ──► rate limit ──► breaker open? ──► bulkhead ──► breaker ──► admitted
//	               │ no token      │ yes          │ full:        │ refused
//	               ▼               ▼              │ wait in the  ▼
//	          rate_limited     breaker_open       │ FIFO queue  breaker_open
//	              429              503            ▼
//	                                   queue_full (queue full: at once)
//	                                   queue_timeout (waited max_wait)  503
//
// The parts:
//
//   - The rate limit is a token bucket (golang.org/x/time/rate), route-wide
//     or one per key (client IP, or a header's value). Keyed buckets live in
//     a bounded table that evicts with CLOCK, so distinct keys cannot grow
//     memory without bound. A refusal's Retry-After is the bucket's real
//     delay until its next token.
//   - The bulkhead (package bulkhead) caps requests in flight to the
//     upstream. When it is full a request waits in a bounded FIFO queue for
//     at most max_wait; when the queue is full too it is refused at once —
//     a client is never made to wait only to be refused.
//   - The breaker (package breaker) belongs to the upstream and is shared by
//     its routes. It is checked before queueing, so an open breaker refuses
//     at once, and asked for a ticket after the slot is won.
//
// # Retry-After for the queue
//
// A queue refusal estimates how long the work ahead takes to drain:
// (depth+1) × mean service time ÷ max_concurrent, where the mean service
// time is an exponentially weighted mean of how long recent admitted
// requests held their slot (see serviceTime). It is a promise made from
// measurement, not a constant.
//
// # Accounting
//
// Every request that reaches Admit ends in exactly one counter: admitted,
// one refusal reason, or ClientGone (the client left while queued). The
// counters are atomics, read without locks by reporting.
package admission
