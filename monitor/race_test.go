package monitor

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// API readers call Backpressure while rounds run and a reload replaces the
// routes. Run with -race; every reading must also be self-consistent.
func TestSamplerConcurrentReaders(t *testing.T) {
	const window = 64
	s, clk, _ := newTestSampler(t, window)
	sources := map[string]Source{}
	for i := range 20 {
		sources[fmt.Sprint("r", i)] = &fakeSource{pattern: []bool{i%2 == 0, i%3 == 0}, queue: 0.5, bulkhead: 0.25}
	}
	s.SetSources(sources)

	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for !stop.Load() {
				bp, ok := s.Backpressure(fmt.Sprint("r", g))
				if !ok {
					continue // between a reload that dropped it and one that restored it
				}
				if bp.Samples < 0 || bp.Samples > window || bp.Ratio < 0 || bp.Ratio > 1 || bp.Level != LevelOf(bp.Ratio) {
					t.Errorf("inconsistent reading %+v", bp)
					return
				}
				if _, err := json.Marshal(bp); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() { // reloads, half of them without r0..r3
		for i := 0; !stop.Load(); i++ {
			next := map[string]Source{}
			for name, src := range sources {
				if i%2 == 0 || name > "r3" {
					next[name] = src
				}
			}
			s.SetSources(next)
		}
	})

	for range 500 {
		step(s, clk, 1)
	}
	stop.Store(true)
	wg.Wait()
}

// concurrencyProbe fails the test if two rounds ever call it at once: the
// Source contract promises a single caller.
type concurrencyProbe struct {
	t      *testing.T
	inside atomic.Int32
}

func (p *concurrencyProbe) Backpressured(time.Time) bool {
	if p.inside.Add(1) != 1 {
		p.t.Error("Backpressured called by two rounds at once")
	}
	for range 100 { // widen the window a concurrent call would land in
		if p.inside.Load() != 1 {
			p.t.Error("Backpressured called by two rounds at once")
		}
	}
	p.inside.Add(-1)
	return false
}

func (p *concurrencyProbe) QueueUsage() float64    { return 0 }
func (p *concurrencyProbe) BulkheadUsage() float64 { return 0 }

func TestSampleRoundsAreSerialized(t *testing.T) {
	s, _, _ := newTestSampler(t, 1000)
	s.SetSources(map[string]Source{"r": &concurrencyProbe{t: t}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				s.Sample()
			}
		})
	}
	wg.Wait()
	if bp := mustBackpressure(t, s, "r"); bp.Samples != 800 {
		t.Fatalf("800 rounds gave %d samples", bp.Samples)
	}
}
