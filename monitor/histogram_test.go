package monitor

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// maxRelErr is the bound the bucket layout promises: half a bucket width
// over the bucket's lower bound, 1/32.
const maxRelErr = 1.0 / 32

// t0 starts a 10 s period, so window tests know where slot edges are.
var t0 = time.Unix(1_772_000_000, 0)

func relErr(got, want time.Duration) float64 {
	return math.Abs(float64(got-want)) / float64(want)
}

func TestBucketLayout(t *testing.T) {
	if numBuckets != 433 {
		t.Fatalf("numBuckets = %d, want 433", numBuckets)
	}
	if 1<<minExp > minValue || minValue >= 1<<(minExp+1) {
		t.Fatalf("minExp %d does not hold minValue %v", minExp, minValue)
	}
	if low, _ := bucketLow(0); low != 992 {
		t.Fatalf("first bucket starts at %v, want 992ns", low)
	}
	if low, width := bucketLow(numBuckets - 1); low+width != maxValue || maxValue < 100*time.Second {
		t.Fatalf("last bucket ends at %v, want %v (>= 100s)", low+width, maxValue)
	}
	next := time.Duration(992)
	for b := range numBuckets {
		low, width := bucketLow(b)
		if low != next {
			t.Fatalf("bucket %d starts at %v, want %v (gap or overlap)", b, low, next)
		}
		if b > 0 && bucketOf(low) != b {
			t.Fatalf("bucketOf(%v) = %d, want %d", low, bucketOf(low), b)
		}
		if got := bucketOf(low + width - 1); got != b {
			t.Fatalf("bucketOf(%v) = %d, want %d", low+width-1, got, b)
		}
		next = low + width
	}
}

// Every value in range is reported within maxRelErr.
func TestBucketRelativeError(t *testing.T) {
	check := func(v time.Duration) {
		if e := relErr(bucketMid(bucketOf(v)), v); e > maxRelErr {
			t.Fatalf("%v reported as %v: relative error %.4f > %.4f", v, bucketMid(bucketOf(v)), e, maxRelErr)
		}
	}
	for v := float64(minValue); v < float64(maxValue); v *= 1.0007 {
		check(time.Duration(v))
	}
	for b := 1; b < numBuckets; b++ {
		low, width := bucketLow(b)
		check(low)
		check(low + width - 1)
	}
	check(minValue)
	check(maxValue - 1)
}

func TestHistogramClamps(t *testing.T) {
	h := NewHistogram()
	for _, d := range []time.Duration{-time.Second, 0, 1, 999} {
		h.Observe(t0, d)
	}
	q := h.Snapshot(t0)
	if q.Count != 4 || q.P50 != bucketMid(0) || q.P99 != bucketMid(0) {
		t.Fatalf("sub-µs values: %+v, want all at %v", q, bucketMid(0))
	}

	h = NewHistogram()
	for _, d := range []time.Duration{maxValue, 200 * time.Second, time.Hour, math.MaxInt64} {
		h.Observe(t0, d)
	}
	q = h.Snapshot(t0)
	if top := bucketMid(numBuckets - 1); q.Count != 4 || q.P50 != top || q.P99 != top {
		t.Fatalf("values past the top: %+v, want all at %v", q, top)
	}
}

func TestHistogramUniform(t *testing.T) {
	h := NewHistogram()
	// 1..1000 ms in random order: a histogram must not care.
	for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(1000) {
		h.Observe(t0.Add(time.Duration(i)*time.Millisecond), time.Duration(i+1)*time.Millisecond)
	}
	q := h.Snapshot(t0.Add(time.Second))
	if q.Count != 1000 {
		t.Fatalf("Count = %d, want 1000", q.Count)
	}
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{
		{"p50", q.P50, 500 * time.Millisecond},
		{"p95", q.P95, 950 * time.Millisecond},
		{"p99", q.P99, 990 * time.Millisecond},
	} {
		if e := relErr(c.got, c.want); e > maxRelErr {
			t.Errorf("%s = %v, want %v within %.1f%% (off by %.2f%%)", c.name, c.got, c.want, 100*maxRelErr, 100*e)
		}
	}
}

// The tail is found by rank: 2 slow requests in 100 are p99, 1 is not.
func TestHistogramTail(t *testing.T) {
	for _, tc := range []struct {
		slow    int
		wantP99 time.Duration
	}{
		{1, time.Millisecond},
		{2, time.Second},
	} {
		h := NewHistogram()
		for i := range 100 {
			d := time.Millisecond
			if i < tc.slow {
				d = time.Second
			}
			h.Observe(t0, d)
		}
		q := h.Snapshot(t0)
		if relErr(q.P50, time.Millisecond) > maxRelErr || relErr(q.P95, time.Millisecond) > maxRelErr ||
			relErr(q.P99, tc.wantP99) > maxRelErr {
			t.Errorf("%d slow of 100: %+v, want p50 = p95 ≈ 1ms, p99 ≈ %v", tc.slow, q, tc.wantP99)
		}
	}
}

func TestHistogramEmpty(t *testing.T) {
	var h Histogram // the zero value is ready
	if q := h.Snapshot(t0); q != (Quantiles{}) {
		t.Fatalf("empty: %+v", q)
	}
	h.Observe(t0, time.Millisecond)
	if q := h.Snapshot(t0); q.Count != 1 {
		t.Fatalf("zero-value Histogram: Count %d after one Observe", q.Count)
	}
}

