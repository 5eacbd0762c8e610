package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"sluice/admission"
	"sluice/breaker"
	"sluice/bulkhead"
	"sluice/clock"
	"sluice/config"
	"sluice/monitor"
	"sluice/proxy/internal/routing"
)

// Proxy is the http.Handler of the proxy listener.
type Proxy struct {
	tab    atomic.Pointer[table] // swapped whole on reload
	log    *slog.Logger
	clk    clock.Clock  // every time the proxy takes, so tests run on a fake
	access *slog.Logger // nil: no access log
	tracer trace.Tracer // nil: tracing off
	prop   propagation.TextMapPropagator
	smp    *monitor.Sampler // nil: no backpressure sampling

	unmatched codeCounts // answers to requests no route matched

	// noDirect sends every request through httputil.ReverseProxy, for the
	// tests that compare it with forwardDirect.
	noDirect bool

	mu     sync.Mutex      // guards runCtx, cancel, retired; serialises reloads
	runCtx context.Context // set by Start: background work of new upstreams runs under it
	// retired holds the admission controllers of routes a reload replaced
	// while they still had requests queued or in flight: Drain closes
	// their queues too, so that a request queued under the old config is
	// refused with shutting_down like the others.
	retired []*admission.Controller
	cancel  context.CancelFunc
	running sync.WaitGroup // background goroutines (health checks)
}

// Options are a Proxy's collaborators. The zero value is usable.
type Options struct {
	// Log receives upstream errors. If nil, slog.Default() is used.
	Log *slog.Logger
	// Clock drives admission (queue waits, breaker open periods). If nil,
	// the wall clock is used.
	Clock clock.Clock
	// AccessLog, if set, receives one line per request.
	AccessLog *slog.Logger
	// Tracer and Propagator enable tracing; a nil Tracer turns it off, and
	// then no trace work at all is done per request.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// Sampler, if set, samples each route's backpressure; Start runs it.
	Sampler *monitor.Sampler
}

// New compiles cfg, which must have passed config validation, into a Proxy.
// Call Start to begin health checks and Close to stop them.
func New(cfg *config.Config, o Options) (*Proxy, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	p := &Proxy{log: log, clk: o.Clock, access: o.AccessLog, tracer: o.Tracer, prop: o.Propagator, smp: o.Sampler}
	if p.tracer != nil && p.prop == nil {
		p.prop = propagation.TraceContext{}
	}
	t, err := p.compile(cfg, nil)
	if err != nil {
		return nil, err
	}
	p.tab.Store(t)
	if p.smp != nil {
		p.smp.SetSources(t.sources())
	}
	return p, nil
}

// compile builds the table for cfg. Upstreams and routes whose config is
// unchanged from old (matched by name) are carried over with their live
// state: an upstream keeps its connection pool, health and breaker; a route
// keeps its rate-limit buckets, bulkhead and queue, counters and
// histograms. A route whose own settings are unchanged but whose upstream
// was rebuilt keeps its state too and is pointed at the new breaker.
func (p *Proxy) compile(cfg *config.Config, old *table) (*table, error) {
	t := &table{byName: make(map[string]*Upstream, len(cfg.Upstreams))}
	for _, uc := range cfg.Upstreams {
		u := old.upstream(uc.Name)
		if u == nil || !reflect.DeepEqual(u.cfg, uc) {
			var err error
			if u, err = newUpstream(uc, p.log, p.clk); err != nil {
				return nil, fmt.Errorf("upstream %q: %w", uc.Name, err)
			}
		}
		t.upstreams = append(t.upstreams, u)
		t.byName[u.name] = u
	}
	for _, rc := range cfg.Routes {
		u := t.byName[rc.Upstream]
		if u == nil {
			return nil, fmt.Errorf("route %q: unknown upstream %q", rc.Name, rc.Upstream)
		}
		if prev := old.route(rc.Name); prev != nil && reflect.DeepEqual(prev.cfg, rc) {
			if prev.up != u {
				moved := *prev
				moved.up = u
				prev.adm.SetBreaker(u.br)
				prev = &moved
			}
			t.routes = append(t.routes, prev)
			continue
		}
		t.routes = append(t.routes, p.newRoute(rc, u))
	}
	t.seal()
	return t, nil
}

