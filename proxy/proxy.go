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
	"sync"
	"sync/atomic"

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

// New compiles cfg, which must have passed config validation, into a Proxy.
// Call Start to begin health checks and Close to stop them.
func New(cfg *config.Config, log *slog.Logger) (*Proxy, error) {
	if log == nil {
		log = slog.Default()
	}
	t, err := compile(cfg, log)
	if err != nil {
		return nil, err
	}
	p := &Proxy{log: log}
	p.tab.Store(t)
	return p, nil
}

func compile(cfg *config.Config, log *slog.Logger) (*table, error) {
	t := &table{byName: make(map[string]*Upstream, len(cfg.Upstreams))}
	for _, uc := range cfg.Upstreams {
		u, err := newUpstream(uc, log)
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
		// The deadline starts here so that, once admission control queues
		// requests, the wait in the queue counts against it (SPEC: timeout
		// is the whole-request deadline, queue wait included).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.timeout)
		defer cancel()
	}

	tg := rt.up.pick()
	if tg == nil {
		writeReject(w, rt, ReasonNoHealthyUpstream, rt.up.noHealthyRetryAfter())
		return
	}
	st.target = tg
	tg.inflight.Add(1)
	// Deferred: ReverseProxy aborts a broken body copy with a panic
	// (http.ErrAbortHandler) and the count must still come down.
	defer tg.inflight.Add(-1)

	rt.up.rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, stateKey{}, st)))
	if st.err != nil {
		p.log.LogAttrs(ctx, logLevel(st.status), "upstream request failed",
			slog.String("route", rt.name), slog.String("upstream", rt.up.name),
			slog.String("target", tg.URL.Host), slog.Int("status", st.status),
			slog.String("error", st.err.Error()))
	}
}

func logLevel(status int) slog.Level {
	if status == StatusClientClosed {
		return slog.LevelInfo // the client's choice, not a fault
	}
	return slog.LevelWarn
}
