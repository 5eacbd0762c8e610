package overload

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/clock"
	"sluice/internal/datadriven"
)

// TestScenarios runs the data-driven scenarios in testdata/*.txt (the
// format of internal/datadriven): the memory guard and the saturation
// detector, driven sample by sample on a fake clock with injected
// readings. Run `go test ./overload -run TestScenarios -update` to
// rewrite the expected output from what the code does.
//
// Commands:
//
//	new [memory=N] [inflight=N]   a Manager on a fake clock at +0s with those limits
//	limits [memory=N] [inflight=N] SetLimits (absent keys: 0)
//	heap N                        the heap reading from now on
//	sample [p99=DUR] [n=N]        N times (default 1): advance the clock by the
//	                              interval (100ms), then Sample with the latency
//	                              reading p99 (default 0); prints each change of
//	                              state with its time, then the state
//	enter                         Enter; prints the cause
//	exit                          Exit
//	print                         the state
func TestScenarios(t *testing.T) {
	datadriven.RunFiles(t, filepath.Join("testdata", "*.txt"), func(t *testing.T) datadriven.Runner {
		return &harness{t: t}
	})
}

type harness struct {
	t     *testing.T
	clk   *clock.Fake
	epoch time.Time
	m     *Manager
	heap  atomic.Uint64
	p99   atomic.Int64
}

func (h *harness) Run(where, line string) []string {
	h.t.Helper()
	args := datadriven.ParseArgs(h.t, where, line)
	if args.Cmd != "new" && h.m == nil {
		h.t.Fatalf("%s: %s before new", where, args.Cmd)
	}
	limits := func() Limits {
		return Limits{MemoryLimit: int64(args.IntOr("memory", 0)), MaxInflight: int64(args.IntOr("inflight", 0))}
	}
	switch args.Cmd {
	case "new":
		h.epoch = time.Unix(1_700_000_000, 0)
		h.clk = clock.NewFake(h.epoch)
		h.m = New(limits(), Options{
			Clock: h.clk,
			Log:   slog.New(slog.DiscardHandler),
			Heap:  func() uint64 { return h.heap.Load() },
			Sched: func() time.Duration { return time.Duration(h.p99.Load()) },
		})
		return []string{h.state()}
	case "limits":
		h.m.SetLimits(limits())
		return []string{h.state()}
	case "heap":
		var n uint64
		if _, err := fmt.Sscan(args.Only("heap N"), &n); err != nil {
			h.t.Fatalf("%s: %v", where, err)
		}
		h.heap.Store(n)
		return nil
	case "sample":
		var p99 time.Duration
		if _, ok := args.Lookup("p99"); ok {
			p99 = args.Duration("p99")
		}
		h.p99.Store(int64(p99))
		var out []string
		prev := h.m.State()
		for range args.IntOr("n", 1) {
			h.clk.Advance(h.m.interval)
			h.m.Sample()
			s := h.m.State()
			if s.Shedding != prev.Shedding {
				out = append(out, fmt.Sprintf("%s shed %s -> %s", h.at(), prev.Shedding, s.Shedding))
			}
			if s.MemoryOver != prev.MemoryOver {
				out = append(out, fmt.Sprintf("%s memory over=%v", h.at(), s.MemoryOver))
			}
			prev = s
		}
		return append(out, h.state())
	case "enter":
		return []string{h.m.Enter().String()}
	case "exit":
		h.m.Exit()
		return []string{h.state()}
	case "print":
		return []string{h.state()}
	}
	h.t.Fatalf("%s: unknown command %q", where, args.Cmd)
	return nil
}

// at is the fake clock's time since the epoch, as "+1.2s".
func (h *harness) at() string { return "+" + h.clk.Now().Sub(h.epoch).String() }

func (h *harness) state() string {
	s := h.m.State()
	var b strings.Builder
	fmt.Fprintf(&b, "%s shed=%s saturated=%v memory_over=%v heap=%d", h.at(), s.Shedding, s.Saturated, s.MemoryOver, s.HeapBytes)
	fmt.Fprintf(&b, " inflight=%d refused: max_inflight=%d memory=%d", s.Inflight, s.Refused[Inflight], s.Refused[Memory])
	return b.String()
}
