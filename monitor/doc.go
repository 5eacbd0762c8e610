// Package monitor measures what the admin API and the dashboard report about
// each route: a sampled backpressure level (Sampler), windowed latency
// quantiles (Histogram) and per-second admission rates (RateTracker). None
// takes a lock on the request path; the admin package only reads them.
//
// # Backpressure, after Flink
//
// Flink's back-pressure monitor asks, many times over a short period,
// whether each task is blocked waiting for an output buffer (originally by
// stack-trace sampling, later through Task.isBackPressured), and reports the
// share of samples that were blocked as a ratio with a level: ok up to 0.10,
// low up to 0.5, high above. Its defaults are 100 samples 50 ms apart, the
// defaults of sluice's monitoring.samples and monitoring.sample_interval.
//
// sluice asks the same question of a route: could a request arriving now
// start at once? A sample is backpressured when it could not (bulkhead full,
// requests already waiting, or the rate limiter out of tokens), which is the
// proxy's version of a task blocked on a buffer: work is arriving faster
// than the route lets it through. Flink's inPoolUsage and outPoolUsage,
// which show how full the buffer pools are, become queue_usage (depth /
// max_depth) and bulkhead_usage (inflight / max_concurrent).
//
//	        every sample_interval, one goroutine, all routes
//	Sampler ──────────────────────────────────────────────▶ Source.Backpressured(now)
//	   │                                                    Source.QueueUsage()
//	   │  per route: ring of the last `samples` bits        Source.BulkheadUsage()
//	   │  + running count of set bits
//	   ▼
//	Backpressure(name): ratio = set bits / bits present, level = LevelOf(ratio)
//
// Two differences from Flink are deliberate. Flink samples on demand, when
// the REST endpoint is first queried, and caches the result for a minute;
// sluice samples continuously into a sliding window, so the ratio is always
// current and reading it is O(1). And the level is computed over the samples
// present so far, so a route reads correctly before its window is full.
//
// # Latency
//
// Histogram keeps log-linear buckets (HDR-style, 16 per power of two) in a
// ring of six 10 s slots. Observe is a few atomic operations and allocates
// nothing; Snapshot merges the live slots into p50/p95/p99 over roughly the
// last minute. See Histogram for the error bounds and the memory it takes.
//
// # Rates
//
// The admission counters are monotonic atomics that the request path bumps.
// RateTracker reads them once a second (off the request path, like the
// Sampler) and reports the growth over its last six readings divided by the
// time they span, up to 5 s: long enough to smooth one bursty second, short
// enough not to lag far behind.
package monitor
