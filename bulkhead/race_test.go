package bulkhead

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"sluice/clock"
)

// TestSettleGrantVersusCancel drives settle, the function a woken waiter
// runs, after arranging by hand what happened to the waiter while it was
// waking: nothing, a grant, or Close, combined with a done ctx or a fired
// timer. This is the grant-versus-cancel race with the interleaving fixed,
// so each cell of the table in doc.go is checked exactly, not by luck.
func TestSettleGrantVersusCancel(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name       string
		meanwhile  string // what happened before the waiter got the lock: "", "grant", "close"
		ctxDone    bool   // the waiter's ctx is done (else its timer fired)
		nextWaiter bool   // a second waiter is queued behind it

		wantErr      error
		wantInflight int  // after settle, before anything else is released
		wantNextWins bool // the second waiter was granted the slot
	}{
		{name: "queued/ctx", ctxDone: true, nextWaiter: true, wantErr: context.Canceled, wantInflight: 1},
		{name: "queued/timer", wantErr: ErrTimeout, wantInflight: 1},
		{name: "granted/ctx passes slot to next waiter", meanwhile: "grant", ctxDone: true, nextWaiter: true,
			wantErr: context.Canceled, wantInflight: 1, wantNextWins: true},
		{name: "granted/ctx frees slot", meanwhile: "grant", ctxDone: true,
			wantErr: context.Canceled, wantInflight: 0},
		{name: "granted/timer keeps slot", meanwhile: "grant", nextWaiter: true, wantInflight: 1},
		{name: "closed/ctx", meanwhile: "close", ctxDone: true, wantErr: context.Canceled, wantInflight: 1},
		{name: "closed/timer", meanwhile: "close", wantErr: ErrClosed, wantInflight: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(1, 2, time.Second, clock.NewFake(time.Unix(0, 0)))
			hold, ok := b.TryAcquire()
			if !ok {
				t.Fatal("TryAcquire on an empty bulkhead failed")
			}
			w := b.waiters.Get().(*waiter)
			var next *waiter
			b.mu.Lock()
			b.pushLocked(w)
			if tt.nextWaiter {
				next = b.waiters.Get().(*waiter)
				b.pushLocked(next)
			}
			b.mu.Unlock()

			switch tt.meanwhile {
			case "grant":
				hold.Release() // hands the slot to w, the head
			case "close":
				b.Close()
			}
			ctx := context.Background()
			if tt.ctxDone {
				ctx = canceled
			}
			p, err := b.settle(ctx, w, false)

			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("settle: err %v, want %v", err, tt.wantErr)
			}
			if (err == nil) != (p != Permit{}) {
				t.Fatalf("settle: permit %v with err %v", p, err)
			}
			if len(w.ready) != 0 {
				t.Error("recycled waiter still holds a token")
			}
			b.mu.Lock()
			checkInvariantsLocked(t, b)
			nextGranted := next != nil && next.state == waitGranted
			b.mu.Unlock()
			if got := b.Inflight(); got != tt.wantInflight {
				t.Errorf("inflight %d, want %d", got, tt.wantInflight)
			}
			if nextGranted != tt.wantNextWins {
				t.Errorf("next waiter granted: %v, want %v", nextGranted, tt.wantNextWins)
			}

			// Unwind: whoever holds a slot releases it, and the count
			// must come back to exactly zero with every slot takeable.
			if p != (Permit{}) {
				p.Release()
			}
			if next != nil {
				np, _ := b.settle(canceled, next, false)
				if np != (Permit{}) {
					t.Errorf("canceled next waiter got a permit")
				}
			}
			if tt.meanwhile != "grant" {
				hold.Release()
			}
			assertDrained(t, b)
		})
	}
}

// hookCtx is a context whose Done blocks the first caller until the test
// lets it go. Acquire calls Done only in its wait select, so the test gets
// a window in which the waiter is queued, its timer armed, and not yet
// looking at anything: it can grant, cancel or fire the timer there, so
// that several events are ready at once when the select runs.
type hookCtx struct {
	context.Context
	entered chan struct{} // closed when the waiter reaches its select
	proceed chan struct{} // the test closes it to let the select run
	done    chan struct{}
	once    sync.Once
}

func newHookCtx() *hookCtx {
	return &hookCtx{Context: context.Background(), entered: make(chan struct{}),
		proceed: make(chan struct{}), done: make(chan struct{})}
}

func (c *hookCtx) Done() <-chan struct{} {
	c.once.Do(func() {
		close(c.entered)
		<-c.proceed
	})
	return c.done
}

