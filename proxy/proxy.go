package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"sluice/admission"
	"sluice/bulkhead"
	"sluice/clock"
	"sluice/config"
	"sluice/monitor"
	"sluice/overload"
	"sluice/proxy/internal/fault"
	"sluice/redisstore"
)

// Proxy is the http.Handler of the proxy listener.
type Proxy struct {
	tab    atomic.Pointer[table] // swapped whole on reload
	log    *slog.Logger
	clk    clock.Clock  // every time the proxy takes, so tests run on a fake
	access *slog.Logger // nil: no access log
	tracer trace.Tracer // nil: tracing off
	prop   propagation.TextMapPropagator
	smp    *monitor.Sampler  // nil: no backpressure sampling
	faults *fault.Sampler    // draws the injected faults of routes that have one
	ovl    *overload.Manager // the process-level overload manager, consulted at the door

	unmatched codeCounts // answers to requests no route matched
	// refusals are the routes' access-log budgets and folded refusal
	// counts, by route name.
	refusals refusalLogs
	// wall says clk is the wall clock, so its times may be used as
	// deadlines for net/http.
	wall        bool
	doorRefused atomic.Uint64 // requests refused overloaded before routing
	doorLog     *refusalLog   // the access-log budget of refusals before routing

	// retiredStoreErrs are the errors of stores a reload replaced, so that
	// sluice_ratelimit_store_errors_total never goes back.
	retiredStoreErrs atomic.Uint64

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
	// FaultRand, if set, is the source injected faults are drawn from
	// (tests fix its seed). If nil, a randomly seeded source is used.
	FaultRand *rand.Rand
	// Overload tunes the process-level overload manager, whose limits come
	// from the config's server block; Start runs its sampler. The zero
	// value samples the runtime every 100ms on the wall clock (not on
	// Clock: tests of queues count that clock's timers).
	Overload overload.Options
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
	if o.Overload.Log == nil {
		o.Overload.Log = log
	}
	p := &Proxy{log: log, clk: o.Clock, access: o.AccessLog, tracer: o.Tracer, prop: o.Propagator, smp: o.Sampler,
		faults: fault.NewSampler(o.FaultRand), wall: clock.IsReal(o.Clock), ovl: overload.New(limitsOf(cfg.Server), o.Overload)}
	p.refusals.since = p.clk.Now()
	p.doorLog = p.refusals.route("")
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
	p.shareBreakers(t)
	return p, nil
}

// shareBreakers connects the shared breakers of t, the table now serving,
// to its store: a trip here is published to the other replicas, and a trip
// published by another opens the breaker here for the time it has left.
// With Redis down each breaker works alone.
func (p *Proxy) shareBreakers(t *table) {
	if t.store == nil {
		return
	}
	var names []string
	for _, u := range t.upstreams {
		if u.br == nil || !u.cfg.Breaker.Shared {
			continue
		}
		names = append(names, u.name)
		name, st := u.name, t.store
		u.br.OnTrip(func(openFor time.Duration) { st.PublishTrip(name, openFor) })
	}
	t.store.WatchTrips(names, func(name string, left time.Duration) {
		if u := p.tab.Load().upstream(name); u != nil && u.br != nil && u.cfg.Breaker.Shared {
			wasOpen := u.br.OpenFor() > 0
			if u.br.OpenRemote(left) && !wasOpen {
				p.log.Info("breaker opened by another replica's trip", "upstream", name, "open_for", left.String())
			}
		}
	})
}

