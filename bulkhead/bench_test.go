package bulkhead

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkTryAcquireRelease is the uncontended fast path: one lock round
// trip to take a slot, a CAS and one lock round trip to give it back.
func BenchmarkTryAcquireRelease(b *testing.B) {
	bh := New(8, 8, 250*time.Millisecond, nil)
	b.ReportAllocs()
	for b.Loop() {
		p, ok := bh.TryAcquire()
		if !ok {
			b.Fatal("TryAcquire failed")
		}
		p.Release()
	}
}

// BenchmarkAcquireRelease is Acquire's fast path: a free slot is taken
// without arming a timer or touching ctx.
func BenchmarkAcquireRelease(b *testing.B) {
	bh := New(8, 8, 250*time.Millisecond, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := bh.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		p.Release()
	}
}

// BenchmarkAcquireReleaseParallel measures the one mutex under contention
// with capacity to spare (2×GOMAXPROCS slots), so callers rarely queue.
func BenchmarkAcquireReleaseParallel(b *testing.B) {
	bh := New(2*runtime.GOMAXPROCS(0), 1024, 250*time.Millisecond, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			p, err := bh.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			p.Release()
		}
	})
}

// BenchmarkAcquireReleaseContended is the slow path: GOMAXPROCS goroutines
// share one slot, so most Acquires queue and are woken by a Release handing
// the slot over. Its allocations are the max_wait timer of each wait (real
// clock); the queue is deep enough that nobody gets ErrFull.
func BenchmarkAcquireReleaseContended(b *testing.B) {
	bh := New(1, runtime.GOMAXPROCS(0), time.Minute, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			p, err := bh.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			p.Release()
		}
	})
}

// BenchmarkAcquireClassContended is BenchmarkAcquireReleaseContended with
// the class API and the CoDel discipline (Meta's 5ms/100ms): each
// goroutine acquires with its own class, so grants choose across lists,
// and every enqueue and hand-off reads the clock for the sojourn. With
// waits of microseconds the controller stays in FIFO mode: this is the
// cost CoDel adds to a busy queue that is not overloaded.
func BenchmarkAcquireClassContended(b *testing.B) {
	bh := NewWithOptions(Options{
		MaxConcurrent: 1, MaxDepth: runtime.GOMAXPROCS(0), MaxWait: time.Minute,
		Discipline: CoDel,
	})
	var next atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		class := Class(next.Add(1) % numClasses)
		for pb.Next() {
			p, err := bh.AcquireClass(ctx, class)
			if err != nil {
				b.Error(err)
				return
			}
			p.Release()
		}
	})
}
