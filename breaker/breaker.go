package breaker

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"sluice/clock"
	"sluice/config"
)

// State is a breaker state. The numbers are the values of the
// sluice_breaker_state metric.
type State int

// The breaker states.
const (
	StateClosed   State = 0
	StateHalfOpen State = 1
	StateOpen     State = 2
)

// String returns "closed", "half-open" or "open", as used in metric labels
// and the API.
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateHalfOpen:
		return "half-open"
	case StateOpen:
		return "open"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Outcome is what a request admitted by Allow came to, as far as the
// upstream's health is concerned.
type Outcome int

// The outcomes. Any other value counts as Failure.
const (
	// Success: the upstream answered with a status outside FailureStatuses.
	Success Outcome = iota
	// Failure: a failure status, a connect error or a timeout.
	Failure
	// Ignored: the client cancelled, which says nothing about the upstream;
	// it counts neither way.
	Ignored
)

// ErrOpen is returned by Allow when the breaker refuses a request: it is
// open, or half-open with all its probes out.
var ErrOpen = errors.New("breaker: open")

// The errors the wrapper reports to gobreaker's done for each Outcome
// (Success reports nil). They never leave the package.
var (
	errFailure = errors.New("breaker: request failed")
	errIgnored = errors.New("breaker: outcome ignored")
)

// noGate is the gate's value when no open period is running.
const noGate = math.MinInt64

// Breaker is the circuit breaker of one upstream. It is safe for concurrent
// use.
type Breaker struct {
	name string
	clk  clock.Clock
	base time.Time      // clk.Now() at New; gates are offsets from it
	cfg  config.Breaker // FailureStatuses is b's own copy

	// cur is the gobreaker instance in charge, with its gate. OpenRemote
	// replaces it (see share.go); Allow and done work on the instance they
	// loaded, so a request always reports to the instance that admitted it.
	cur atomic.Pointer[core]

	// mu orders the replacement of cur against the state changes of the
	// instance being replaced, and guards the gate writes other than
	// gateClosed's clearing CAS. Lock order: a gobreaker lock, then mu.
	mu sync.Mutex

	transitions [3]atomic.Uint64 // indexed by State: entries into each

	// trips counts local trips not yet handed to the OnTrip hook. Raised
	// under gobreaker's lock, drained by the done call that reported the
	// failure once that lock is released.
	trips  atomic.Uint64
	onTrip atomic.Pointer[func(openFor time.Duration)]

	// handles recycles the done handles that Allow returns, so that
	// admitting a request allocates nothing beyond gobreaker's own closure.
	handles sync.Pool
}

// core is one gobreaker instance and the gate that times its open periods.
type core struct {
	b  *Breaker
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]

	// gate is the end of the current open period as an offset from b.base
	// on b.clk, or noGate. An offset rather than Unix nanoseconds so that
	// with the real clock both ends are read on the monotonic clock and a
	// wall clock step cannot stretch or cut the open period. Set in
	// onStateChange and by OpenRemote, both under b.mu; cleared by the
	// first caller of gateClosed to see it passed.
	gate atomic.Int64

	// forced makes ReadyToTrip true. Set only by OpenRemote on a core it
	// has not published yet, and false again before it publishes it.
	forced bool
}

// New returns the breaker of upstream name. cfg must be validated (see
// config.Breaker for the defaults); clk nil means clock.Real().
func New(name string, cfg config.Breaker, clk clock.Clock) *Breaker {
	if clk == nil {
		clk = clock.Real()
	}
	cfg.FailureStatuses = slices.Clone(cfg.FailureStatuses)
	b := &Breaker{name: name, clk: clk, base: clk.Now(), cfg: cfg}
	b.handles.New = func() any {
		h := &handle{b: b}
		h.fn = h.done
		return h
	}
	b.cur.Store(b.newCore())
	return b
}

