package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/admission"
	"sluice/config"
	"sluice/monitor"
	"sluice/proxy/internal/routing"
	"sluice/redisstore"
)

// Route is one compiled entry of the routing table.
type Route struct {
	cfg      config.Route // as configured, to tell an unchanged route on reload
	name     string
	nameJSON []byte       // name as a JSON string, precomputed for problem bodies
	rejects  *rejectCache // its refusal responses, built once each
	refusals *refusalLog  // its refusals' access-log budget and folded counts; shared by name across reloads
	up       *Upstream
	// strip is the prefix removed before forwarding; "" when strip_prefix is off.
	strip   string
	timeout time.Duration // whole-request deadline; 0 = none
	maxBody int64         // request body limit in bytes; 0 = none
	fault   *routeFault   // configured and runtime fault injection; never nil

	adm      *admission.Controller
	errs     *monitor.ErrorRing // its recent upstream failures, for the admin API
	rlPolicy []string           // RateLimit-Policy header value; nil without a rate limit
	rlValues *rlCache           // recent RateLimit header values; nil without a rate limit

	codes     *codeCounts          // answers by status (shared across reloads)
	durHist   prometheus.Histogram // sluice_request_duration_seconds
	qwaitHist prometheus.Histogram // sluice_queue_wait_seconds
	latWin    *monitor.Histogram   // admitted latency quantiles for the API
	qwaitWin  *monitor.Histogram   // queue-wait quantiles for the API

	// Per priority class, on routes with a priority block (else nil).
	classWait    [3]prometheus.Histogram // sluice_queue_class_wait_seconds
	classWaitWin [3]*monitor.Histogram
}

// ClassQueueWait returns the windowed queue-wait histogram of class c, or
// nil when the route has no priority classes.
func (rt *Route) ClassQueueWait(c int) *monitor.Histogram { return rt.classWaitWin[c] }

// Timeout returns the route's whole-request deadline; 0 = none.
func (rt *Route) Timeout() time.Duration { return rt.timeout }

// Upstream returns the route's upstream.
func (rt *Route) Upstream() *Upstream { return rt.up }

// Latency returns the windowed latency histogram of admitted requests.
func (rt *Route) Latency() *monitor.Histogram { return rt.latWin }

// QueueWait returns the windowed queue-wait histogram.
func (rt *Route) QueueWait() *monitor.Histogram { return rt.qwaitWin }

// Codes calls f for each status code answered on the route, in order.
func (rt *Route) Codes(f func(code int, n uint64)) { rt.codes.each(f) }

// Admission returns the route's admission controller (counters, bulkhead).
func (rt *Route) Admission() *admission.Controller { return rt.adm }

// Name returns the route's configured name.
func (rt *Route) Name() string { return rt.name }

// table is an immutable routing table. Proxy swaps whole tables atomically so
// that a reload never shows a request half of two configs.
type table struct {
	routes    []*Route
	upstreams []*Upstream
	byName    map[string]*Upstream
	routeIdx  map[string]*Route // routes by name
	index     *routing.Index    // first-match lookup without a scan, by position in routes
	store     *redisstore.Store // the redis block's store; nil without one
}

// seal builds the lookup structures once the routes are all in.
func (t *table) seal() {
	t.routeIdx = make(map[string]*Route, len(t.routes))
	rules := make([]routing.Rule, len(t.routes))
	for i, rt := range t.routes {
		t.routeIdx[rt.name] = rt
		m := rt.cfg.Match
		rules[i] = routing.Rule{Host: m.Host, Path: m.Path, PathPrefix: m.PathPrefix, Methods: m.Methods}
	}
	t.index = routing.NewIndex(rules)
}

// upstream returns the upstream named name, or nil; t may be nil.
func (t *table) upstream(name string) *Upstream {
	if t == nil {
		return nil
	}
	return t.byName[name]
}

// route returns the route named name, or nil; t may be nil.
func (t *table) route(name string) *Route {
	if t == nil {
		return nil
	}
	return t.routeIdx[name]
}

// sources returns the routes as backpressure sources, by name.
func (t *table) sources() map[string]monitor.Source {
	m := make(map[string]monitor.Source, len(t.routes))
	for _, rt := range t.routes {
		m[rt.name] = rt.adm
	}
	return m
}

// lookup returns the first route that matches, or nil; host and p as
// routing.Index.Lookup takes them.
func (t *table) lookup(host, p, method string) *Route {
	if i := t.index.Lookup(host, p, method); i >= 0 {
		return t.routes[i]
	}
	return nil
}
