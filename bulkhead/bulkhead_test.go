package bulkhead

import (
	"context"
	"errors"
	"math"
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

// TestFastPathAllocsClasses extends TestFastPathAllocs to the class API
// and to the CoDel discipline, whose fast path must not read the clock or
// allocate either.
func TestFastPathAllocsClasses(t *testing.T) {
	for _, d := range []Discipline{FIFO, CoDel} {
		t.Run(d.String(), func(t *testing.T) {
			b := NewWithOptions(Options{MaxConcurrent: 4, MaxDepth: 4, MaxWait: time.Second, Discipline: d,
				ShedAt: [numClasses]float64{1, 0.8, 0.5}})
			ctx := context.Background()
			p, _ := b.TryAcquireClass(ClassSheddable) // warm the permit free list
			p.Release()
			for c := range Class(numClasses) {
				if n := testing.AllocsPerRun(1000, func() {
					p, ok := b.TryAcquireClass(c)
					if !ok {
						t.Fatal("TryAcquireClass failed")
					}
					p.Release()
				}); n != 0 {
					t.Errorf("TryAcquireClass(%v)+Release: %v allocs, want 0", c, n)
				}
				if n := testing.AllocsPerRun(1000, func() {
					p, err := b.AcquireClass(ctx, c)
					if err != nil {
						t.Fatal(err)
					}
					p.Release()
				}); n != 0 {
					t.Errorf("AcquireClass(%v)+Release: %v allocs, want 0", c, n)
				}
			}
			if n := testing.AllocsPerRun(1000, func() {
				_, _, _ = b.Limit(), b.DepthOf(ClassCritical), b.DepthOf(ClassSheddable)
			}); n != 0 {
				t.Errorf("Limit+DepthOf: %v allocs, want 0", n)
			}
		})
	}
}

func TestNewWithOptions(t *testing.T) {
	valid := Options{MaxConcurrent: 2, MaxDepth: 10, MaxWait: time.Second}
	tests := []struct {
		name      string
		edit      func(*Options)
		wantPanic string
	}{
		{name: "valid", edit: func(*Options) {}},
		{name: "shed_at defaults", edit: func(o *Options) { o.ShedAt = [numClasses]float64{1, 0.8, 0.5} }},
		{name: "codel with defaults", edit: func(o *Options) { o.Discipline = CoDel }},
		{name: "zero slots", edit: func(o *Options) { o.MaxConcurrent = 0 }, wantPanic: "MaxConcurrent must be >= 1, got 0"},
		{name: "negative depth", edit: func(o *Options) { o.MaxDepth = -1 }, wantPanic: "MaxDepth must be >= 0, got -1"},
		{name: "negative wait", edit: func(o *Options) { o.MaxWait = -1 }, wantPanic: "MaxWait must be >= 0, got -1ns"},
		{name: "shed above 1", edit: func(o *Options) { o.ShedAt[ClassDefault] = 1.5 }, wantPanic: "ShedAt[default] must be in [0, 1], got 1.5"},
		{name: "shed negative", edit: func(o *Options) { o.ShedAt[ClassSheddable] = -0.1 }, wantPanic: "ShedAt[sheddable] must be in [0, 1], got -0.1"},
		{name: "shed NaN", edit: func(o *Options) { o.ShedAt[ClassCritical] = math.NaN() }, wantPanic: "ShedAt[critical] must be in [0, 1], got NaN"},
		{name: "unknown discipline", edit: func(o *Options) { o.Discipline = 7 }, wantPanic: "unknown Discipline(7)"},
		{name: "negative target", edit: func(o *Options) { o.Discipline, o.CoDelTarget = CoDel, -1 }, wantPanic: "CoDelTarget must be >= 0"},
		{name: "negative interval", edit: func(o *Options) { o.Discipline, o.CoDelInterval = CoDel, -1 }, wantPanic: "CoDelInterval must be >= 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid
			tt.edit(&o)
			var b *Bulkhead
			msg := panicOf(func() { b = NewWithOptions(o) })
			if tt.wantPanic != "" {
				if !strings.Contains(msg, tt.wantPanic) {
					t.Fatalf("panic %q, want one containing %q", msg, tt.wantPanic)
				}
				return
			}
			if msg != "" {
				t.Fatalf("unexpected panic: %s", msg)
			}
			if b.Limit() != o.MaxConcurrent || b.MaxConcurrent() != o.MaxConcurrent || b.MaxDepth() != o.MaxDepth || b.MaxWait() != o.MaxWait {
				t.Errorf("getters: %d %d %d %v", b.Limit(), b.MaxConcurrent(), b.MaxDepth(), b.MaxWait())
			}
			if b.clk == nil {
				t.Error("nil clock not defaulted to clock.Real()")
			}
			if o.Discipline == CoDel && (b.target != DefaultCoDelTarget || b.interval != DefaultCoDelInterval) {
				t.Errorf("CoDel defaults: target %v interval %v", b.target, b.interval)
			}
		})
	}
}

