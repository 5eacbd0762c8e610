package adaptive

import (
	"testing"
	"time"
)

// BenchmarkOnSample is the per-request cost: one lock round trip, a few
// float operations, an atomic store when the limit changes.
func BenchmarkOnSample(b *testing.B) {
	for _, alg := range algorithms {
		b.Run(alg.name, func(b *testing.B) {
			l := alg.new(Options{Initial: 50, Min: 1, Max: 1000})
			now := epoch
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				now = now.Add(time.Millisecond)
				rtt := time.Duration(18+i%5) * time.Millisecond
				l.OnSample(now, rtt, l.Limit(), i%1000 == 999)
				i++
			}
		})
	}
}

// BenchmarkOnSampleParallel measures the mutex under contention.
func BenchmarkOnSampleParallel(b *testing.B) {
	for _, alg := range algorithms {
		b.Run(alg.name, func(b *testing.B) {
			l := alg.new(Options{Initial: 50, Min: 1, Max: 1000})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				now := epoch
				for pb.Next() {
					now = now.Add(time.Millisecond)
					l.OnSample(now, 20*time.Millisecond, l.Limit(), false)
				}
			})
		})
	}
}

// TestOnSampleDoesNotAllocate holds the hot path to zero allocations in
// every state: probing, steady, backing off.
func TestOnSampleDoesNotAllocate(t *testing.T) {
	for _, alg := range algorithms {
		l := alg.new(Options{Initial: 50, Min: 1, Max: 1000})
		now := epoch
		i := 0
		allocs := testing.AllocsPerRun(5000, func() {
			now = now.Add(time.Millisecond)
			l.OnSample(now, time.Duration(10+i%80)*time.Millisecond, l.Limit(), i%50 == 0)
			l.Limit()
			i++
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per OnSample, want 0", alg.name, allocs)
		}
	}
}