func (p *Proxy) newRoute(rc config.Route, u *Upstream) *Route {
	nameJSON, _ := json.Marshal(rc.Name)
	rt := &Route{
		cfg:      rc,
		name:     rc.Name,
		nameJSON: nameJSON,
		up:       u,
		timeout:  rc.Timeout,
		maxBody:  rc.MaxBodyBytes,
		adm:      admission.New(rc, u.br, p.clk),
		codes:    new(codeCounts),
		latWin:   monitor.NewHistogram(),
		qwaitWin: monitor.NewHistogram(),
		durHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_request_duration_seconds", Help: "Time from request arrival to the end of the response, queue wait included.",
			Buckets: latencyBuckets, ConstLabels: prometheus.Labels{"route": rc.Name},
		}),
		qwaitHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_queue_wait_seconds", Help: "Time requests waited in the route's bulkhead queue (0 when a slot was free).",
			Buckets: latencyBuckets, ConstLabels: prometheus.Labels{"route": rc.Name},
		}),
	}
	if rl := rt.adm.RateLimiter(); rl != nil {
		rt.rlPolicy = []string{fmt.Sprintf("%q;q=%d;w=%d", rc.Name, rl.Burst(), retryAfterSeconds(rl.Window()))}
		rt.rlValues = new(rlCache)
	}
	if rt.adm.HasPriority() {
		for c := range rt.classWait {
			rt.classWaitWin[c] = monitor.NewHistogram()
			rt.classWait[c] = prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "sluice_queue_class_wait_seconds", Help: "Queue waits by priority class.",
				Buckets:     latencyBuckets,
				ConstLabels: prometheus.Labels{"route": rc.Name, "class": bulkhead.Class(c).String()},
			})
		}
	}
	if rc.StripPrefix {
		rt.strip = rc.Match.PathPrefix
	}
	return rt
}

// Reload swaps in the table for cfg, which must have passed validation.
// Requests already routed (in flight or queued) finish under the table they
// started with; new requests see the new one. Upstreams that left the
// config stop their health checks and close idle connections.
func (p *Proxy) Reload(cfg *config.Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.tab.Load()
	t, err := p.compile(cfg, old)
	if err != nil {
		return err
	}
	for _, u := range t.upstreams {
		if p.runCtx != nil && old.upstream(u.name) != u {
			u.startHealth(p.runCtx, &p.running)
		}
	}
	p.tab.Store(t)
	if p.smp != nil {
		p.smp.SetSources(t.sources())
	}
	for _, u := range old.upstreams {
		if t.upstream(u.name) != u {
			u.stopHealth()
			u.close()
		}
	}
	p.retire(old, t)
	return nil
}

// retire records the controllers of old that t no longer uses and that
// still hold requests, and forgets retired ones that have none left. Must
// be called with p.mu held.
func (p *Proxy) retire(old, t *table) {
	kept := map[*admission.Controller]bool{}
	for _, rt := range t.routes {
		kept[rt.adm] = true
	}
	busy := func(c *admission.Controller) bool { return c.QueueDepth() > 0 || c.Inflight() > 0 }
	var retired []*admission.Controller
	for _, c := range p.retired {
		if busy(c) && !kept[c] {
			retired = append(retired, c)
		}
	}
	for _, rt := range old.routes {
		if !kept[rt.adm] && busy(rt.adm) {
			retired = append(retired, rt.adm)
		}
	}
	p.retired = retired
}

// Start launches the background work (health checks, backpressure
// sampling). It stops when ctx is done or Close is called.
func (p *Proxy) Start(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runCtx, p.cancel = context.WithCancel(ctx)
	for _, u := range p.tab.Load().upstreams {
		u.startHealth(p.runCtx, &p.running)
	}
	if p.smp != nil {
		p.running.Go(func() { p.smp.Run(p.runCtx) })
	}
}

// UnmatchedCodes calls f for each status answered to requests no route
// matched (404s, and 499s of clients that left first).
func (p *Proxy) UnmatchedCodes(f func(code int, n uint64)) { p.unmatched.each(f) }

// Sampler returns the backpressure sampler, or nil.
func (p *Proxy) Sampler() *monitor.Sampler { return p.smp }

