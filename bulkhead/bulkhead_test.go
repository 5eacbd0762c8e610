package bulkhead

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/clock"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name                    string
		maxConcurrent, maxDepth int
		maxWait                 time.Duration
		wantPanic               string
	}{
		{name: "valid", maxConcurrent: 3, maxDepth: 5, maxWait: time.Second},
		{name: "no queue", maxConcurrent: 1, maxDepth: 0, maxWait: 0},
		{name: "zero slots", maxConcurrent: 0, maxDepth: 1, maxWait: time.Second, wantPanic: "maxConcurrent must be >= 1, got 0"},
		{name: "negative depth", maxConcurrent: 1, maxDepth: -1, maxWait: time.Second, wantPanic: "maxDepth must be >= 0, got -1"},
		{name: "negative wait", maxConcurrent: 1, maxDepth: 1, maxWait: -time.Second, wantPanic: "maxWait must be >= 0, got -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b *Bulkhead
			msg := panicOf(func() { b = New(tt.maxConcurrent, tt.maxDepth, tt.maxWait, nil) })
			if tt.wantPanic != "" {
				if !strings.Contains(msg, tt.wantPanic) {
					t.Fatalf("panic %q, want one containing %q", msg, tt.wantPanic)
				}
				return
			}
			if msg != "" {
				t.Fatalf("unexpected panic: %s", msg)
			}
			if b.MaxConcurrent() != tt.maxConcurrent || b.MaxDepth() != tt.maxDepth || b.MaxWait() != tt.maxWait {
				t.Errorf("getters: %d %d %v", b.MaxConcurrent(), b.MaxDepth(), b.MaxWait())
			}
			if b.clk == nil {
				t.Error("nil clock not defaulted to clock.Real()")
			}
			if b.Inflight() != 0 || b.Depth() != 0 {
				t.Errorf("new bulkhead: inflight %d depth %d", b.Inflight(), b.Depth())
			}
		})
	}
}

func TestZeroPermitReleasePanics(t *testing.T) {
	if msg := panicOf(Permit{}.Release); msg != "bulkhead: Release of the zero Permit" {
		t.Fatalf("panic %q", msg)
	}
}

// TestConcurrentDoubleRelease: two goroutines release the same permit at
// once; exactly one succeeds, the other panics, and the count is exact.
func TestConcurrentDoubleRelease(t *testing.T) {
	b := New(2, 0, 0, nil)
	for range 100 {
		p, ok := b.TryAcquire()
		if !ok {
			t.Fatal("TryAcquire failed")
		}
		var wg sync.WaitGroup
		panics := make(chan string, 2)
		for range 2 {
			wg.Go(func() { panics <- panicOf(p.Release) })
		}
		wg.Wait()
		close(panics)
		n := 0
		for msg := range panics {
			if msg != "" {
				n++
				if msg != "bulkhead: Permit released twice" {
					t.Fatalf("panic %q", msg)
				}
			}
		}
		if n != 1 {
			t.Fatalf("%d of 2 releases panicked, want 1", n)
		}
		if b.Inflight() != 0 {
			t.Fatalf("inflight %d after a release and a double release", b.Inflight())
		}
	}
	assertDrained(t, b)
}

// TestNoMaxWait: with maxWait 0 no timer is armed and a waiter waits until
// it is granted or its ctx is done.
func TestNoMaxWait(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	b := New(1, 2, 0, fake)
	hold, _ := b.TryAcquire()
	a, c := newHookCtx(), newHookCtx()
	close(a.proceed)
	close(c.proceed)
	resA := goAcquire(b, a)
	<-a.entered
	resC := goAcquire(b, c)
	<-c.entered
	if n := fake.Timers(); n != 0 {
		t.Fatalf("%d timers armed with maxWait 0", n)
	}
	fake.Advance(24 * time.Hour)
	hold.Release()
	r := <-resA
	if r.err != nil {
		t.Fatalf("A: %v", r.err)
	}
	close(c.done)
	if r := <-resC; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("C: %v", r.err)
	}
	r.p.Release()
	assertDrained(t, b)
}

// TestAcquireRejectsWithoutWaiting: ErrFull and ErrClosed arm no timer and
// leave no waiter behind.
func TestAcquireRejectsWithoutWaiting(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	b := New(1, 0, time.Second, fake)
	hold, _ := b.TryAcquire()
	if _, err := b.Acquire(context.Background()); !errors.Is(err, ErrFull) {
		t.Fatalf("depth 0: %v, want ErrFull", err)
	}
	b.Close()
	if _, err := b.Acquire(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v, want ErrClosed", err)
	}
	if fake.Timers() != 0 || b.Depth() != 0 {
		t.Fatalf("timers %d depth %d after immediate rejections", fake.Timers(), b.Depth())
	}
	hold.Release()
	assertDrained(t, b)
}

// TestFastPathAllocs pins the zero-allocation promise of the fast path.
func TestFastPathAllocs(t *testing.T) {
	b := New(4, 4, time.Second, nil)
	ctx := context.Background()
	// Warm the permit free list.
	p, _ := b.TryAcquire()
	p.Release()
	if n := testing.AllocsPerRun(1000, func() {
		p, ok := b.TryAcquire()
		if !ok {
			t.Fatal("TryAcquire failed")
		}
		p.Release()
	}); n != 0 {
		t.Errorf("TryAcquire+Release: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		p, err := b.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Release()
	}); n != 0 {
		t.Errorf("Acquire+Release: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = b.Inflight(), b.Depth() }); n != 0 {
		t.Errorf("Inflight+Depth: %v allocs, want 0", n)
	}
}
