package admission

import (
	"sync/atomic"
	"time"
)

// serviceTime is an exponentially weighted mean of how long admitted
// requests hold their slot, the basis of the queue's Retry-After. The
// weight of 1/8 follows roughly the last 8 to 16 requests: recent enough to
// track a slowing upstream, smooth enough to ignore one outlier. Lock-free.
type serviceTime struct{ ns atomic.Int64 }

func (s *serviceTime) observe(d time.Duration) {
	if d <= 0 {
		d = 1
	}
	for {
		old := s.ns.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if s.ns.CompareAndSwap(old, next) {
			return
		}
	}
}

// mean returns the current estimate, 0 before any request finished.
func (s *serviceTime) mean() time.Duration { return time.Duration(s.ns.Load()) }
