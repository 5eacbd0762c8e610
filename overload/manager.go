package overload

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"sluice/clock"
)

// Limits are the configured limits (server.max_connections,
// server.max_inflight, server.memory_limit resolved to bytes). Zero means
// unlimited, or off.
type Limits struct {
	MaxConnections int64
	MaxInflight    int64
	MemoryLimit    int64
	// SchedLatency is the saturation detector's threshold; 0 keeps
	// Options.Detector's (default 10ms), a negative value turns the
	// detector off (it sheds nothing and forgets its state).
	SchedLatency time.Duration
}

// Options tune a Manager. The zero value is usable.
type Options struct {
	// Clock paces the sampler and times the detector's states. If nil,
	// the wall clock is used.
	Clock clock.Clock
	// Log receives the state changes. If nil, slog.Default() is used.
	Log *slog.Logger
	// Interval is the sampling period. Default 100ms.
	Interval time.Duration
	// Heap returns the heap size the memory guard compares with the limit.
	// If nil, the live heap from runtime/metrics (/gc/heap/live:bytes).
	Heap func() uint64
	// Sched returns the p99 scheduling latency since its previous call.
	// If nil, the p99 of the delta of runtime/metrics /sched/latencies:seconds.
	Sched func() time.Duration
	// Detector tunes the saturation detector; zero fields take its defaults.
	Detector DetectorOptions
}

// Cause says why the door refused a request.
type Cause uint8

const (
	// Admitted: not refused.
	Admitted Cause = iota
	// Inflight: server.max_inflight requests were in flight.
	Inflight
	// Memory: the heap is over server.memory_limit.
	Memory
	// Saturation: the saturation detector sheds the request's class.
	Saturation

	numCauses
)

var causeNames = [numCauses]string{Admitted: "admitted", Inflight: "max_inflight", Memory: "memory", Saturation: "saturation"}

// String is the name the API reports refusals under.
func (c Cause) String() string {
	if c < numCauses {
		return causeNames[c]
	}
	return fmt.Sprintf("Cause(%d)", uint8(c))
}

// Causes lists the refusal causes, for reporting.
var Causes = []Cause{Inflight, Memory, Saturation}

// Manager is the process's overload manager. The request path calls
// Enter, Exit and Shedding; the listener wrapper counts connections; Run
// (or a test, by hand) calls Sample. All methods are safe for concurrent
// use.
type Manager struct {
	clk      clock.Clock
	log      *slog.Logger
	interval time.Duration
	heap     func() uint64
	sched    func() time.Duration

	maxConns    atomic.Int64
	maxInflight atomic.Int64
	memLimit    atomic.Int64

	connsOpen    atomic.Int64
	connsRefused atomic.Uint64
	inflight     atomic.Int64
	refused      [numCauses]atomic.Uint64

	memOver   atomic.Bool
	shed      atomic.Uint32 // a Shed
	saturated atomic.Bool   // the last latency sample was over the threshold
	lastHeap  atomic.Uint64
	lastSched atomic.Int64 // time.Duration

	mu           sync.Mutex // guards det, detOff and failing; serialises Sample
	det          detector
	detThreshold time.Duration // Options.Detector's threshold, defaulted
	detOff       bool          // Limits.SchedLatency < 0: the detector is off
	failing      bool          // the previous Sample panicked (logged once)
	lingering    lingerSet
	parked       parkSet
	// parkedRefused counts the requests answered with the refusal on
	// parked connections.
	parkedRefused atomic.Uint64
}

// New returns a Manager enforcing l.
func New(l Limits, o Options) *Manager {
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Interval <= 0 {
		o.Interval = 100 * time.Millisecond
	}
	if o.Heap == nil {
		o.Heap = liveHeap()
	}
	if o.Sched == nil {
		o.Sched = schedP99()
	}
	m := &Manager{clk: o.Clock, log: o.Log, interval: o.Interval, heap: o.Heap, sched: o.Sched,
		det: newDetector(o.Detector)}
	m.detThreshold = m.det.Threshold
	m.SetLimits(l)
	return m
}

// SetLimits replaces the limits (a config reload). A lower limit refuses
// new work until the count falls under it; nothing already accepted is
// cut. Turning the memory limit off ends a memory refusal at once.
func (m *Manager) SetLimits(l Limits) {
	m.mu.Lock()
	switch {
	case l.SchedLatency < 0:
		m.detOff = true
		m.det = newDetector(m.det.DetectorOptions) // back to calm, nothing remembered
		m.shed.Store(uint32(ShedNone))
		m.saturated.Store(false)
	case l.SchedLatency > 0:
		m.detOff = false
		m.det.Threshold = l.SchedLatency
	default:
		m.detOff = false
		m.det.Threshold = m.detThreshold
	}
	m.mu.Unlock()
	m.maxConns.Store(max(l.MaxConnections, 0))
	m.maxInflight.Store(max(l.MaxInflight, 0))
	m.memLimit.Store(max(l.MemoryLimit, 0))
	if l.MemoryLimit <= 0 {
		m.memOver.Store(false)
	}
}

// Limits returns the limits in force.
func (m *Manager) Limits() Limits {
	m.mu.Lock()
	sched := m.det.Threshold
	if m.detOff {
		sched = -1
	}
	m.mu.Unlock()
	return Limits{MaxConnections: m.maxConns.Load(), MaxInflight: m.maxInflight.Load(), MemoryLimit: m.memLimit.Load(), SchedLatency: sched}
}

