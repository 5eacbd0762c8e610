// Package fault decides which injected faults a request gets: a route's
// fault block compiled to a Spec, and a Sampler that draws each kind with
// its percent. It knows nothing of HTTP beyond header values; the proxy
// applies the plan (waits, answers, resets, paces).
package fault

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind is one kind of injected fault, the kind label of
// sluice_fault_injected_total.
type Kind uint8

const (
	Delay Kind = iota
	Abort
	BodyRate
	Reset
	NumKinds
)

var kindNames = [NumKinds]string{"delay", "abort", "body_rate", "reset"}

func (k Kind) String() string { return kindNames[k] }

// Kinds is a set of kinds, the faults one request got.
type Kinds uint8

// Add puts k in the set.
func (ks *Kinds) Add(k Kind) { *ks |= 1 << k }

// Has reports whether k is in the set.
func (ks Kinds) Has(k Kind) bool { return ks&(1<<k) != 0 }

// String lists the kinds in Kind order, comma-separated ("delay,abort").
func (ks Kinds) String() string {
	var b strings.Builder
	for k := range NumKinds {
		if ks.Has(k) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(k.String())
		}
	}
	return b.String()
}

// Spec is a compiled fault block. A percent is the share of eligible
// requests, 0 to 100. A kind is configured when Delay, AbortStatus,
// BodyRate is > 0 or HasReset is set.
type Spec struct {
	Delay       time.Duration
	DelayPct    float64
	AbortStatus int
	AbortPct    float64
	BodyRate    int64 // bytes per second; 0 = none
	HasReset    bool
	ResetPct    float64
	// Header, if not "", limits the fault to requests carrying it; see
	// config.Fault.Header for its value.
	Header         string
	CountAsFailure bool
}

// Override reads the value of a Spec's header: a number from 0 to 100
// (spaces trimmed) is the percent for every kind of that request; anything
// else is -1, keep the configured percents.
func Override(v string) float64 {
	p, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || !(p >= 0 && p <= 100) {
		return -1
	}
	return p
}

// Plan is what to do to one request. The zero Plan injects nothing.
type Plan struct {
	Delay    time.Duration // wait this long first; 0 = no delay
	Abort    int           // answer this status instead of forwarding; 0 = none
	Reset    bool          // reset the connection (wins over Abort)
	BodyRate int64         // pace the response body, bytes/s; 0 = none
}

// Sampler draws plans. It is safe for concurrent use: the source is
// guarded by a mutex, taken only for requests on a route with a fault.
type Sampler struct {
	mu  sync.Mutex // guards rnd
	rnd *rand.Rand
}

// NewSampler returns a Sampler drawing from rnd; tests pass a fixed seed.
// If rnd is nil, a randomly seeded source is used.
func NewSampler(rnd *rand.Rand) *Sampler {
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Sampler{rnd: rnd}
}

// Draw draws a plan for one request under s. override is the header's
// percent (Override), or < 0 to use the configured ones; with an override
// every configured kind, body_rate included, is drawn with it. Kinds are
// drawn independently, always all of them in one order, so a fixed seed
// gives a fixed sequence of plans.
func (sm *Sampler) Draw(s *Spec, override float64) Plan {
	pct := func(configured bool, p float64) float64 {
		switch {
		case !configured:
			return 0
		case override >= 0:
			return override
		}
		return p
	}
	sm.mu.Lock()
	delay, abort := sm.hitLocked(pct(s.Delay > 0, s.DelayPct)), sm.hitLocked(pct(s.AbortStatus > 0, s.AbortPct))
	body, reset := sm.hitLocked(pct(s.BodyRate > 0, 100)), sm.hitLocked(pct(s.HasReset, s.ResetPct))
	sm.mu.Unlock()
	var p Plan
	if delay {
		p.Delay = s.Delay
	}
	switch {
	case reset:
		p.Reset = true
	case abort:
		p.Abort = s.AbortStatus
	case body:
		p.BodyRate = s.BodyRate
	}
	return p
}

// hitLocked draws one Bernoulli trial with probability pct/100: 0 never
// hits, 100 always does (Float64 is in [0, 1)).
func (sm *Sampler) hitLocked(pct float64) bool {
	if pct <= 0 {
		return false
	}
	return sm.rnd.Float64()*100 < pct
}
