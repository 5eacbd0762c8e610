package proxy

import (
	"fmt"
	"net/url"
	"testing"
)

func targetsWithLoads(loads ...int64) []*Target {
	ts := make([]*Target, len(loads))
	for i, l := range loads {
		ts[i] = &Target{URL: &url.URL{Host: fmt.Sprintf("t%d", i)}}
		ts[i].inflight.Store(l)
	}
	return ts
}

// permutations returns every ordering of xs.
func permutations(xs []int64) [][]int64 {
	if len(xs) <= 1 {
		return [][]int64{append([]int64(nil), xs...)}
	}
	var out [][]int64
	for i := range xs {
		rest := append(append([]int64(nil), xs[:i]...), xs[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]int64{xs[i]}, p...))
		}
	}
	return out
}

func TestRoundRobinCycles(t *testing.T) {
	ts := targetsWithLoads(0, 0, 0)
	b := &roundRobin{}
	counts := map[*Target]int{}
	for i := 0; i < 300; i++ {
		counts[b.Pick(ts)]++
	}
	for _, tg := range ts {
		if counts[tg] != 100 {
			t.Errorf("%s picked %d times, want exactly 100", tg.URL.Host, counts[tg])
		}
	}
}

// TestLeastInflightAnyOrder checks the pick is a least-loaded target for
// every order of loads, not only ascending (the trap Caddy's leastRequests
// fell into).
func TestLeastInflightAnyOrder(t *testing.T) {
	b := &leastInflight{}
	for _, loads := range [][]int64{{0, 3, 7, 9}, {5, 2, 8, 2}, {4, 4, 4, 1}, {9, 8, 7, 6}} {
		for _, perm := range permutations(loads) {
			ts := targetsWithLoads(perm...)
			min := perm[0]
			for _, l := range perm {
				if l < min {
					min = l
				}
			}
			// Repeat so the rotating start offset visits every position.
			for i := 0; i < len(ts)*2; i++ {
				if got := b.Pick(ts).Inflight(); got != min {
					t.Fatalf("loads %v: picked load %d, want %d", perm, got, min)
				}
			}
		}
	}
}

func TestLeastInflightSpreadsTies(t *testing.T) {
	ts := targetsWithLoads(0, 0, 0, 0)
	b := &leastInflight{}
	counts := map[*Target]int{}
	for i := 0; i < 400; i++ {
		counts[b.Pick(ts)]++
	}
	for _, tg := range ts {
		if counts[tg] != 100 {
			t.Errorf("%s picked %d of 400 with equal loads, want 100", tg.URL.Host, counts[tg])
		}
	}
}

// TestP2C checks the two-choice property: the most loaded of several
// targets is never picked, and the least loaded wins whenever drawn, which
// happens for 2 of every 3 draws with three targets.
func TestP2C(t *testing.T) {
	for _, perm := range permutations([]int64{0, 5, 10}) {
		ts := targetsWithLoads(perm...)
		counts := map[int64]int{}
		const n = 6000
		for i := 0; i < n; i++ {
			counts[p2c{}.Pick(ts).Inflight()]++
		}
		if counts[10] != 0 {
			t.Errorf("loads %v: most loaded picked %d times", perm, counts[10])
		}
		// Expected 4000 of 6000; the bound is > 10 standard deviations wide.
		if counts[0] < 3600 || counts[0] > 4400 {
			t.Errorf("loads %v: least loaded picked %d of %d, want about 2/3", perm, counts[0], n)
		}
	}
	single := targetsWithLoads(3)
	if (p2c{}).Pick(single) != single[0] {
		t.Error("single target not picked")
	}
}
