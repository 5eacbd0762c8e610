package overload

import (
	"context"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/clock"
	"sluice/internal/testutil"
)

func TestDeltaP99(t *testing.T) {
	inf := math.Inf(1)
	buckets := []float64{math.Inf(-1), 0, 0.001, 0.005, 0.010, 0.020, inf}
	for _, tt := range []struct {
		name        string
		counts, was []uint64
		want        time.Duration
	}{
		{"empty", []uint64{0, 0, 0, 0, 0, 0}, []uint64{0, 0, 0, 0, 0, 0}, 0},
		{"unchanged", []uint64{5, 7, 9, 1, 0, 0}, []uint64{5, 7, 9, 1, 0, 0}, 0},
		// 100 new samples: 98 under 1ms, 2 in [10ms, 20ms): the 99th is there.
		{"tail", []uint64{0, 1098, 0, 0, 2, 0}, []uint64{0, 1000, 0, 0, 0, 0}, 10 * time.Millisecond},
		// 1 of 200 in the tail: p99 stays in the body.
		{"one outlier", []uint64{0, 199, 0, 0, 0, 1}, []uint64{0, 0, 0, 0, 0, 0}, 0},
		{"all slow", []uint64{0, 50, 0, 10, 0, 0}, []uint64{0, 50, 0, 0, 0, 0}, 5 * time.Millisecond},
		{"overflow bucket", []uint64{0, 0, 0, 0, 0, 3}, []uint64{0, 0, 0, 0, 0, 0}, 20 * time.Millisecond},
		{"underflow bucket", []uint64{4, 0, 0, 0, 0, 0}, []uint64{0, 0, 0, 0, 0, 0}, 0},
	} {
		if got := deltaP99(buckets, tt.counts, tt.was); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestRuntimeSources reads the real runtime/metrics: the live heap of a
// process holding a large allocation is at least that large, and the
// scheduling latency source answers a duration for each interval.
func TestRuntimeSources(t *testing.T) {
	hold := make([]byte, 32<<20)
	runtime.GC()
	if got := liveHeap()(); got < uint64(len(hold)) {
		t.Errorf("live heap %d bytes while holding %d", got, len(hold))
	}
	runtime.KeepAlive(hold)
	sched := schedP99()
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(runtime.Gosched)
	}
	wg.Wait()
	if p := sched(); p < 0 || p > time.Minute {
		t.Errorf("sched p99 %v", p)
	}
	if p := sched(); p < 0 || p > time.Minute {
		t.Errorf("sched p99 of a quiet interval %v", p)
	}
}

// TestRunSamplesOnTheClock: Run samples once per interval of its clock
// and ends with its context.
func TestRunSamplesOnTheClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	var reads atomic.Int32
	m := New(Limits{}, Options{Clock: clk, Log: slog.New(slog.DiscardHandler), Interval: 50 * time.Millisecond,
		Heap:  func() uint64 { return uint64(reads.Add(1)) },
		Sched: func() time.Duration { return 0 }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	for i := 1; i <= 3; i++ {
		clk.WaitTimers(1)
		clk.Advance(50 * time.Millisecond)
		for m.State().HeapBytes != uint64(i) {
			runtime.Gosched() // Sample runs on Run's goroutine once the timer fired
		}
	}
	clk.WaitTimers(1)
	cancel()
	<-done
	if n := reads.Load(); n != 3 {
		t.Errorf("%d samples, want 3", n)
	}
	if clk.Timers() != 0 {
		t.Errorf("%d timers left armed", clk.Timers())
	}
}

// TestPanickingSource: a source that panics costs its sample, is logged
// once while it keeps panicking and once when it recovers, and leaves the
// state as it was.
func TestPanickingSource(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	var broken atomic.Bool
	var p99 atomic.Int64
	m := New(Limits{}, Options{Clock: clock.NewFake(time.Unix(1_700_000_000, 0)), Log: slog.New(slog.NewTextHandler(logs, nil)),
		Heap: func() uint64 {
			if broken.Load() {
				panic("no heap today")
			}
			return 1
		},
		Sched: func() time.Duration { return time.Duration(p99.Load()) }})
	p99.Store(int64(time.Second))
	m.Sample()
	m.Sample()
	if m.Shedding() != ShedSheddable {
		t.Fatalf("shedding %v after two saturated samples", m.Shedding())
	}
	broken.Store(true)
	p99.Store(0)
	for range 30 {
		m.Sample()
	}
	if m.Shedding() != ShedSheddable {
		t.Errorf("a panicking source changed the state to %v", m.Shedding())
	}
	broken.Store(false)
	m.Sample()
	out := logs.String()
	if n := strings.Count(out, "no heap today"); n != 1 {
		t.Errorf("the panic logged %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(out, "the sources work again") {
		t.Errorf("the recovery is not logged:\n%s", out)
	}
}