// Drain refuses every queued request with 503 shutting_down and makes
// later queue waits refuse at once; requests holding a slot carry on. It
// reaches requests queued under a config that a reload has since replaced.
// The server calls it when a graceful shutdown begins.
func (p *Proxy) Drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rt := range p.tab.Load().routes {
		rt.adm.Close()
	}
	for _, c := range p.retired {
		c.Close()
	}
}

// CloseIdleConnections closes the idle keep-alive connections of every
// upstream's pool (they reopen on demand).
func (p *Proxy) CloseIdleConnections() {
	for _, u := range p.tab.Load().upstreams {
		u.close()
	}
}

// Close stops background work and closes idle upstream connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Unlock()
	p.running.Wait()
	for _, u := range p.tab.Load().upstreams {
		u.close()
	}
}

// Routes returns the routes in match order.
func (p *Proxy) Routes() []*Route { return p.tab.Load().routes }

// Upstreams returns the upstreams in config order.
func (p *Proxy) Upstreams() []*Upstream { return p.tab.Load().upstreams }

// ServeHTTP routes and forwards one request, and accounts for it once
// whatever happens: metrics, access log and span are all finished in
// finish, deferred so that an aborted body copy is accounted too.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := statePool.Get().(*reqState)
	*st = reqState{clientCtx: r.Context(), start: p.clk.Now()}
	st.sw.ResponseWriter = w
	defer p.finish(st, r)

	// RFC 9112 §6.1: after a request with both Transfer-Encoding and
	// Content-Length the server MUST close the connection, since a front
	// proxy that framed it by Content-Length would read the rest of the
	// stream as a different request (smuggling). net/http strips the
	// Content-Length before any handler sees it, so sluice closes after
	// every chunked HTTP/1.x request: a smuggled follow-up is never read.
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		st.sw.Header()["Connection"] = hdrClose
	}
	// A reverse proxy is not a forward proxy: CONNECT would ask sluice to
	// open a tunnel to a host of the client's choosing.
	if r.Method == http.MethodConnect {
		st.sw.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		writeProblem(&st.sw, http.StatusMethodNotAllowed, nil, "", 0, "CONNECT is not supported: sluice is a reverse proxy")
		return
	}
	// Absolute-form targets ("GET http://other/x") are routed by their
	// authority like any Host, and forwarded only to the route's configured
	// targets; anything else that is not a path (asterisk-form) is refused.
	if !strings.HasPrefix(r.URL.Path, "/") {
		writeProblem(&st.sw, http.StatusBadRequest, nil, "", 0, "the request target must be a path")
		return
	}
	// A Host that names no host (routing.CheckHost has the grammar) is
	// refused before routing: a host-less route would otherwise forward
	// it upstream as it came. The HTTP/1 server refuses some itself, with
	// its own 400, before any handler runs: a byte no host[:port] has
	// (space, control bytes, "/", "\", "@", non-ASCII), two Host headers,
	// none in HTTP/1.1. An empty Host passes only in HTTP/1.0, where Host
	// is optional (RFC 9112 §3.2 requires it from HTTP/1.1 on; HTTP/2's
	// :authority arrives here as the Host and is checked the same).
	if err := routing.CheckHost(r.Host); err != nil && (r.Host != "" || r.ProtoAtLeast(1, 1)) {
		writeProblem(&st.sw, http.StatusBadRequest, nil, "", 0, err.Error())
		return
	}
	if routing.NeedsClean(r.URL) {
		routing.CleanURLPath(r.URL)
	}
	rt := p.tab.Load().lookup(routing.RequestHost(r.Host), r.URL.Path, r.Method)
	st.route = rt
	if p.tracer != nil {
		r = p.startSpan(st, r)
	}
	if rt == nil {
		writeProblem(&st.sw, http.StatusNotFound, nil, "", 0, "no route matches the request")
		return
	}
	if rt.maxBody > 0 {
		// A declared body over the limit is refused before it costs a token
		// or a slot; an undeclared (chunked) one is cut when it passes the
		// limit, and errorHandler answers 413.
		if r.ContentLength > rt.maxBody {
			closeIfBodyUnread(&st.sw, r)
			writeProblem(&st.sw, http.StatusRequestEntityTooLarge, rt, "", 0, "the request body exceeds the route's max_body_bytes")
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(&st.sw, r.Body, rt.maxBody)
		}
	}
	p.serveRoute(st, r, rt)
}

