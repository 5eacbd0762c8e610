package monitor

import (
	"math"
	"time"
)

// Source is one route as the Sampler sees it. Implementations are cheap and
// lock-free on their side: the sampler calls them for every route every
// sample interval.
type Source interface {
	// Backpressured reports whether a request arriving at now could not
	// start at once: the bulkhead is full, requests are waiting, or the
	// rate limiter is out of tokens. It is Flink's "is the task blocked
	// requesting a buffer". It is called only from the sampler goroutine
	// (one Sample round at a time), so it may keep state between calls.
	Backpressured(now time.Time) bool
	// QueueUsage is depth / max_depth in 0..1, 0 when there is no queue
	// (Flink's inPoolUsage).
	QueueUsage() float64
	// BulkheadUsage is inflight / max_concurrent in 0..1, 0 when the route
	// has no concurrency limit (Flink's outPoolUsage).
	BulkheadUsage() float64
}

// Level is the backpressure level of a route, with Flink's names and
// thresholds.
type Level string

// The levels, as they appear in the JSON API.
const (
	LevelOK   Level = "ok"   // ratio <= 0.10
	LevelLow  Level = "low"  // 0.10 < ratio <= 0.5
	LevelHigh Level = "high" // ratio > 0.5
)

// LevelOf maps a backpressure ratio to its level: ok when ratio <= 0.10, low
// when <= 0.5, high above (docs/SPEC.md, "Reporting"; Flink's OK/LOW/HIGH). Both
// bounds are inclusive on the lower level, as in Flink: 10 backpressured
// samples out of 100 are still ok.
func LevelOf(ratio float64) Level {
	switch {
	case ratio <= 0.10:
		return LevelOK
	case ratio <= 0.5:
		return LevelLow
	default:
		return LevelHigh
	}
}

// Backpressure is the JSON body of GET /api/v1/routes/{name}/backpressure,
// with the field names of docs/SPEC.md.
type Backpressure struct {
	Level Level `json:"level"`
	// Ratio is backpressured samples / samples in the window, 0 before
	// the first sample.
	Ratio float64 `json:"ratio"`
	// Samples is the number of samples in the window now: it grows by one
	// per round up to the configured window, then stays there.
	Samples          int   `json:"samples"`
	SampleIntervalMs int64 `json:"sample_interval_ms"`
	// EndTimestamp is the Unix time in ms of the newest sample, 0 before
	// the first (Flink's end-timestamp).
	EndTimestamp int64 `json:"end_timestamp"`
	// QueueUsage and BulkheadUsage are those of the newest sample, in 0..1.
	QueueUsage    float64 `json:"queue_usage"`
	BulkheadUsage float64 `json:"bulkhead_usage"`
}

// usage brings a Source's usage figure into 0..1. encoding/json refuses NaN
// and ±Inf outright, so one bad division in a Source (0/0 on a route with
// no queue) would otherwise turn the whole API response into a 500.
func usage(u float64) float64 {
	switch {
	case math.IsNaN(u) || u <= 0:
		return 0
	case u >= 1:
		return 1
	default:
		return u
	}
}