// TestShedDepth pins the threshold arithmetic, including fractions whose
// float64 product lands just above a whole number.
func TestShedDepth(t *testing.T) {
	tests := []struct {
		at       float64
		maxDepth int
		want     int
	}{
		{0, 10, 10}, // zero value: no shedding
		{1, 10, 10},
		{0.5, 10, 5},
		{0.8, 10, 8},
		{0.7, 10, 7}, // 0.7*10 == 7.000000000000001 in float64
		{0.1, 30, 3}, // 0.1*30 == 3.0000000000000004
		{0.5, 5, 3},  // refused at 3/5 = 60%, not at 2/5 = 40%
		{0.8, 5, 4},
		{0.01, 10, 1},
		{0.5, 0, 0},
		{0.5, 1, 1},
	}
	for _, tt := range tests {
		if got := shedDepth(tt.at, tt.maxDepth); got != tt.want {
			t.Errorf("shedDepth(%v, %d) = %d, want %d", tt.at, tt.maxDepth, got, tt.want)
		}
	}
}

func TestClassAndDisciplineNames(t *testing.T) {
	for c, want := range map[Class]string{ClassCritical: "critical", ClassDefault: "default", ClassSheddable: "sheddable", 3: "Class(3)"} {
		if got := c.String(); got != want {
			t.Errorf("Class(%d).String() = %q, want %q", uint8(c), got, want)
		}
	}
	for d, want := range map[Discipline]string{FIFO: "fifo", CoDel: "codel", 2: "Discipline(2)"} {
		if got := d.String(); got != want {
			t.Errorf("Discipline(%d).String() = %q, want %q", uint8(d), got, want)
		}
	}
	b := New(1, 1, time.Second, nil)
	if msg := panicOf(func() { b.AcquireClass(context.Background(), 3) }); msg != "bulkhead: invalid Class(3)" {
		t.Errorf("AcquireClass(3): panic %q", msg)
	}
	if msg := panicOf(func() { b.TryAcquireClass(3) }); msg != "bulkhead: invalid Class(3)" {
		t.Errorf("TryAcquireClass(3): panic %q", msg)
	}
	if msg := panicOf(func() { b.SetLimit(0) }); !strings.Contains(msg, "must be >= 1") {
		t.Errorf("SetLimit(0): panic %q", msg)
	}
	assertDrained(t, b)
}

// deadlineCtx has a deadline its Done does not follow, as the proxy's
// queue-wait context: the wait must end at the deadline, on the
// bulkhead's clock, by its own timer.
type deadlineCtx struct {
	*hookCtx
	deadline time.Time
}

func (c deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// TestWaitEndsAtCtxDeadline: a deadline sooner than max_wait bounds the
// wait's timer, and one later than max_wait does not lengthen it.
func TestWaitEndsAtCtxDeadline(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Duration // from now
		maxWait  time.Duration
		ends     time.Duration // the fake time the wait ends at
	}{
		{"deadline first", time.Minute, time.Hour, time.Minute},
		{"max_wait first", time.Hour, time.Minute, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := clock.NewFake(time.Unix(0, 0))
			b := New(1, 1, tc.maxWait, fake)
			hold, _ := b.TryAcquire()
			h := newHookCtx()
			close(h.proceed)
			res := goAcquire(b, deadlineCtx{h, fake.Now().Add(tc.deadline)})
			<-h.entered
			fake.Advance(tc.ends - time.Second)
			select {
			case r := <-res:
				t.Fatalf("the wait ended early: %v", r.err)
			case <-time.After(10 * time.Millisecond):
			}
			fake.Advance(time.Second)
			if r := <-res; !errors.Is(r.err, ErrTimeout) {
				t.Fatalf("the wait ended with %v, want ErrTimeout", r.err)
			}
			hold.Release()
			assertDrained(t, b)
		})
	}
}
