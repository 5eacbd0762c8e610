package monitor

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"sluice/clock"
)

// latencies spreads observations over many buckets, as real traffic does.
var latencies = func() (ds [64]time.Duration) {
	for i := range ds {
		ds[i] = time.Duration(i*i+1) * 37 * time.Microsecond
	}
	return ds
}()

// BenchmarkHistogramObserve is the request path's cost: one clock-free
// bucket computation and one atomic add, with now stepping across slot
// edges so lazy resets are included.
func BenchmarkHistogramObserve(b *testing.B) {
	h := NewHistogram()
	now := t0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if i&1023 == 0 {
			now = now.Add(time.Second)
		}
		h.Observe(now, latencies[i&63])
	}
}

// BenchmarkHistogramObserveParallel is one route's histogram shared by all
// cores, the contended case: every core adds to the same slot.
func BenchmarkHistogramObserveParallel(b *testing.B) {
	h := NewHistogram()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			h.Observe(t0, latencies[i&63])
		}
	})
}

func BenchmarkHistogramSnapshot(b *testing.B) {
	h := NewHistogram()
	for i := range 60_000 {
		h.Observe(t0.Add(time.Duration(i)*time.Millisecond), latencies[i&63])
	}
	now := t0.Add(59 * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		h.Snapshot(now)
	}
}

// benchSource is what a real Source costs: a few atomic loads.
type benchSource struct {
	depth, inflight atomic.Int64
}

func (s *benchSource) Backpressured(time.Time) bool { return s.depth.Load() > 0 }
func (s *benchSource) QueueUsage() float64          { return float64(s.depth.Load()) / 100 }
func (s *benchSource) BulkheadUsage() float64       { return float64(s.inflight.Load()) / 50 }

// BenchmarkSample is one round over 1000 routes.
func BenchmarkSample(b *testing.B) {
	clk := clock.NewFake(t0)
	s := NewSampler(50*time.Millisecond, 100, clk, nil)
	sources := make(map[string]Source, 1000)
	for i := range 1000 {
		src := &benchSource{}
		src.depth.Store(int64(i % 3))
		src.inflight.Store(int64(i % 50))
		sources[fmt.Sprint("route-", i)] = src
	}
	s.SetSources(sources)
	s.Sample() // size the round's scratch slice
	b.ReportAllocs()
	for b.Loop() {
		s.Sample()
	}
}

// BenchmarkBackpressure is one API read.
func BenchmarkBackpressure(b *testing.B) {
	s := NewSampler(50*time.Millisecond, 100, clock.NewFake(t0), nil)
	s.SetSources(map[string]Source{"r": &benchSource{}})
	s.Sample()
	b.ReportAllocs()
	for b.Loop() {
		s.Backpressure("r")
	}
}
