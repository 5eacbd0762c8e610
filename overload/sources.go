package overload

import (
	"math"
	"runtime/metrics"
	"sync"
	"time"
)

// The runtime/metrics the default sources read. Neither stops the world:
// runtime.ReadMemStats does, which is why it is not used.
const (
	heapMetric  = "/gc/heap/live:bytes"
	schedMetric = "/sched/latencies:seconds"
)

// liveHeap returns a source of the live heap: the bytes the last GC found
// reachable. Unlike the heap's total it does not count garbage awaiting
// collection, so it does not climb towards the limit and fall back with
// every GC cycle.
func liveHeap() func() uint64 {
	s := []metrics.Sample{{Name: heapMetric}}
	var mu sync.Mutex // guards s
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return 0 // not in this runtime: the guard never turns on
		}
		return s[0].Value.Uint64()
	}
}

// schedP99 returns a source of the p99 scheduling latency since its
// previous call: the runtime's histogram of how long goroutines waited
// runnable before they ran is cumulative, so each call takes the
// difference from the counts the previous call saw.
func schedP99() func() time.Duration {
	s := []metrics.Sample{{Name: schedMetric}}
	var (
		mu   sync.Mutex // guards s, prev
		prev []uint64
	)
	read := func() *metrics.Float64Histogram {
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindFloat64Histogram {
			return nil // not in this runtime: never saturated
		}
		return s[0].Value.Float64Histogram()
	}
	if h := read(); h != nil {
		prev = append(prev, h.Counts...) // the first call measures from here
	}
	return func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		h := read()
		if h == nil {
			return 0
		}
		if len(prev) != len(h.Counts) {
			prev = make([]uint64, len(h.Counts))
		}
		p := deltaP99(h.Buckets, h.Counts, prev)
		copy(prev, h.Counts)
		return p
	}
}

// deltaP99 returns the 99th percentile of the histogram counts-prev, as
// the lower bound of the bucket it falls in (so it never overstates the
// latency). An empty delta is 0.
func deltaP99(buckets []float64, counts, prev []uint64) time.Duration {
	var total uint64
	for i, c := range counts {
		total += c - prev[i]
	}
	if total == 0 {
		return 0
	}
	// The smallest rank that covers 99 % of the samples, rounded up.
	rank := (total*99 + 99) / 100
	var cum uint64
	for i, c := range counts {
		cum += c - prev[i]
		if cum >= rank {
			lo := buckets[i]
			if math.IsInf(lo, -1) || lo < 0 {
				return 0
			}
			return time.Duration(lo * float64(time.Second))
		}
	}
	return 0
}
