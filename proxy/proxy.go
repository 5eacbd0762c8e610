// Package proxy is sluice's HTTP glue: it routes each request to the first
// matching route, picks a target of the route's upstream, and forwards the
// request with httputil.ReverseProxy. Refusals of every kind are turned into
// responses in exactly one place, writeReject.
package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"sluice/admission"
	"sluice/breaker"
	"sluice/clock"
	"sluice/config"
)

// Proxy is the http.Handler of the proxy listener.
type Proxy struct {
	tab atomic.Pointer[table] // swapped whole on reload
	log *slog.Logger

	mu      sync.Mutex // guards cancel
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
	t, err := compile(cfg, log, o.Clock)
	if err != nil {
		return nil, err
	}
	p := &Proxy{log: log}
	p.tab.Store(t)
	return p, nil
}

func compile(cfg *config.Config, log *slog.Logger, clk clock.Clock) (*table, error) {
	t := &table{byName: make(map[string]*Upstream, len(cfg.Upstreams))}
	for _, uc := range cfg.Upstreams {
		u, err := newUpstream(uc, log, clk)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", uc.Name, err)
		}
		t.upstreams = append(t.upstreams, u)
		t.byName[u.name] = u
	}
	for _, rc := range cfg.Routes {
		u := t.byName[rc.Upstream]
		if u == nil {
			return nil, fmt.Errorf("route %q: unknown upstream %q", rc.Name, rc.Upstream)
		}
		nameJSON, _ := json.Marshal(rc.Name)
		rt := &Route{
			name:     rc.Name,
			nameJSON: nameJSON,
			m:        newMatcher(rc.Match),
			up:       u,
			timeout:  rc.Timeout,
			adm:      admission.New(rc, u.br, clk),
		}
		if rl := rt.adm.RateLimiter(); rl != nil {
			rt.rlPolicy = []string{fmt.Sprintf("%q;q=%d;w=%d", rc.Name, rl.Burst(), retryAfterSeconds(rl.Window()))}
		}
		if rc.StripPrefix {
			rt.strip = rc.Match.PathPrefix
		}
		t.routes = append(t.routes, rt)
	}
	return t, nil
}

// Start launches the background work (active health checks). It stops when
// ctx is done or Close is called.
func (p *Proxy) Start(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, p.cancel = context.WithCancel(ctx)
	for _, u := range p.tab.Load().upstreams {
		if u.health != nil {
			p.running.Go(func() { u.health.run(ctx) })
		}
	}
}

// Drain refuses every queued request with 503 shutting_down and makes
// later queue waits refuse at once; requests holding a slot carry on. The
// server calls it when a graceful shutdown begins.
func (p *Proxy) Drain() {
	for _, rt := range p.tab.Load().routes {
		rt.adm.Close()
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

// ServeHTTP routes and forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if needsClean(r.URL.Path) {
		cleanURLPath(r.URL)
	}
	rt := p.tab.Load().lookup(requestHost(r.Host), r.URL.Path, r.Method)
	if rt == nil {
		writeProblem(w, http.StatusNotFound, nil, "", 0, "no route matches the request")
		return
	}
	p.serveRoute(w, r, rt)
}

func (p *Proxy) serveRoute(w http.ResponseWriter, r *http.Request, rt *Route) {
	st := statePool.Get().(*reqState)
	*st = reqState{route: rt, clientCtx: r.Context()}
	defer statePool.Put(st)

	ctx := r.Context()
	if rt.timeout > 0 {
		// The deadline starts before admission so that the wait in the
		// queue counts against it (SPEC: timeout is the whole-request
		// deadline, queue wait included).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.timeout)
		defer cancel()
	}

	// No healthy target: refuse before taking a token or a queue place.
	if !rt.up.anyHealthy() {
		rt.adm.Refuse(admission.NoHealthyUpstream)
		writeReject(w, rt, admission.NoHealthyUpstream, rt.up.noHealthyRetryAfter())
		return
	}
	d := rt.adm.Admit(ctx, r)
	if d.HasRateLimit {
		rt.setRateLimitHeaders(w.Header(), &d)
	}
	switch d.Reason {
	case admission.Admitted:
	case admission.ClientGone:
		p.log.LogAttrs(ctx, slog.LevelInfo, "client left while queued",
			slog.String("route", rt.name), slog.Int("status", StatusClientClosed),
			slog.Duration("queue_wait", d.QueueWait))
		return
	default:
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
			tg.inflight.Add(-1)
			d.Finish(breaker.Ignored)
		}
	}()

	rt.up.rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, stateKey{}, st)))

	finished = true
	tg.inflight.Add(-1)
	d.Finish(rt.up.outcome(st))
	if st.err != nil {
		p.log.LogAttrs(ctx, logLevel(st.status), "upstream request failed",
			slog.String("route", rt.name), slog.String("upstream", rt.up.name),
			slog.String("target", tg.URL.Host), slog.Int("status", st.status),
			slog.String("error", st.err.Error()))
	}
}

// setRateLimitHeaders adds the IETF draft RateLimit-Policy and RateLimit
// headers (draft-ietf-httpapi-ratelimit-headers): q is the bucket size and
// w the seconds an empty bucket takes to fill; r the whole tokens left and
// t the seconds until the bucket is full again.
func (rt *Route) setRateLimitHeaders(h http.Header, d *admission.Decision) {
	h["Ratelimit-Policy"] = rt.rlPolicy
	b := make([]byte, 0, len(rt.nameJSON)+24)
	b = append(b, rt.nameJSON...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(d.Remaining), 10)
	b = append(b, ";t="...)
	var t int64
	if d.Reset > 0 {
		t = retryAfterSeconds(d.Reset)
	}
	b = strconv.AppendInt(b, t, 10)
	h["Ratelimit"] = []string{string(b)}
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
