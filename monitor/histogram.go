package monitor

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Bucket layout, HDR-style (log-linear): every power of two of nanoseconds,
// [2^e, 2^(e+1)), is cut into 16 equal sub-buckets of width 2^(e-4). A
// bucket is reported by its midpoint, so the error is at most half a width
// over the bucket's lower bound, 2^(e-5) / 2^e = 1/32 ≈ 3.1% anywhere in the
// range. Eight sub-buckets would halve the memory but allow 6.25%.
//
// The first bucket is the one holding 1µs, [992ns, 1024ns); anything faster
// is counted there. The last is [133.1s, 137.4s), the top of 2^36 ns; 100 s
// needs that power and anything slower is counted there. That is 27 powers
// from 2^9 to 2^36, less the 15 sub-buckets of 2^9 below 992 ns: 433
// buckets.
const (
	subBits  = 4
	subCount = 1 << subBits // sub-buckets per power of two

	minValue = time.Microsecond // smallest value told apart; less is clamped up to it
	minExp   = 9                // 2^9 ns <= minValue < 2^10 ns
	maxExp   = 36               // the top power, [2^36, 2^37) ns
	maxValue = time.Duration(1) << (maxExp + 1)

	// firstRaw is minValue's sub-bucket within 2^minExp, the offset that
	// makes minValue's bucket number 0.
	firstRaw   = int(minValue>>(minExp-subBits)) & (subCount - 1)
	numBuckets = (maxExp-minExp+1)*subCount - firstRaw
)

// The sliding window: numSlots slots of slotSeconds each, a slot holding the
// counts of one period of Unix time. The slot for the period of now plus the
// five before it are live, so an observation counts for at least 50 s and
// at most 60 s.
const (
	slotSeconds = 10
	numSlots    = 6
)

// histogramBytes is unsafe.Sizeof(Histogram{}), checked by a test so that the
// figure in Histogram's comment cannot drift.
// A slot is its 8-byte epoch and the uint32 counters, padded to 8 bytes.
const histogramBytes = numSlots * ((8 + numBuckets*4 + 7) &^ 7)

// Histogram is a windowed latency histogram: p50/p95/p99 over roughly the
// last minute, with at most ~3.1% relative error (the midpoint of a
// log-linear bucket, 16 per power of two) from 1µs to 137 s.
//
// Observe is lock-free (a few atomic operations) and allocates nothing;
// it reads no clock, using the now it is given. Memory is fixed at 10,464
// bytes per histogram (6 slots × (433 uint32 counters + an 8-byte epoch)):
// sluice keeps two per route, about 20 KiB, or 20 MB for a thousand routes.
// uint32 counters bound a bucket to 4·10⁹ observations per 10 s slot, far
// beyond any one proxy.
//
// Slots are reset lazily: the first Observe whose now falls in a new period
// moves the slot's epoch to it with a CAS and clears the counts. An
// observation made by another goroutine in that same new period between the
// CAS and the clearing of its bucket is lost, and a Snapshot taken during
// the clearing may still see some of the old counts. Both windows last about
// a microsecond once per slot per 10 s, acceptable for monitoring and the
// price of never blocking the request path.
//
// The zero value is ready to use.
type Histogram struct {
	slots [numSlots]histSlot
}

type histSlot struct {
	// epoch is the period the counts belong to, floor(unix seconds / 10),
	// stored XOR signBit: the zero value then decodes to the smallest
	// int64, older than any real period, so a fresh slot needs no
	// initialisation and, holding no counts, no clearing either.
	epoch  atomic.Int64
	counts [numBuckets]atomic.Uint32
}

const signBit = math.MinInt64

// NewHistogram returns an empty Histogram.
func NewHistogram() *Histogram { return new(Histogram) }

// Observe counts one duration d measured at now. Values below 1µs count as
// 1µs and values past the top bucket (137 s) count in the top bucket. An
// observation whose now is more than a minute older than the slot it maps
// to has already left the window and is dropped.
func (h *Histogram) Observe(now time.Time, d time.Duration) {
	ep := epochOf(now)
	s := &h.slots[slotOf(ep)]
	if want := ep ^ signBit; s.epoch.Load() != want && !s.turn(want) {
		return
	}
	s.counts[bucketOf(d)].Add(1)
}