// newCore returns a closed gobreaker instance with b's settings.
func (b *Breaker) newCore() *core {
	c := &core{b: b}
	c.gate.Store(noGate)
	cfg := b.cfg
	consecutive := clampUint32(cfg.ConsecutiveFailures)
	minRequests := clampUint32(cfg.MinRequests)
	ratio := cfg.FailureRatio
	c.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        b.name,
		MaxRequests: clampUint32(cfg.HalfOpenRequests),
		Interval:    cfg.Window,
		// Ten buckets; rounding up keeps gobreaker's Interval (rounded up to
		// a multiple of BucketPeriod) within 9ns of Window.
		BucketPeriod: (cfg.Window + 9) / 10,
		// The open period is timed by the gate on clk; see the package doc.
		Timeout: time.Nanosecond,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			return c.forced || readyToTrip(n, consecutive, minRequests, ratio)
		},
		OnStateChange: func(_ string, _, to gobreaker.State) { c.onStateChange(to) },
		IsExcluded:    func(err error) bool { return err == errIgnored },
		// IsSuccessful nil: a nil error is a success, anything else a failure.
	})
	return c
}

// readyToTrip is gobreaker's ReadyToTrip, called under its lock after each
// failure in the closed state.
func readyToTrip(c gobreaker.Counts, consecutive, minRequests uint32, ratio float64) bool {
	if consecutive > 0 && c.ConsecutiveFailures >= consecutive {
		return true
	}
	// Not Requests − TotalExclusions: Requests also holds the requests still
	// in flight, which have no outcome yet.
	counted := c.TotalSuccesses + c.TotalFailures
	return counted > 0 && counted >= minRequests &&
		float64(c.TotalFailures)/float64(counted) >= ratio
}

// onStateChange runs under gobreaker's lock: b.mu, atomics and a clock read
// only, never a call back into gobreaker or out to the OnTrip hook. A core
// that is not cur (replaced by OpenRemote, or being forced open by it)
// changes nothing: its outcomes belong to a period that has ended.
func (c *core) onStateChange(to gobreaker.State) {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur.Load() != c {
		return
	}
	switch to {
	case gobreaker.StateOpen:
		c.gate.Store(int64(addSat(b.since(), b.cfg.OpenTimeout)))
		// The gate before trips: the hook may run on another goroutine as
		// soon as trips is raised, and must find the breaker open.
		b.transitions[StateOpen].Add(1)
		b.trips.Add(1)
	case gobreaker.StateClosed:
		b.transitions[StateClosed].Add(1)
	}
	// Half-open is counted in gateClosed: gobreaker can get there early.
}

// gateClosed reports whether an open period is running on clk. The first
// caller to find it over clears it and counts the entry into half-open, so
// each open period yields one half-open entry however many callers race.
// In the closed state it costs one atomic load.
func (c *core) gateClosed() bool {
	for {
		g := c.gate.Load()
		if g == noGate {
			return false
		}
		if int64(c.b.since()) < g {
			return true
		}
		if c.gate.CompareAndSwap(g, noGate) {
			c.b.transitions[StateHalfOpen].Add(1)
			return false
		}
		// Another writer got there first: a caller that cleared it, or
		// OpenRemote extending the period it found running a moment ago.
		// Look again rather than assume the former, or this caller would
		// be admitted during the extension.
	}
}

func (b *Breaker) since() time.Duration { return b.clk.Now().Sub(b.base) }

// Allow asks to send one request to the upstream. If the breaker refuses,
// err is ErrOpen. Otherwise done must be called exactly once, with the
// request's outcome: a half-open probe that is never reported holds its slot
// for good, and calling done twice panics (or, if the handle has already
// been reused, makes the next holder's call panic).
func (b *Breaker) Allow() (done func(Outcome), err error) {
	c := b.cur.Load()
	if c.gateClosed() {
		return nil, ErrOpen
	}
	return b.admit(c)
}

