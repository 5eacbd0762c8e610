package main

import (
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in nanoseconds: 32 linear
// sub-buckets per power of two, so a reported quantile is within about 3%
// of the true value. Recording is a few integer ops and allocates nothing.
type hist struct {
	n [64 * 32]uint64
}

const subBits = 5

func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	exp := bits.Len64(v) - 1
	mant := (v >> (exp - subBits)) & (1<<subBits - 1)
	return (exp-subBits+1)<<subBits + int(mant)
}

// lowOf is the smallest value that falls into bucket i.
func lowOf(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	exp := i>>subBits + subBits - 1
	mant := uint64(i & (1<<subBits - 1))
	return (1<<subBits | mant) << (exp - subBits)
}

func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.n[bucketOf(uint64(d))]++
}

func (h *hist) merge(o *hist) {
	for i, c := range o.n {
		h.n[i] += c
	}
}

func (h *hist) total() uint64 {
	var t uint64
	for _, c := range h.n {
		t += c
	}
	return t
}

// quantile returns the midpoint of the bucket holding the q-th value.
func (h *hist) quantile(q float64) time.Duration {
	t := h.total()
	if t == 0 {
		return 0
	}
	rank := uint64(q*float64(t-1)) + 1
	var seen uint64
	for i, c := range h.n {
		seen += c
		if seen >= rank {
			lo, hi := lowOf(i), lowOf(i+1)
			return time.Duration((lo + hi) / 2)
		}
	}
	return 0
}

// max returns the upper edge of the highest non-empty bucket.
func (h *hist) max() time.Duration {
	for i := len(h.n) - 1; i >= 0; i-- {
		if h.n[i] > 0 {
			return time.Duration(lowOf(i + 1))
		}
	}
	return 0
}
