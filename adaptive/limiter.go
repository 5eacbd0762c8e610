package adaptive

import "time"

// Limiter adjusts a concurrency limit from samples of finished requests. Safe for concurrent use.
type Limiter interface {
	// Limit is the current limit, within [min, max].
	Limit() int
	// OnSample records one finished request: now (when it finished), rtt (how long it held its
	// concurrency slot, i.e. the upstream's service time, queue wait excluded), inflight (requests
	// holding a slot when it finished, itself included), and dropped (it failed in a way that
	// signals overload: an upstream timeout or a 503/429 from the upstream). It returns the new
	// limit and whether it changed.
	OnSample(now time.Time, rtt time.Duration, inflight int, dropped bool) (limit int, changed bool)
}
