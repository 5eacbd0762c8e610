package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/admission"
	"sluice/breaker"
	"sluice/clock"
	"sluice/config"
	"sluice/proxy/internal/fault"
)

// StatusNoResponse is nginx's 444: the connection was closed without an
// answer. It is what a request reset by an injected fault is counted and
// logged as; nothing is written.
const StatusNoResponse = 444

// ErrNoRoute is returned by SetFault and ClearFault for a name no route has.
var ErrNoRoute = errors.New("proxy: no such route")

var descFault = prometheus.NewDesc("sluice_fault_injected_total", "Faults injected by the route's fault block or a runtime toggle, by kind.", []string{"route", "kind"}, nil)

var hdrFaultAbort = []string{"abort"}

// routeFault is a route's fault injection: the configured block, the one
// the admin API turned on for a while, and what was injected. A route
// carried over by a reload keeps its routeFault (it is held by pointer),
// so a runtime fault survives a reload that leaves the route's config
// unchanged; a route whose config changed starts without one.
type routeFault struct {
	configured *fault.Spec // nil: the config has no fault block
	cfg        *config.Fault
	runtime    atomic.Pointer[runtimeFault]
	injected   [fault.NumKinds]atomic.Uint64
}

// runtimeFault is a fault turned on through the admin API until a time.
type runtimeFault struct {
	spec  *fault.Spec
	cfg   config.Fault
	until time.Time
}

func newRouteFault(f *config.Fault) *routeFault {
	rf := &routeFault{}
	if f != nil {
		rf.configured, rf.cfg = compileFault(*f), f
	}
	return rf
}

func compileFault(f config.Fault) *fault.Spec {
	s := &fault.Spec{BodyRate: f.BodyRate, Header: f.Header, CountAsFailure: f.CountAsFailure}
	if d := f.Delay; d != nil {
		s.Delay, s.DelayPct = d.Duration, d.Percent
	}
	if a := f.Abort; a != nil {
		s.AbortStatus, s.AbortPct = a.Status, a.Percent
	}
	if r := f.Reset; r != nil {
		s.HasReset, s.ResetPct = true, r.Percent
	}
	return s
}

// active returns the fault that applies at now: a runtime fault while it
// lasts (it replaces the configured one), else the configured one, else
// nil. An expired runtime fault is dropped here, on the request path, so
// no goroutine or timer per toggle is needed; the cost without any fault
// is one atomic load.
func (f *routeFault) active(now time.Time) *fault.Spec {
	if rt := f.runtime.Load(); rt != nil {
		if now.Before(rt.until) {
			return rt.spec
		}
		f.runtime.CompareAndSwap(rt, nil)
	}
	return f.configured
}

// FaultStatus is what a route's fault injection is now.
type FaultStatus struct {
	// Configured is the route's fault block; nil without one.
	Configured *config.Fault
	// Runtime is the fault the admin API turned on, which replaces
	// Configured until Until; nil without one (or once it expired).
	Runtime *config.Fault
	Until   time.Time
}

// Fault reports the route's fault injection at now; ok is false when no
// fault applies at all.
func (rt *Route) Fault(now time.Time) (fs FaultStatus, ok bool) {
	fs.Configured = rt.fault.cfg
	if r := rt.fault.runtime.Load(); r != nil && now.Before(r.until) {
		c := r.cfg
		fs.Runtime, fs.Until = &c, r.until
	}
	return fs, fs.Configured != nil || fs.Runtime != nil
}

// FaultsInjected returns how many faults of kind ("delay", "abort",
// "body_rate", "reset") the route injected.
func (rt *Route) FaultsInjected(kind string) uint64 {
	for k := range fault.NumKinds {
		if k.String() == kind {
			return rt.fault.injected[k].Load()
		}
	}
	return 0
}

// SetFault turns fault f, which must have passed config validation
// (config.ParseFaultToggle), on for route name for d from now on the
// proxy's clock, replacing any runtime fault before it. It returns when
// the fault ends.
func (p *Proxy) SetFault(name string, f config.Fault, d time.Duration) (time.Time, error) {
	rt := p.tab.Load().route(name)
	if rt == nil {
		return time.Time{}, ErrNoRoute
	}
	until := p.clk.Now().Add(d)
	rt.fault.runtime.Store(&runtimeFault{spec: compileFault(f), cfg: f, until: until})
	return until, nil
}

// ClearFault removes route name's runtime fault, if any; the configured
// fault, if any, applies again.
func (p *Proxy) ClearFault(name string) error {
	rt := p.tab.Load().route(name)
	if rt == nil {
		return ErrNoRoute
	}
	rt.fault.runtime.Store(nil)
	return nil
}

// collectFaults reports sluice_fault_injected_total for rt: every kind on
// a route with a configured fault, else the kinds injected at all (by a
// runtime toggle), so routes never faulted add no series.
func collectFaults(ch chan<- prometheus.Metric, rt *Route) {
	for k := range fault.NumKinds {
		if n := rt.fault.injected[k].Load(); n > 0 || rt.fault.configured != nil {
			ch <- prometheus.MustNewConstMetric(descFault, prometheus.CounterValue, float64(n), rt.name, k.String())
		}
	}
}

