package admin

import (
	"sync"
	"time"

	"sluice/admission"
	"sluice/proxy"
)

// rateTracker turns the routes' monotonic counters into per-second rates
// for the API: it keeps the last few one-second samples of each route and
// divides the growth across them by the time they span (up to 5 s), which
// smooths a single bursty second without lagging far behind.
type rateTracker struct {
	mu   sync.Mutex // guards hist
	hist map[string][]rateSample
}

const rateSamples = 6

type rateSample struct {
	at       time.Time
	admitted uint64
	rejected []uint64 // by admission.Rejections index
}

type routeRates struct {
	admitted, rejected float64
	byReason           []float64 // by admission.Rejections index
}

func newRateTracker() *rateTracker { return &rateTracker{hist: map[string][]rateSample{}} }

func (t *rateTracker) tick(now time.Time, routes []*proxy.Route) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := make(map[string]bool, len(routes))
	for _, rt := range routes {
		adm := rt.Admission()
		s := rateSample{at: now, admitted: adm.Admitted(), rejected: make([]uint64, len(admission.Rejections))}
		for i, r := range admission.Rejections {
			s.rejected[i] = adm.Rejected(r)
		}
		h := append(t.hist[rt.Name()], s)
		if len(h) > rateSamples {
			h = h[len(h)-rateSamples:]
		}
		t.hist[rt.Name()] = h
		seen[rt.Name()] = true
	}
	for name := range t.hist {
		if !seen[name] {
			delete(t.hist, name) // a route removed by a reload
		}
	}
}

func (t *rateTracker) rates(name string) routeRates {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := routeRates{byReason: make([]float64, len(admission.Rejections))}
	h := t.hist[name]
	if len(h) < 2 {
		return out
	}
	first, last := h[0], h[len(h)-1]
	secs := last.at.Sub(first.at).Seconds()
	if secs <= 0 {
		return out
	}
	out.admitted = float64(last.admitted-first.admitted) / secs
	for i := range last.rejected {
		r := float64(last.rejected[i]-first.rejected[i]) / secs
		out.byReason[i] = r
		out.rejected += r
	}
	return out
}