// Enter lets a request in at the door, before routing, or says why not.
// A request let in (Admitted) must call Exit exactly once when it is done;
// a refused one holds nothing. The memory guard is checked first: over
// the limit nothing is let in. max_inflight is held exactly, by a
// compare-and-swap, so refused requests never inflate the count that
// admits others.
func (m *Manager) Enter() Cause {
	if m.memOver.Load() {
		m.refused[Memory].Add(1)
		return Memory
	}
	limit := m.maxInflight.Load()
	if limit == 0 {
		m.inflight.Add(1)
		return Admitted
	}
	for {
		n := m.inflight.Load()
		if n >= limit {
			m.refused[Inflight].Add(1)
			return Inflight
		}
		if m.inflight.CompareAndSwap(n, n+1) {
			return Admitted
		}
	}
}

// Exit ends a request Enter let in.
func (m *Manager) Exit() { m.inflight.Add(-1) }

// Shedding is how much the saturation detector sheds now. The proxy
// refuses a request whose class it covers and tells CountShed.
func (m *Manager) Shedding() Shed { return Shed(m.shed.Load()) }

// CountShed counts a request refused because Shedding covered its class.
func (m *Manager) CountShed() { m.refused[Saturation].Add(1) }

// Run samples every Options.Interval until ctx is done.
func (m *Manager) Run(ctx context.Context) {
	for {
		t := m.clk.NewTimer(m.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		m.Sample()
	}
}

// Sample reads the heap and the scheduling latency once and moves the
// memory guard and the saturation detector. Run calls it every interval;
// tests call it by hand. A panicking source is recovered and logged once,
// and leaves the state as it was.
func (m *Manager) Sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clk.Now()
	heap, p99, err := m.read()
	if err != nil {
		if !m.failing {
			m.log.Error("overload: a source panicked; the state is kept until it recovers", "panic", err.Error())
		}
		m.failing = true
		return
	}
	if m.failing {
		m.log.Info("overload: the sources work again")
		m.failing = false
	}
	m.lastHeap.Store(heap)
	m.lastSched.Store(int64(p99))

	// The guard turns on at the limit and off only under 95 % of it, so
	// that a heap hovering at the limit does not flap between refusing
	// and admitting.
	if limit := m.memLimit.Load(); limit > 0 {
		over := m.memOver.Load()
		switch {
		case !over && heap >= uint64(limit):
			m.memOver.Store(true)
			m.log.Warn("overload: heap over server.memory_limit; refusing new requests", "heap_bytes", heap, "limit_bytes", limit)
		case over && heap < uint64(limit)-uint64(limit)/20:
			m.memOver.Store(false)
			m.log.Info("overload: heap back under server.memory_limit; taking requests again", "heap_bytes", heap, "limit_bytes", limit)
		}
	}

	if m.detOff {
		return
	}
	before := m.det.level
	level := m.det.observe(now, p99)
	m.saturated.Store(p99 > m.det.Threshold)
	m.shed.Store(uint32(level))
	if level != before {
		m.log.Warn("overload: saturation detector changed state", "from", before.String(), "to", level.String(),
			"sched_latency_p99_ms", float64(p99.Microseconds())/1000)
	}
}

// read calls the sources, turning a panic into an error.
func (m *Manager) read() (heap uint64, p99 time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v\n%s", r, debug.Stack())
		}
	}()
	return m.heap(), m.sched(), nil
}

// State is a snapshot for metrics and the API.
type State struct {
	Shedding   Shed
	MemoryOver bool
	// Saturated: the last latency sample was over the detector's threshold.
	Saturated bool
	HeapBytes uint64        // at the last sample
	SchedP99  time.Duration // at the last sample
	Limits    Limits

	ConnectionsOpen    int64
	ConnectionsRefused uint64
	// ConnectionsParked are refused connections kept open and answered
	// request by request; ParkedRefused counts those answers.
	ConnectionsParked int64
	ParkedRefused     uint64
	Inflight          int64
	// Refused counts the requests refused overloaded, by cause (index
	// with a Cause): Inflight and Memory at the door, Saturation on the
	// route whose class was shed.
	Refused [numCauses]uint64
}

// Overloaded reports whether the manager sheds now: the memory guard is
// on or the detector sheds a class (sluice_overload_state 1).
func (s State) Overloaded() bool { return s.MemoryOver || s.Shedding != ShedNone }

// State returns a snapshot.
func (m *Manager) State() State {
	s := State{
		Shedding:           m.Shedding(),
		MemoryOver:         m.memOver.Load(),
		Saturated:          m.saturated.Load(),
		HeapBytes:          m.lastHeap.Load(),
		SchedP99:           time.Duration(m.lastSched.Load()),
		Limits:             m.Limits(),
		ConnectionsOpen:    m.connsOpen.Load(),
		ConnectionsRefused: m.connsRefused.Load(),
		ConnectionsParked:  int64(m.parked.len()),
		ParkedRefused:      m.parkedRefused.Load(),
		Inflight:           m.inflight.Load(),
	}
	for _, c := range Causes {
		s.Refused[c] = m.refused[c].Load()
	}
	return s
}