// admit is Allow after the gate check. gobreaker, whose own open period is
// 1ns, may admit a caller that passed the gate just before a trip as a
// half-open probe, so the gate is checked again and such a caller's slot is
// handed back as Ignored (which frees it, see validRequests in gobreaker).
// The same goes for a caller admitted by a core that OpenRemote has since
// replaced: the new core's gate may already be over, and a probe of the old
// core would be one more than the new core's half-open period allows.
func (b *Breaker) admit(c *core) (func(Outcome), error) {
	gdone, err := c.cb.Allow()
	if err != nil {
		// gobreaker.ErrOpenState or gobreaker.ErrTooManyRequests.
		return nil, ErrOpen
	}
	// A caller that still finds c current here was admitted before any
	// replacement, like any request in flight when OpenRemote runs.
	if c.gateClosed() || b.cur.Load() != c {
		gdone(errIgnored)
		return nil, ErrOpen
	}
	h := b.handles.Get().(*handle)
	h.gdone = gdone
	h.leased.Store(true)
	return h.fn, nil
}

// handle adapts gobreaker's done, a func(error), to func(Outcome). Pooled:
// the func value is fixed per handle, which is what makes a double done
// undetectable once the handle is reused.
type handle struct {
	b      *Breaker
	fn     func(Outcome) // h.done, bound once so that Allow hands it out without allocating
	leased atomic.Bool   // true from Allow to done
	gdone  func(error)   // set before leased is stored true
}

func (h *handle) done(o Outcome) {
	if !h.leased.CompareAndSwap(true, false) {
		panic("breaker: done called more than once")
	}
	b, gdone := h.b, h.gdone
	h.gdone = nil
	b.handles.Put(h)
	switch o {
	case Success:
		gdone(nil)
	case Ignored:
		gdone(errIgnored)
	default:
		gdone(errFailure)
		// Only a failure trips. gdone has released gobreaker's lock, so
		// the hook runs outside it.
		if b.trips.Load() != 0 {
			b.reportTrips()
		}
	}
}

// Classify turns a forwarded request's result into an Outcome. A non-nil err
// wins over status: context.Canceled (the client left) is Ignored, any
// other error (connect errors, timeouts, context.DeadlineExceeded) is a
// Failure. Otherwise a status in FailureStatuses is a Failure and anything
// else a Success.
func (b *Breaker) Classify(status int, err error) Outcome {
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return Ignored
		}
		return Failure
	}
	if slices.Contains(b.cfg.FailureStatuses, status) {
		return Failure
	}
	return Success
}

// State returns the breaker's state. While an open period runs on clk it
// does not call gobreaker, whose State would move it to half-open.
func (b *Breaker) State() State {
	c := b.cur.Load()
	if c.gateClosed() {
		return StateOpen
	}
	switch c.cb.State() {
	case gobreaker.StateOpen:
		return StateOpen
	case gobreaker.StateHalfOpen:
		return StateHalfOpen
	default:
		return StateClosed
	}
}

// OpenFor returns the time left on b's clock until the breaker goes
// half-open, or 0 unless it is open. It is the basis of Retry-After, and lets
// a caller refuse before queueing for a breaker that would refuse anyway.
func (b *Breaker) OpenFor() time.Duration {
	g := b.cur.Load().gate.Load()
	if g == noGate {
		return 0
	}
	return max(time.Duration(g)-b.since(), 0)
}

// OpenUntil returns when, on b's clock, the breaker goes half-open, or the
// zero Time unless it is open.
func (b *Breaker) OpenUntil() time.Time {
	g := b.cur.Load().gate.Load()
	if g == noGate {
		return time.Time{}
	}
	now := b.clk.Now()
	left := time.Duration(g) - now.Sub(b.base)
	if left <= 0 {
		return time.Time{}
	}
	return now.Add(left)
}

// Transitions returns how many times the breaker entered state to (0 for an
// unknown state). The initial closed state is not an entry.
func (b *Breaker) Transitions(to State) uint64 {
	if to < StateClosed || to > StateOpen {
		return 0
	}
	// Settle a passed open period so the counts agree with State.
	b.cur.Load().gateClosed()
	return b.transitions[to].Load()
}

// Name returns the upstream's name.
func (b *Breaker) Name() string { return b.name }

func clampUint32(n int) uint32 {
	return uint32(min(max(n, 0), math.MaxUint32))
}

// addSat is a+d, saturating instead of overflowing for absurd timeouts.
func addSat(a, d time.Duration) time.Duration {
	if d > 0 && a > math.MaxInt64-d {
		return math.MaxInt64
	}
	return a + d
}
