package bulkhead

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStress hammers one bulkhead from thousands of goroutines mixing
// TryAcquire, Acquire with contexts canceled or timing out at random, and
// waits bounded by a tiny real max_wait, so grants, cancellations and
// timeouts race in every order. It asserts what must hold whatever the
// interleaving: never more holders than slots, only the documented errors,
// and at the end nothing held, nothing queued and no permit lost or
// duplicated. It makes no assertion about timing.
func TestStress(t *testing.T) {
	for _, closeMidway := range []bool{false, true} {
		name := "open"
		if closeMidway {
			name = "closed midway"
		}
		t.Run(name, func(t *testing.T) { stress(t, closeMidway) })
	}
}

func stress(t *testing.T, closeMidway bool) {
	const (
		goroutines    = 4000
		rounds        = 4  // attempts that got past ErrFull, per goroutine
		maxAttempts   = 20 // attempts in all, per goroutine
		maxConcurrent = 8
		maxDepth      = 256
	)
	if testing.Short() {
		t.Skip("stress test")
	}
	b := New(maxConcurrent, maxDepth, time.Millisecond, nil)

	var (
		holders, maxHolders             atomic.Int64
		acquired, full, timedOut, ended atomic.Int64
		closedErrs, canceled            atomic.Int64
	)
	hold := func(p Permit) {
		n := holders.Add(1)
		for m := maxHolders.Load(); n > m && !maxHolders.CompareAndSwap(m, n); m = maxHolders.Load() {
		}
		acquired.Add(1)
		for range rand.IntN(2) {
			runtime.Gosched()
		}
		holders.Add(-1)
		p.Release()
	}

	// A watcher checks the lock-free gauges stay in range throughout.
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			default:
			}
			if n := b.Inflight(); n < 0 || n > maxConcurrent {
				t.Errorf("Inflight() = %d, out of [0, %d]", n, maxConcurrent)
				return
			}
			if n := b.Depth(); n < 0 || n > maxDepth {
				t.Errorf("Depth() = %d, out of [0, %d]", n, maxDepth)
				return
			}
			runtime.Gosched()
		}
	}()

	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		if closeMidway && g == goroutines/2 {
			wg.Go(func() { <-start; b.Close() })
		}
		wg.Go(func() {
			<-start
			for done, attempts := 0, 0; done < rounds && attempts < maxAttempts; attempts++ {
				var (
					p   Permit
					err error
				)
				switch rand.IntN(4) {
				case 0:
					var ok bool
					if p, ok = b.TryAcquire(); !ok {
						runtime.Gosched()
						continue
					}
				case 1: // a deadline that may beat max_wait
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(1500))*time.Microsecond)
					p, err = b.Acquire(ctx)
					cancel()
				case 2: // a client that leaves at a random moment
					ctx, cancel := context.WithCancel(context.Background())
					stop := time.AfterFunc(time.Duration(rand.IntN(1500))*time.Microsecond, cancel)
					p, err = b.Acquire(ctx)
					stop.Stop()
					cancel()
				default: // bounded by max_wait only
					p, err = b.Acquire(context.Background())
				}
				if !errors.Is(err, ErrFull) {
					done++
				}
				switch {
				case err == nil:
					hold(p)
				case errors.Is(err, ErrFull):
					full.Add(1)
					runtime.Gosched() // back off, so that the queue churns rather than the loop
				case errors.Is(err, ErrTimeout):
					timedOut.Add(1)
				case errors.Is(err, ErrClosed):
					closedErrs.Add(1)
				case errors.Is(err, context.Canceled):
					canceled.Add(1)
				case errors.Is(err, context.DeadlineExceeded):
					ended.Add(1)
				default:
					t.Errorf("Acquire: unexpected error %v", err)
				}
				if err != nil && p != (Permit{}) {
					t.Errorf("Acquire returned a permit with error %v", err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(stopWatch)
	<-watchDone

	t.Logf("acquired %d, full %d, timed out %d, canceled %d, deadline %d, closed %d, max holders %d",
		acquired.Load(), full.Load(), timedOut.Load(), canceled.Load(), ended.Load(), closedErrs.Load(), maxHolders.Load())
	if m := maxHolders.Load(); m > maxConcurrent {
		t.Errorf("%d concurrent holders, max %d", m, maxConcurrent)
	}
	if acquired.Load() == 0 {
		t.Error("nothing was ever acquired")
	}
	if !closeMidway && closedErrs.Load() != 0 {
		t.Errorf("%d ErrClosed from an open bulkhead", closedErrs.Load())
	}
	assertDrained(t, b)
}
