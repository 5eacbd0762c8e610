package proxy

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
)

// Balancer picks one target from a non-empty slice of healthy targets. It
// must be safe for concurrent use and must not allocate.
type Balancer interface {
	Pick(targets []*Target) *Target
}

var (
	_ Balancer = (*roundRobin)(nil)
	_ Balancer = (*leastInflight)(nil)
	_ Balancer = (*p2c)(nil)
)

func newBalancer(policy string) (Balancer, error) {
	switch policy {
	case "round_robin", "":
		return &roundRobin{}, nil
	case "least_inflight":
		return &leastInflight{}, nil
	case "p2c":
		return &p2c{}, nil
	}
	return nil, fmt.Errorf("unknown balance policy %q", policy)
}

// roundRobin cycles through the targets in order.
type roundRobin struct{ next atomic.Uint64 }

func (b *roundRobin) Pick(ts []*Target) *Target {
	n := b.next.Add(1) - 1
	return ts[n%uint64(len(ts))]
}

// leastInflight picks a target with the fewest requests in flight. It scans
// every target, so the pick is the least loaded whatever the order of loads
// (unlike a scan that stops early); ties go to the first tied target after a
// rotating start, so equal loads still spread.
type leastInflight struct{ start atomic.Uint64 }

func (b *leastInflight) Pick(ts []*Target) *Target {
	n := len(ts)
	off := int(b.start.Add(1) % uint64(n))
	best := ts[off]
	bestLoad := best.inflight.Load()
	for i := 1; i < n && bestLoad > 0; i++ {
		t := ts[(off+i)%n]
		if l := t.inflight.Load(); l < bestLoad {
			best, bestLoad = t, l
		}
	}
	return best
}

// p2c is the power of two random choices (Mitzenmacher): pick two distinct
// targets at random and take the less loaded. It avoids the herd behaviour
// of a global least-loaded pick when load figures are slightly stale.
type p2c struct{}

func (p2c) Pick(ts []*Target) *Target {
	n := len(ts)
	if n == 1 {
		return ts[0]
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++ // distinct from i, still uniform
	}
	a, b := ts[i], ts[j]
	if b.inflight.Load() < a.inflight.Load() {
		return b
	}
	return a
}