// compile builds the table for cfg. Upstreams and routes whose config is
// unchanged from old (matched by name) are carried over with their live
// state: an upstream keeps its connection pool, health and breaker; a route
// keeps its rate-limit buckets, bulkhead and queue, counters and
// histograms. A route whose own settings are unchanged but whose upstream
// was rebuilt keeps its state too and is pointed at the new breaker.
//
// The store of the redis block is carried over while the block is unchanged;
// a changed block opens a new one (an error, such as refused credentials,
// fails the compile), and every route with a global limit and upstream with
// a shared breaker is rebuilt on it.
func (p *Proxy) compile(cfg *config.Config, old *table) (*table, error) {
	t := &table{byName: make(map[string]*Upstream, len(cfg.Upstreams))}
	var oldStore *redisstore.Store
	if old != nil {
		oldStore = old.store
	}
	switch {
	case cfg.Redis == nil:
	case oldStore != nil && reflect.DeepEqual(oldStore.Config(), *cfg.Redis):
		t.store = oldStore
	default:
		s, err := redisstore.Open(*cfg.Redis, p.log)
		if err != nil {
			return nil, err
		}
		t.store = s
	}
	storeChanged := t.store != oldStore
	fail := func(err error) (*table, error) {
		if storeChanged && t.store != nil {
			t.store.Close()
		}
		return nil, err
	}
	for _, uc := range cfg.Upstreams {
		u := old.upstream(uc.Name)
		shared := uc.Breaker != nil && uc.Breaker.Shared
		if u == nil || !reflect.DeepEqual(u.cfg, uc) || shared && storeChanged {
			var err error
			if u, err = newUpstream(uc, p.log, p.clk); err != nil {
				return fail(fmt.Errorf("upstream %q: %w", uc.Name, err))
			}
		}
		t.upstreams = append(t.upstreams, u)
		t.byName[u.name] = u
	}
	for _, rc := range cfg.Routes {
		u := t.byName[rc.Upstream]
		if u == nil {
			return fail(fmt.Errorf("route %q: unknown upstream %q", rc.Name, rc.Upstream))
		}
		global := rc.RateLimit != nil && rc.RateLimit.Scope == "global"
		if prev := old.route(rc.Name); prev != nil && reflect.DeepEqual(prev.cfg, rc) && !(global && storeChanged) {
			if prev.up != u {
				moved := *prev
				moved.up = u
				prev.adm.SetBreaker(u.br)
				prev = &moved
			}
			t.routes = append(t.routes, prev)
			continue
		}
		t.routes = append(t.routes, p.newRoute(rc, u, t.store))
	}
	t.seal()
	return t, nil
}

func (p *Proxy) newRoute(rc config.Route, u *Upstream, store *redisstore.Store) *Route {
	nameJSON, _ := json.Marshal(rc.Name)
	rt := &Route{
		cfg:      rc,
		name:     rc.Name,
		nameJSON: nameJSON,
		rejects:  newRejectCache(nameJSON),
		refusals: p.refusals.route(rc.Name),
		up:       u,
		timeout:  rc.Timeout,
		maxBody:  rc.MaxBodyBytes,
		fault:    newRouteFault(rc.Fault),
		adm:      admission.NewShared(rc, u.br, p.clk, store),
		codes:    new(codeCounts),
		errs:     monitor.NewErrorRing(p.clk),
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

// Reload swaps in the table for cfg, which must have passed validation,
// and the overload manager's limits for its server block.
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
	p.ovl.SetLimits(limitsOf(cfg.Server))
	if p.smp != nil {
		p.smp.SetSources(t.sources())
	}
	p.shareBreakers(t)
	for _, u := range old.upstreams {
		if t.upstream(u.name) != u {
			u.stopHealth()
			u.close()
		}
	}
	p.retire(old, t)
	if old.store != nil && old.store != t.store {
		old.store.Close()
		p.retiredStoreErrs.Add(old.store.Errors())
	}
	return nil
}

// storeErrors is the errors of st and of the stores before it.
func (p *Proxy) storeErrors(st *redisstore.Store) uint64 {
	return p.retiredStoreErrs.Load() + st.Errors()
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
// sampling, the access log's summaries of folded refusals, the overload
// manager's sampler). It stops when ctx is done or Close is called.
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
	if p.access != nil {
		p.running.Go(func() { p.foldLoop(p.runCtx) })
	}
	p.running.Go(func() { p.ovl.Run(p.runCtx) })
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

// Close stops background work, writes the refusals folded in the access
// log since the last summary, and closes idle upstream connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Unlock()
	p.running.Wait()
	if p.access != nil {
		p.flushFolded()
	}
	t := p.tab.Load()
	for _, u := range t.upstreams {
		u.close()
	}
	if t.store != nil {
		t.store.Close()
	}
}

// Store returns the store of the redis block, or nil.
func (p *Proxy) Store() *redisstore.Store { return p.tab.Load().store }

// Routes returns the routes in match order.
func (p *Proxy) Routes() []*Route { return p.tab.Load().routes }

// Upstreams returns the upstreams in config order.
func (p *Proxy) Upstreams() []*Upstream { return p.tab.Load().upstreams }
