// Package overload is sluice's process-level overload manager (after
// Envoy's overload manager and HAProxy's global maxconn). Where admission
// guards one route against its upstream, this guards the process itself:
// it refuses new work before the proxy runs out of connections, requests,
// memory or CPU, so that what it has already accepted still finishes.
//
// # Model
//
// Four guards, from the socket inwards:
//
//	accept ── connections open ≥ server.max_connections? ──► refused    (Listener)
//	  │        (the plain listener writes 503 overloaded first)
//	  ▼
//	door ──── heap over server.memory_limit? ─────────────► overloaded (Enter)
//	  │       requests in flight ≥ server.max_inflight? ───► overloaded
//	  ▼
//	route ─── the detector sheds the request's class? ────► overloaded (Shedding)
//	  ▼
//	admission (per route)
//
// The request path reads only atomics: Enter is an atomic load and, with
// max_inflight set, one compare-and-swap; Shedding is one atomic load. All
// measuring happens in Sample, which one goroutine (Run) calls every
// Options.Interval (100ms).
//
// The memory guard reads the live heap (runtime/metrics
// /gc/heap/live:bytes: what the last GC found reachable, so garbage
// awaiting collection does not make it flap) and turns on at
// server.memory_limit, off again below 95 % of it.
//
// The saturation detector reads the p99 of the scheduling latencies since
// its previous sample (runtime/metrics /sched/latencies:seconds, how long
// goroutines waited runnable before they ran: when every CPU the process
// may use is busy, that wait grows first) and moves between three levels:
//
//	          2 samples in a row > 10ms           saturated for 1s more
//	ShedNone ───────────────────────► ShedSheddable ─────────────────► ShedDefault
//	   ▲                                 │     ▲                           │
//	   └──────── 1s of samples ≤ 10ms ───┘     └─── 1s of samples ≤ 10ms ──┘
//
// ShedSheddable refuses the requests of class sheddable, ShedDefault those
// of classes sheddable and default; the detector never refuses critical
// requests. Each step down needs its own second of calm, so the detector
// releases load in the order it shed it. The proxy applies the level to
// the waiting only: a request of a shed class that finds a slot free at
// its route's bulkhead goes in, one that would queue is refused at once.
//
// Limits change at run time (SetLimits, on config reload): a lower
// max_connections closes no connection, it only refuses new ones until
// enough have closed.
//
// Time comes from a clock.Clock and the heap and latency readings from
// Options.Heap and Options.Sched, so tests say "the heap is now X" and
// advance a fake clock instead of loading the machine.
package overload