// injectFault applies fault s to an admitted request before it is
// forwarded. It reports whether it answered the request itself (an abort,
// a reset, or a delay the deadline or the client cut short); then it has
// finished d. Otherwise the request goes on to the upstream, possibly
// after a delay and with its response body paced.
func (p *Proxy) injectFault(st *reqState, r *http.Request, ctx context.Context, rt *Route, s *fault.Spec, d *admission.Decision) bool {
	override := -1.0
	if s.Header != "" {
		v, ok := r.Header[s.Header]
		if !ok {
			return false
		}
		override = fault.Override(v[0])
	}
	plan := p.faults.Draw(s, override)
	w := &st.sw
	if plan.Delay > 0 {
		rt.fault.inject(st, fault.Delay)
		// The delay models a slow upstream: it holds the bulkhead slot,
		// so the queue and backpressure build as they would. It is not an
		// upstream error, so the breaker is told nothing.
		if !sleep(ctx, p.clk, plan.Delay) {
			st.status = upstreamStatus(st.clientCtx, ctx, ctx.Err())
			if st.status == http.StatusGatewayTimeout {
				closeIfBodyUnread(w, r)
				writeProblem(w, http.StatusGatewayTimeout, rt, "the upstream did not answer in time")
			}
			d.FinishSample(breaker.Ignored, admission.SampleSkip)
			return true
		}
	}
	switch {
	case plan.Reset:
		rt.fault.inject(st, fault.Reset)
		d.FinishSample(rt.faultOutcome(s, 0, true), admission.SampleSkip)
		w.status = StatusNoResponse
		resetConn(w.ResponseWriter, r)
		return true
	case plan.Abort != 0:
		rt.fault.inject(st, fault.Abort)
		closeIfBodyUnread(w, r)
		w.Header()["Sluice-Fault"] = hdrFaultAbort
		if plan.Abort == http.StatusNoContent || plan.Abort == http.StatusNotModified {
			w.WriteHeader(plan.Abort) // these statuses carry no body
		} else {
			writeProblem(w, plan.Abort, rt, "the answer was injected by the route's fault (abort)")
		}
		d.FinishSample(rt.faultOutcome(s, plan.Abort, false), admission.SampleSkip)
		return true
	case plan.BodyRate > 0:
		rt.fault.inject(st, fault.BodyRate)
		w.ResponseWriter = &pacedWriter{ResponseWriter: w.ResponseWriter, ctx: ctx, clk: p.clk, rate: plan.BodyRate}
	}
	return false
}

func (f *routeFault) inject(st *reqState, k fault.Kind) {
	f.injected[k].Add(1)
	st.faults.Add(k)
}

// faultOutcome is what an injected abort or reset tells the breaker:
// nothing, unless the fault has count_as_failure; then a reset, or an
// abort with one of the breaker's failure statuses, is a failure.
func (rt *Route) faultOutcome(s *fault.Spec, status int, reset bool) breaker.Outcome {
	br := rt.up.br
	if !s.CountAsFailure || br == nil {
		return breaker.Ignored
	}
	if reset || br.Classify(status, nil) == breaker.Failure {
		return breaker.Failure
	}
	return breaker.Ignored
}

// resetConn drops the client's connection without an answer. On HTTP/1 it
// hijacks the connection and closes it with SO_LINGER 0, which sends a TCP
// RST: the client sees "connection reset by peer", as from a crashed
// upstream host. Where hijacking is not possible (HTTP/2) it panics with
// http.ErrAbortHandler, on which the server resets the stream.
func resetConn(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		if r.Context().Value(http.ServerContextKey) == nil {
			return // not under http.Server, which alone recovers the panic
		}
		panic(http.ErrAbortHandler)
	}
	// Under TLS and the framing guard, reset the TCP connection beneath.
	c := conn
	for {
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = nc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// sleep waits d on clk and reports whether it did; false when ctx ended
// first.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}

// pacedWriter writes the response body at rate bytes per second: a chunk
// of a tenth of a second's worth, flushed, then a wait on the clock. The
// route deadline or the client's departure (ctx) stops it with an error,
// which breaks the response off.
type pacedWriter struct {
	http.ResponseWriter
	ctx  context.Context
	clk  clock.Clock
	rate int64
}

func (w *pacedWriter) Write(b []byte) (int, error) {
	chunk := int(min(max(w.rate/10, 1), 32<<10))
	n := 0
	for len(b) > 0 {
		c := min(len(b), chunk)
		m, err := w.ResponseWriter.Write(b[:c])
		n += m
		if err != nil {
			return n, err
		}
		_ = http.NewResponseController(w.ResponseWriter).Flush()
		b = b[c:]
		if !sleep(w.ctx, w.clk, time.Duration(int64(c)*int64(time.Second)/w.rate)) {
			return n, w.ctx.Err()
		}
	}
	return n, nil
}

func (w *pacedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