func (p *Proxy) serveRoute(st *reqState, r *http.Request, rt *Route) {
	w := &st.sw
	// The deadline starts before admission so that the wait in the queue
	// counts against it (docs/SPEC.md: timeout is the whole-request
	// deadline, queue wait included).
	var deadline time.Time
	if rt.timeout > 0 {
		deadline = time.Now().Add(rt.timeout)
	}
	st.rctx = routeCtx{client: r.Context(), deadline: deadline}
	defer st.rctx.release()
	ctx := context.Context(&st.rctx)

	// No healthy target: refuse before taking a token or a queue place.
	if !rt.up.anyHealthy() {
		closeIfBodyUnread(w, r)
		rt.adm.Refuse(admission.NoHealthyUpstream)
		st.reason = admission.NoHealthyUpstream
		st.retryAfter = retryAfterSeconds(rt.up.noHealthyRetryAfter())
		writeReject(w, rt, admission.NoHealthyUpstream, rt.up.noHealthyRetryAfter())
		return
	}
	d := rt.adm.Admit(ctx, r)
	st.reason, st.queueWait = d.Reason, d.QueueWait
	if d.Bulkheaded {
		rt.qwaitHist.Observe(d.QueueWait.Seconds())
		rt.qwaitWin.Observe(st.start, d.QueueWait)
		if h := rt.classWait[d.Class]; h != nil {
			h.Observe(d.QueueWait.Seconds())
			rt.classWaitWin[d.Class].Observe(st.start, d.QueueWait)
		}
	}
	if d.HasRateLimit {
		rt.setRateLimitHeaders(w.Header(), &d)
	}
	switch d.Reason {
	case admission.Admitted:
	case admission.ClientGone:
		st.status = StatusClientClosed // the client left while queued: nothing to write
		return
	default:
		st.retryAfter = retryAfterSeconds(d.RetryAfter)
		closeIfBodyUnread(w, r)
		writeReject(w, rt, d.Reason, d.RetryAfter)
		return
	}

	tg := rt.up.pick()
	st.target = tg
	tg.inflight.Add(1)
	finished := false
	defer func() {
		// Reached with finished unset only when ReverseProxy aborts a broken
		// body copy with a panic (http.ErrAbortHandler): the slot and the
		// target's count must still be given back, and the breaker is told
		// nothing it cannot know.
		if !finished {
			st.aborted = true
			tg.inflight.Add(-1)
			d.Finish(breaker.Ignored)
		}
	}()

	if rt.timeout > 0 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		// The transport cannot give up on a request while its writer is
		// blocked reading the client's body (it waits for that goroutine),
		// so a client that stalls its body would outlive the deadline. A
		// read deadline of now unblocks that read when the deadline passes.
		stop := context.AfterFunc(st.rctx.real(), func() {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		})
		defer stop()
	}
	if p.direct(r, st) {
		p.forwardDirect(w, r, ctx, st)
	} else {
		rt.up.rp.ServeHTTP(w, r.WithContext(context.WithValue(st.rctx.real(), stateKey{}, st)))
	}

	finished = true
	tg.inflight.Add(-1)
	d.FinishSample(rt.up.outcome(st), adaptiveSample(st))
	switch {
	case st.upstream != 0:
		rt.up.codes.inc(st.upstream)
	case st.err != nil && st.status != StatusClientClosed:
		rt.up.codes.inc(st.status) // 502 or 504: the upstream gave no answer
	}
	if st.err != nil {
		p.log.LogAttrs(ctx, logLevel(st.status), "upstream request failed",
			slog.String("route", rt.name), slog.String("upstream", rt.up.name),
			slog.String("target", tg.URL.Host), slog.Int("status", st.status),
			slog.String("error", st.err.Error()))
	}
}

// finish accounts for one request: status counters, duration histograms,
// the access log line and the span. It runs exactly once per request.
func (p *Proxy) finish(st *reqState, r *http.Request) {
	status := st.sw.status
	if st.status == StatusClientClosed {
		status = StatusClientClosed // nothing (complete) was written to anyone
	} else if status == 0 {
		status = http.StatusOK // net/http's implicit answer
	}
	took := p.clk.Now().Sub(st.start)
	if rt := st.route; rt != nil {
		rt.codes.inc(status)
		rt.durHist.Observe(took.Seconds())
		if st.reason == admission.Admitted && status != StatusClientClosed {
			rt.latWin.Observe(st.start, took)
		}
	} else {
		p.unmatched.inc(status)
	}
	if p.access != nil {
		p.logAccess(st, r, status, took)
	}
	if st.span != nil {
		endSpan(st, status)
	}
	statePool.Put(st)
}