func (c *hookCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

type acquireResult struct {
	p   Permit
	err error
}

func goAcquire(b *Bulkhead, ctx context.Context) <-chan acquireResult {
	ch := make(chan acquireResult, 1)
	go func() {
		p, err := b.Acquire(ctx)
		ch <- acquireResult{p, err}
	}()
	return ch
}

// TestGrantAndCancelTogether forces the race end to end: the slot is
// handed to waiter A and A's ctx is canceled before A's select runs, so
// both its channels are ready and the select may pick either. Whichever
// it picks, A must return context.Canceled and the slot must go on, to B
// if B is queued, else back to the pool. Many rounds cover both picks.
func TestGrantAndCancelTogether(t *testing.T) {
	for _, withNext := range []bool{true, false} {
		name := "slot freed"
		if withNext {
			name = "slot to next waiter"
		}
		t.Run(name, func(t *testing.T) {
			for range 200 {
				fake := clock.NewFake(time.Unix(0, 0))
				b := New(1, 2, time.Second, fake)
				hold, _ := b.TryAcquire()

				a := newHookCtx()
				resA := goAcquire(b, a)
				<-a.entered
				var resB <-chan acquireResult
				if withNext {
					bctx := newHookCtx()
					close(bctx.proceed)
					resB = goAcquire(b, bctx)
					<-bctx.entered
				}

				hold.Release() // A is the head: granted
				close(a.done)  // and canceled, before it looks
				close(a.proceed)

				if r := <-resA; !errors.Is(r.err, context.Canceled) || r.p != (Permit{}) {
					t.Fatalf("A: %v, %v; want context.Canceled and no permit", r.p, r.err)
				}
				if withNext {
					r := <-resB
					if r.err != nil {
						t.Fatalf("B: %v; want the slot A passed on", r.err)
					}
					if b.Inflight() != 1 {
						t.Fatalf("inflight %d with B holding the only slot", b.Inflight())
					}
					r.p.Release()
				}
				assertDrained(t, b)
			}
		})
	}
}

// TestGrantAndTimeoutTogether: the slot is handed to A in the same instant
// its max_wait passes. The slot is A's already, so A keeps it rather than
// failing with ErrTimeout and wasting it.
func TestGrantAndTimeoutTogether(t *testing.T) {
	for range 200 {
		fake := clock.NewFake(time.Unix(0, 0))
		b := New(1, 1, time.Second, fake)
		hold, _ := b.TryAcquire()
		a := newHookCtx()
		resA := goAcquire(b, a)
		<-a.entered
		fake.WaitTimers(1)
		hold.Release()
		fake.Advance(time.Second)
		close(a.proceed)
		r := <-resA
		if r.err != nil {
			t.Fatalf("A: %v; want the slot granted as max_wait passed", r.err)
		}
		if b.Inflight() != 1 {
			t.Fatalf("inflight %d, want 1", b.Inflight())
		}
		r.p.Release()
		assertDrained(t, b)
	}
}

// TestCloseAndTimeoutTogether: Close and the timer in the same instant:
// Close decided first, under the lock, so the waiter reports ErrClosed.
func TestCloseAndTimeoutTogether(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	b := New(1, 1, time.Second, fake)
	hold, _ := b.TryAcquire()
	a := newHookCtx()
	resA := goAcquire(b, a)
	<-a.entered
	fake.WaitTimers(1)
	b.Close()
	fake.Advance(time.Second)
	close(a.proceed)
	if r := <-resA; !errors.Is(r.err, ErrClosed) {
		t.Fatalf("A: %v, want ErrClosed", r.err)
	}
	hold.Release()
	assertDrained(t, b)
}

// assertDrained checks that nothing is held or queued and that no slot was
// lost or duplicated: exactly MaxConcurrent TryAcquires succeed.
func assertDrained(t testing.TB, b *Bulkhead) {
	t.Helper()
	b.mu.Lock()
	checkInvariantsLocked(t, b)
	b.mu.Unlock()
	if b.Inflight() != 0 || b.Depth() != 0 {
		t.Fatalf("not drained: inflight %d depth %d", b.Inflight(), b.Depth())
	}
	permits := make([]Permit, 0, b.MaxConcurrent())
	for i := range b.MaxConcurrent() {
		p, ok := b.TryAcquire()
		if !ok {
			t.Fatalf("TryAcquire %d of %d failed: a permit was lost", i+1, b.MaxConcurrent())
		}
		permits = append(permits, p)
	}
	if _, ok := b.TryAcquire(); ok {
		t.Fatalf("TryAcquire %d succeeded: a permit was duplicated", b.MaxConcurrent()+1)
	}
	for _, p := range permits {
		p.Release()
	}
	if b.Inflight() != 0 {
		t.Fatalf("inflight %d after releasing everything", b.Inflight())
	}
}