// An observation counts for at least 50 s and less than 60 s, depending on
// where in its 10 s slot it fell.
func TestHistogramWindow(t *testing.T) {
	for _, off := range []time.Duration{0, 4 * time.Second, 10*time.Second - time.Nanosecond} {
		h := NewHistogram()
		at := t0.Add(off)
		h.Observe(at, time.Millisecond)
		for _, tc := range []struct {
			now  time.Time
			want uint64
		}{
			{at, 1},
			{at.Add(50 * time.Second), 1},
			{t0.Add(60*time.Second - time.Nanosecond), 1},
			{t0.Add(60 * time.Second), 0},
			{at.Add(60 * time.Second), 0},
			{at.Add(time.Hour), 0},
			{at.Add(-10 * time.Second), 0}, // a snapshot before the observation's period
		} {
			if q := h.Snapshot(tc.now); q.Count != tc.want {
				t.Errorf("observed at t0+%v, snapshot at t0+%v: Count %d, want %d",
					off, tc.now.Sub(t0), q.Count, tc.want)
			}
		}
	}
}

// One observation per second for two minutes: the snapshot holds the
// current period and the five before it.
func TestHistogramSlides(t *testing.T) {
	h := NewHistogram()
	for s := range 120 {
		now := t0.Add(time.Duration(s) * time.Second)
		h.Observe(now, time.Duration(s+1)*time.Millisecond)
		want := uint64(min(s+1, 50+s%10+1))
		if q := h.Snapshot(now); q.Count != want {
			t.Fatalf("at t0+%ds: Count %d, want %d", s, q.Count, want)
		}
	}
	// At t0+119s the window is 60..119 s, values 61..120 ms.
	q := h.Snapshot(t0.Add(119 * time.Second))
	if e := relErr(q.P50, 90*time.Millisecond); e > maxRelErr {
		t.Fatalf("p50 %v, want ≈ 90ms: old periods leak into the window", q.P50)
	}
}

// A slot reused a minute later is cleared first; an observation older than
// the period its slot now holds is dropped, not mixed in.
func TestHistogramSlotReuse(t *testing.T) {
	h := NewHistogram()
	for range 1000 {
		h.Observe(t0, time.Second)
	}
	later := t0.Add(60 * time.Second) // same slot, next lap
	h.Observe(later, time.Millisecond)
	q := h.Snapshot(later)
	if q.Count != 1 || relErr(q.P99, time.Millisecond) > maxRelErr {
		t.Fatalf("after reuse: %+v, want one observation of 1ms", q)
	}
	h.Observe(t0, time.Second) // a straggler from the old lap
	if q := h.Snapshot(later); q.Count != 1 {
		t.Fatalf("stale observation counted: Count %d", q.Count)
	}
}

func TestHistogramBefore1970(t *testing.T) {
	h := NewHistogram()
	at := time.Unix(-25, 0)
	h.Observe(at, time.Millisecond)
	h.Observe(at.Add(-10*time.Second), time.Millisecond)
	if q := h.Snapshot(at); q.Count != 2 {
		t.Fatalf("Count %d, want 2", q.Count)
	}
}

// Many goroutines, one period: nothing is lost. (A reset racing with
// observations may lose some, by design; a fresh slot needs no reset.)
func TestHistogramConcurrentObserve(t *testing.T) {
	h := NewHistogram()
	const goroutines, each = 16, 5000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				now := t0.Add(time.Duration(i%9000) * time.Millisecond)
				h.Observe(now, time.Duration(g*each+i)*time.Microsecond)
				if i%1000 == 0 {
					h.Snapshot(now) // readers run alongside
				}
			}
		})
	}
	wg.Wait()
	if q := h.Snapshot(t0); q.Count != goroutines*each {
		t.Fatalf("Count %d, want %d", q.Count, goroutines*each)
	}
}

func TestHistogramAllocs(t *testing.T) {
	h := NewHistogram()
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(7 * time.Millisecond) // crosses slot edges, so resets are measured too
		h.Observe(now, 3*time.Millisecond)
	}); n != 0 {
		t.Fatalf("Observe allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(100, func() { h.Snapshot(now) }); n != 0 {
		t.Fatalf("Snapshot allocates %v times per call", n)
	}
}

// The memory figure in Histogram's doc comment.
func TestHistogramSize(t *testing.T) {
	var h Histogram
	if got := unsafe.Sizeof(h); got != uintptr(histogramBytes) || histogramBytes != 10464 {
		t.Fatalf("Histogram is %d bytes, histogramBytes %d, doc says 10464", got, histogramBytes)
	}
}

func TestQuantilesJSON(t *testing.T) {
	q := Quantiles{Count: 3, P50: 1500 * time.Microsecond, P95: 20 * time.Millisecond, P99: 2 * time.Second}
	p50, p95, p99 := q.Millis()
	if p50 != 1.5 || p95 != 20 || p99 != 2000 {
		t.Fatalf("Millis = %v %v %v", p50, p95, p99)
	}
	body, err := json.Marshal(q)
	if err != nil || string(body) != `{"count":3}` {
		t.Fatalf("JSON %s, %v", body, err)
	}
}