func (p *Proxy) logAccess(st *reqState, r *http.Request, status int, took time.Duration) {
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.Path),
		slog.String("remote", r.RemoteAddr),
		slog.Int("status", status),
		slog.Int64("bytes", st.sw.bytes),
		slog.Float64("duration_ms", float64(took.Microseconds())/1000),
	)
	if rt := st.route; rt != nil {
		attrs = append(attrs, slog.String("route", rt.name), slog.String("upstream", rt.up.name))
		if st.reason != admission.Admitted {
			attrs = append(attrs, slog.String("reason", st.reason.String()))
		}
		if rt.adm.Bulkhead() != nil {
			attrs = append(attrs, slog.Float64("queue_wait_ms", float64(st.queueWait.Microseconds())/1000))
		}
	}
	if st.target != nil {
		attrs = append(attrs, slog.String("target", st.target.URL.Host))
	}
	if st.aborted {
		// The response broke off midway (upstream or client gone, or the
		// route deadline passed while the body was streaming).
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	if st.span != nil {
		attrs = append(attrs, slog.String("trace_id", st.span.SpanContext().TraceID().String()))
	}
	p.access.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// setRateLimitHeaders adds the IETF draft RateLimit-Policy and RateLimit
// headers (draft-ietf-httpapi-ratelimit-headers): q is the bucket size and
// w the seconds an empty bucket takes to fill; r the whole tokens left and
// t the seconds until the bucket is full again.
func (rt *Route) setRateLimitHeaders(h http.Header, d *admission.Decision) {
	h["Ratelimit-Policy"] = rt.rlPolicy
	var t int64
	if d.Reset > 0 {
		t = retryAfterSeconds(d.Reset)
	}
	h["Ratelimit"] = rt.rlValues.value(rt.nameJSON, d.Remaining, t)
}

// rlCache remembers recent RateLimit header values by the (r, t) pair they
// encode. A bucket that stays full answers r=burst-1;t=1 again and again,
// and one that stays empty r=0 with the same t, so in both steady states
// the header costs no allocation; values in between are built and cached.
// Entries are immutable once stored and shared by concurrent responses:
// header value slices are never changed in place.
type rlCache [16]atomic.Pointer[rlEntry]

type rlEntry struct {
	remaining int
	t         int64
	v         [1]string // the header value; the entry is its backing array
}

func (c *rlCache) value(nameJSON []byte, remaining int, t int64) []string {
	slot := &c[(uint64(remaining)*31+uint64(t))%uint64(len(c))]
	if e := slot.Load(); e != nil && e.remaining == remaining && e.t == t {
		return e.v[:]
	}
	var buf [96]byte
	b := append(buf[:0], nameJSON...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(remaining), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, t, 10)
	e := &rlEntry{remaining: remaining, t: t, v: [1]string{string(b)}}
	slot.Store(e)
	return e.v[:]
}

// adaptiveSample classifies a finished request for an adaptive limit: an
// upstream timeout or an overload answer (503, 429) is a drop.
func adaptiveSample(st *reqState) admission.Sample {
	switch {
	case st.status == StatusClientClosed:
		return admission.SampleSkip
	case st.status == http.StatusGatewayTimeout, st.upstream == http.StatusServiceUnavailable, st.upstream == http.StatusTooManyRequests:
		return admission.SampleDropped
	}
	return admission.SampleOK
}

// outcome classifies a finished request for the upstream's breaker: the
// client's own departure never counts against the upstream.
func (u *Upstream) outcome(st *reqState) breaker.Outcome {
	if u.br == nil || st.status == StatusClientClosed {
		return breaker.Ignored
	}
	return u.br.Classify(st.upstream, st.err)
}

func logLevel(status int) slog.Level {
	if status == StatusClientClosed {
		return slog.LevelInfo // the client's choice, not a fault
	}
	return slog.LevelWarn
}
