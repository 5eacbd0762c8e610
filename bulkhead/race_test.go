package bulkhead

import (
	"context"
	"errors"
	"slices"
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

// forceOverload puts b's CoDel controller in the overloaded state, as
// after a standing interval, with the last refusal 1ms ago.
func forceOverload(b *Bulkhead) {
	b.mu.Lock()
	b.overloaded, b.firstAbove, b.lastDrop = true, time.Time{}, b.clk.Now().Add(-time.Millisecond)
	b.mu.Unlock()
}

// queueAt pushes a waiter of class c enqueued at `at`, as AcquireClass
// would, for tests that arrange the queue by hand. It publishes no Done
// channel: a hand-off never finds its caller gone.
func queueAt(b *Bulkhead, c Class, at time.Time) *waiter {
	return queueCtxAt(b, context.Background(), c, at)
}

// queueCtxAt is queueAt with ctx.Done() published, as wait publishes it,
// for a hand-off to look at.
func queueCtxAt(b *Bulkhead, ctx context.Context, c Class, at time.Time) *waiter {
	w := b.waiters.Get().(*waiter)
	w.publishDone(ctx.Done())
	w.class, w.enqueued = c, at
	b.mu.Lock()
	b.pushLocked(w)
	b.mu.Unlock()
	return w
}

// TestSettleClassesAndCoDel extends TestSettleGrantVersusCancel to several
// lists, LIFO and drops: whatever decided for the waiter while it woke (a
// grant by Release or SetLimit, a CoDel drop), settle must leave every
// slot with exactly one owner: a slot passed on goes to the waiter a
// Release would pick (by class, then discipline), or back to the pool, or
// is retired if the limit was lowered meanwhile; a dropped waiter never
// holds one.
func TestSettleClassesAndCoDel(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	t0 := time.Unix(0, 0)
	const target = 5 * time.Millisecond
	type arrival struct {
		name  string
		class Class
		at    time.Duration // enqueue time after t0
	}
	tests := []struct {
		name       string
		codel      bool
		overloaded bool          // set before the grant (CoDel only)
		now        time.Duration // clock at the grant, after t0
		queue      []arrival     // w is the one named "w"
		meanwhile  string        // "grant" (Release), "set-limit" (2 -> SetLimit(2)), "drop"
		lowerTo    int           // SetLimit(lowerTo) after the grant, before w settles (0: no)
		ctxDone    bool
		doneBefore bool // w's ctx was done before the grant, as the hand-off sees it

		wantErr      error
		wantInflight int
		wantGranted  string // the other waiter that holds a slot after settle ("" = none)
		wantDropped  []string
	}{
		{name: "fifo/granted critical, ctx: slot to the default, not the older sheddable",
			queue:     []arrival{{"w", ClassCritical, 0}, {"s", ClassSheddable, 0}, {"d", ClassDefault, 1}},
			meanwhile: "grant", ctxDone: true, wantErr: context.Canceled, wantInflight: 1, wantGranted: "d"},
		{name: "fifo/granted critical, timer: kept",
			queue:     []arrival{{"w", ClassCritical, 0}, {"s", ClassSheddable, 0}},
			meanwhile: "grant", wantInflight: 1},
		{name: "fifo/granted by SetLimit, ctx: slot to the next by class",
			queue:     []arrival{{"w", ClassCritical, 0}, {"s", ClassSheddable, 0}, {"d", ClassDefault, 1}},
			meanwhile: "set-limit", ctxDone: true, wantErr: context.Canceled, wantInflight: 2, wantGranted: "d"},
		{name: "fifo/granted, limit lowered, ctx: slot retired, not passed on",
			queue:     []arrival{{"w", ClassDefault, 0}, {"d", ClassDefault, 1}},
			meanwhile: "set-limit", lowerTo: 1, ctxDone: true, wantErr: context.Canceled, wantInflight: 1},
		{name: "codel/LIFO granted newest, ctx: slot to the next newest",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:     []arrival{{"o1", ClassDefault, 0}, {"o2", ClassDefault, 2 * time.Millisecond}, {"o3", ClassDefault, 3 * time.Millisecond}, {"w", ClassDefault, 4 * time.Millisecond}},
			meanwhile: "grant", ctxDone: true, wantErr: context.Canceled, wantInflight: 1, wantGranted: "o3", wantDropped: []string{"o1"}},
		{name: "codel/LIFO granted critical, ctx: slot to the newest default, stale sheddable dropped",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:     []arrival{{"s", ClassSheddable, 0}, {"d1", ClassDefault, 2 * time.Millisecond}, {"d2", ClassDefault, 3 * time.Millisecond}, {"w", ClassCritical, 4 * time.Millisecond}},
			meanwhile: "grant", ctxDone: true, wantErr: context.Canceled, wantInflight: 1, wantGranted: "d2", wantDropped: []string{"s"}},
		{name: "codel/LIFO granted, ctx, everyone else stale: slot to the pool",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:     []arrival{{"o", ClassDefault, 0}, {"w", ClassDefault, 4 * time.Millisecond}},
			meanwhile: "grant", ctxDone: true, wantErr: context.Canceled, wantInflight: 0, wantDropped: []string{"o"}},
		{name: "codel/dropped, timer: ErrTimeout, the slot went to the fresh waiter",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:     []arrival{{"w", ClassDefault, 0}, {"f", ClassDefault, 4 * time.Millisecond}},
			meanwhile: "drop", wantErr: ErrTimeout, wantInflight: 1, wantGranted: "f"},
		{name: "codel/dropped, ctx: ctx.Err(), the slot went to the fresh waiter of a lower class",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:     []arrival{{"w", ClassCritical, 0}, {"f", ClassDefault, 4 * time.Millisecond}},
			meanwhile: "drop", ctxDone: true, wantErr: context.Canceled, wantInflight: 1, wantGranted: "f"},
		{name: "codel/everyone stale, granted the newest, timer: kept, the older one refused",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:     []arrival{{"o", ClassDefault, 0}, {"w", ClassDefault, time.Millisecond / 2}},
			meanwhile: "grant", wantInflight: 1, wantDropped: []string{"o"}},
		{name: "codel/everyone stale, granted the newest of the highest class, ctx: slot to the pool",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:     []arrival{{"d", ClassDefault, time.Millisecond / 2}, {"w", ClassCritical, 0}},
			meanwhile: "grant", ctxDone: true, wantErr: context.Canceled, wantInflight: 0, wantDropped: []string{"d"}},
		{name: "fifo/ctx done before the grant: passed over, the slot to the next waiter at once",
			queue:     []arrival{{"w", ClassDefault, 0}, {"d", ClassDefault, 1}},
			meanwhile: "grant", ctxDone: true, doneBefore: true, wantErr: context.Canceled, wantInflight: 1, wantGranted: "d"},
		{name: "fifo/ctx done before the grant, nobody else: passed over, slot to the pool",
			queue:     []arrival{{"w", ClassCritical, 0}},
			meanwhile: "grant", ctxDone: true, doneBefore: true, wantErr: context.Canceled, wantInflight: 0},
		{name: "codel/LIFO ctx done before the grant: passed over, the slot to the next newest",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:     []arrival{{"d", ClassDefault, 3 * time.Millisecond}, {"w", ClassDefault, 4 * time.Millisecond}},
			meanwhile: "grant", ctxDone: true, doneBefore: true, wantErr: context.Canceled, wantInflight: 1, wantGranted: "d"},
		{name: "codel/stale with ctx done: passed over at the sweep, a cancel and not a refusal",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:     []arrival{{"w", ClassDefault, 0}, {"f", ClassDefault, 4 * time.Millisecond}},
			meanwhile: "grant", ctxDone: true, doneBefore: true, wantErr: context.Canceled, wantInflight: 1, wantGranted: "f"},
		{name: "codel/queued, timer: ErrTimeout, a refusal that extends the overload",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:   []arrival{{"w", ClassDefault, 4 * time.Millisecond}},
			wantErr: ErrTimeout, wantInflight: 1},
		{name: "codel/queued, ctx: unlinks itself; the queue empties, the overload goes on",
			codel: true, overloaded: true, now: 6 * time.Millisecond,
			queue:   []arrival{{"w", ClassDefault, 4 * time.Millisecond}},
			ctxDone: true, wantErr: context.Canceled, wantInflight: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := clock.NewFake(t0)
			o := Options{MaxConcurrent: 1, MaxDepth: 8, MaxWait: time.Second, Clock: fake}
			if tt.codel {
				o.Discipline, o.CoDelTarget, o.CoDelInterval = CoDel, target, 20*time.Millisecond
			}
			b := NewWithOptions(o)
			b.testingOnGrant = func(inflight, limit int) {
				if inflight > limit {
					t.Errorf("granted with inflight %d over limit %d", inflight, limit)
				}
			}
			hold, ok := b.TryAcquire()
			if !ok {
				t.Fatal("TryAcquire on an empty bulkhead failed")
			}
			waiters := map[string]*waiter{}
			for _, a := range tt.queue {
				ctx := context.Background()
				if a.name == "w" && tt.doneBefore {
					ctx = canceled
				}
				waiters[a.name] = queueCtxAt(b, ctx, a.class, t0.Add(a.at))
			}
			w := waiters["w"]
			fake.Advance(tt.now)
			if tt.overloaded {
				forceOverload(b)
			}

			held := []Permit{}
			switch tt.meanwhile {
			case "grant", "drop":
				hold.Release()
			case "set-limit":
				b.SetLimit(2)
				held = append(held, hold)
			default:
				held = append(held, hold)
			}
			if tt.lowerTo > 0 {
				b.SetLimit(tt.lowerTo)
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
			if p != (Permit{}) {
				held = append(held, p)
			}

			b.mu.Lock()
			checkInvariantsLocked(t, b)
			if tt.doneBefore && w.state != waitAbandoned {
				t.Errorf("w, whose ctx was done before the hand-off, in state %d, want passed over", w.state)
			}
			var granted string
			var dropped []string
			for _, a := range tt.queue {
				if a.name == "w" {
					continue
				}
				switch waiters[a.name].state {
				case waitGranted:
					if granted != "" {
						t.Errorf("both %s and %s granted", granted, a.name)
					}
					granted = a.name
					held = append(held, waiters[a.name].permit)
				case waitDropped:
					dropped = append(dropped, a.name)
				}
			}
			if tt.overloaded {
				if !b.overloaded {
					t.Error("overload ended within its interval")
				}
				// A drop or a timeout is a refusal and moves the last
				// refusal to now; a grant or a cancel leaves it.
				refused := len(dropped) > 0 || tt.meanwhile == "drop" || errors.Is(err, ErrTimeout)
				if got := b.lastDrop.Equal(fake.Now()); got != refused {
					t.Errorf("last refusal %v at %v; refusals %v", b.lastDrop, fake.Now(), refused)
				}
			}
			b.mu.Unlock()
			if got := b.Inflight(); got != tt.wantInflight {
				t.Errorf("inflight %d, want %d", got, tt.wantInflight)
			}
			if granted != tt.wantGranted {
				t.Errorf("granted %q, want %q", granted, tt.wantGranted)
			}
			if !slices.Equal(dropped, tt.wantDropped) {
				t.Errorf("dropped %q, want %q", dropped, tt.wantDropped)
			}
			if len(held) != tt.wantInflight {
				t.Errorf("%d permits held, inflight %d: a slot lost or counted twice", len(held), tt.wantInflight)
			}

			// Unwind: settle every other waiter as its goroutine would
			// (the granted ones keep their permit, the rest cancel), then
			// release everything held; the count must come back to zero
			// with exactly the limit takeable.
			for _, a := range tt.queue {
				if a.name == "w" {
					continue
				}
				ctx := canceled
				if waiters[a.name].state == waitGranted {
					ctx = context.Background()
				}
				if _, err := b.settle(ctx, waiters[a.name], false); err == nil {
					continue // its permit is in held already
				}
			}
			for _, p := range held {
				p.Release()
			}
			assertDrained(t, b)
		})
	}
}

func goAcquireClass(b *Bulkhead, ctx context.Context, c Class) <-chan acquireResult {
	ch := make(chan acquireResult, 1)
	go func() {
		p, err := b.AcquireClass(ctx, c)
		ch <- acquireResult{p, err}
	}()
	return ch
}

// TestGrantAndCancelTogetherClasses forces the grant-versus-cancel race
// end to end with several lists and with CoDel's LIFO: the waiter A that a
// Release picks is canceled before its select runs. Whichever case the
// select takes, A returns context.Canceled and its slot goes on to the
// waiter a Release would pick next: by class under FIFO, and the newest
// under LIFO, never to two waiters and never lost.
func TestGrantAndCancelTogetherClasses(t *testing.T) {
	tests := []struct {
		name   string
		codel  bool
		aClass Class
		others []Class // queued before A, in order; the last one of the winning class wins
		want   int     // index in others of the waiter that gets A's slot
	}{
		{name: "fifo/critical A, slot to the default, not the older sheddable",
			aClass: ClassCritical, others: []Class{ClassSheddable, ClassDefault, ClassDefault}, want: 1},
		{name: "codel LIFO/default A, slot to the newest default",
			codel: true, aClass: ClassDefault, others: []Class{ClassDefault, ClassDefault, ClassSheddable}, want: 1},
		{name: "codel LIFO/critical A, slot to the newest critical",
			codel: true, aClass: ClassCritical, others: []Class{ClassCritical, ClassDefault, ClassCritical}, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 100 {
				fake := clock.NewFake(time.Unix(0, 0))
				o := Options{MaxConcurrent: 1, MaxDepth: 8, MaxWait: time.Second, Clock: fake}
				if tt.codel {
					o.Discipline = CoDel
				}
				b := NewWithOptions(o)
				b.testingOnGrant = func(inflight, limit int) {
					if inflight > limit {
						t.Errorf("granted with inflight %d over limit %d", inflight, limit)
					}
				}
				hold, _ := b.TryAcquire()
				var results []<-chan acquireResult
				var ctxs []*hookCtx
				for _, c := range tt.others {
					ctx := newHookCtx()
					close(ctx.proceed)
					results = append(results, goAcquireClass(b, ctx, c))
					<-ctx.entered
					ctxs = append(ctxs, ctx)
				}
				a := newHookCtx()
				resA := goAcquireClass(b, a, tt.aClass)
				<-a.entered
				if tt.codel {
					// Overloaded, as the detector would have it after a
					// standing interval; nobody is stale (time stands).
					forceOverload(b)
				}

				hold.Release() // A is the pick: granted
				close(a.done)  // and canceled, before it looks
				close(a.proceed)

				if r := <-resA; !errors.Is(r.err, context.Canceled) || r.p != (Permit{}) {
					t.Fatalf("A: %v, %v; want context.Canceled and no permit", r.p, r.err)
				}
				r := <-results[tt.want]
				if r.err != nil {
					t.Fatalf("waiter %d: %v; want the slot A passed on", tt.want, r.err)
				}
				if b.Inflight() != 1 || b.Depth() != len(tt.others)-1 {
					t.Fatalf("inflight %d depth %d after the pass-on", b.Inflight(), b.Depth())
				}
				for i, ctx := range ctxs {
					if i != tt.want {
						close(ctx.done)
						if r := <-results[i]; !errors.Is(r.err, context.Canceled) {
							t.Fatalf("waiter %d: %v, want context.Canceled (still queued)", i, r.err)
						}
					}
				}
				r.p.Release()
				assertDrained(t, b)
			}
		})
	}
}