// turn moves the slot to the period want (encoded), clearing the counts of
// the period it held. It reports false when the slot already holds a later
// period, which means the caller's now is over a minute stale.
func (s *histSlot) turn(want int64) bool {
	for {
		cur := s.epoch.Load()
		switch {
		case cur == want: // another observer turned it
			return true
		case cur^signBit > want^signBit:
			return false
		case s.epoch.CompareAndSwap(cur, want):
			if cur != 0 { // a never-used slot has nothing to clear
				for i := range s.counts {
					// Load first: most buckets are 0, and a load
					// leaves the cache line shared where a store
					// would take it exclusive.
					if s.counts[i].Load() != 0 {
						s.counts[i].Store(0)
					}
				}
			}
			return true
		}
	}
}

// Snapshot merges the slots live at now into quantiles over the last 50 to
// 60 s. Slots of periods after now's are left out, as are stale ones, which
// is why they need no eager reset. It allocates nothing.
func (h *Histogram) Snapshot(now time.Time) Quantiles {
	ep := epochOf(now)
	var merged [numBuckets]uint64
	var total uint64
	for i := range h.slots {
		s := &h.slots[i]
		enc := s.epoch.Load()
		if enc == 0 {
			continue
		}
		if age := ep - (enc ^ signBit); age < 0 || age >= numSlots {
			continue
		}
		for b := range s.counts {
			c := uint64(s.counts[b].Load())
			merged[b] += c
			total += c
		}
	}
	q := Quantiles{Count: total}
	if total == 0 {
		return q
	}
	// Nearest rank, in integers: ceil(total·p/100) without float
	// rounding turning 95 into 96.
	r50, r95, r99 := (total*50+99)/100, (total*95+99)/100, (total*99+99)/100
	var cum uint64
	for b, c := range merged {
		if c == 0 {
			continue
		}
		cum += c
		mid := bucketMid(b)
		if q.P50 == 0 && cum >= r50 {
			q.P50 = mid
		}
		if q.P95 == 0 && cum >= r95 {
			q.P95 = mid
		}
		if cum >= r99 {
			q.P99 = mid
			break
		}
	}
	return q
}

// Quantiles is a Histogram snapshot. The durations are left out of JSON,
// where the API shows milliseconds (see Millis).
type Quantiles struct {
	Count uint64        `json:"count"` // observations in the window
	P50   time.Duration `json:"-"`
	P95   time.Duration `json:"-"`
	P99   time.Duration `json:"-"`
}

// Millis returns the quantiles in milliseconds, for the JSON API.
func (q Quantiles) Millis() (p50, p95, p99 float64) {
	const ms = float64(time.Millisecond)
	return float64(q.P50) / ms, float64(q.P95) / ms, float64(q.P99) / ms
}

// epochOf is the period of now, floor(unix seconds / slotSeconds); floor so
// that times before 1970 still map one period to one slot.
func epochOf(now time.Time) int64 {
	sec := now.Unix()
	ep := sec / slotSeconds
	if sec%slotSeconds < 0 {
		ep--
	}
	return ep
}

func slotOf(ep int64) int {
	i := ep % numSlots
	if i < 0 {
		i += numSlots
	}
	return int(i)
}

// bucketOf returns d's bucket: the power of two from the position of the
// top bit, the sub-bucket from the 4 bits below it.
func bucketOf(d time.Duration) int {
	if d < minValue {
		return 0
	}
	if d >= maxValue {
		return numBuckets - 1
	}
	v := uint64(d)
	e := bits.Len64(v) - 1
	sub := int(v>>(e-subBits)) & (subCount - 1)
	return (e-minExp)*subCount + sub - firstRaw
}

// bucketLow returns the lower bound of bucket b and its width.
func bucketLow(b int) (low, width time.Duration) {
	raw := b + firstRaw
	e := raw/subCount + minExp
	sub := raw % subCount
	width = time.Duration(1) << (e - subBits)
	return time.Duration(subCount+sub) * width, width
}

// bucketMid is the value bucket b reports: its midpoint.
func bucketMid(b int) time.Duration {
	low, width := bucketLow(b)
	return low + width/2
}
