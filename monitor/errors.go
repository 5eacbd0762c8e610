package monitor

import (
	"sync"

	"sluice/clock"
)

// ErrorRingSize is how many upstream failures an ErrorRing keeps: enough
// to see a pattern on the admin API, small enough that every route and
// upstream can hold one without a config key.
const ErrorRingSize = 64

// ErrorEntry is one upstream failure as the admin API reports it.
type ErrorEntry struct {
	Time   int64  `json:"time"`   // Unix ms
	Target string `json:"target"` // host:port
	Status int    `json:"status"` // what sluice answered, or the upstream's 5xx
	Kind   string `json:"kind"`   // refused, reset, timeout or 5xx
	Detail string `json:"detail"` // short cause, for operators only
}

// ErrorRing keeps the last ErrorRingSize failures in a fixed array; Add
// is called only on failures, so successes cost nothing.
type ErrorRing struct {
	clk   clock.Clock
	mu    sync.Mutex
	buf   [ErrorRingSize]ErrorEntry
	total uint64 // entries ever added
}

// NewErrorRing returns an empty ring that stamps entries with clk.
func NewErrorRing(clk clock.Clock) *ErrorRing { return &ErrorRing{clk: clk} }

// Add records e, stamping its Time with the ring's clock.
func (r *ErrorRing) Add(e ErrorEntry) {
	e.Time = r.clk.Now().UnixMilli()
	r.mu.Lock()
	r.buf[r.total%ErrorRingSize] = e
	r.total++
	r.mu.Unlock()
}

// Recent returns the kept entries newest first, and whether older ones
// were dropped.
func (r *ErrorRing) Recent() (out []ErrorEntry, truncated bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(r.total, ErrorRingSize)
	out = make([]ErrorEntry, 0, n)
	for i := uint64(1); i <= n; i++ {
		out = append(out, r.buf[(r.total-i)%ErrorRingSize])
	}
	return out, r.total > ErrorRingSize
}

// Len returns how many entries the ring holds.
func (r *ErrorRing) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int(min(r.total, ErrorRingSize))
}
