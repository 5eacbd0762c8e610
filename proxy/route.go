package proxy

import (
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/admission"
	"sluice/config"
	"sluice/monitor"
)

// Route is one compiled entry of the routing table.
type Route struct {
	cfg      config.Route // as configured, to tell an unchanged route on reload
	name     string
	nameJSON []byte // name as a JSON string, precomputed for reject bodies
	m        matcher
	up       *Upstream
	// strip is the prefix removed before forwarding; "" when strip_prefix is off.
	strip   string
	timeout time.Duration // whole-request deadline; 0 = none
	maxBody int64         // request body limit in bytes; 0 = none

	adm      *admission.Controller
	rlPolicy []string // RateLimit-Policy header value; nil without a rate limit
	rlValues *rlCache // recent RateLimit header values; nil without a rate limit

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

// matcher holds a route's match conditions in the form the hot path needs:
// host lower-cased, wildcard reduced to its suffix.
type matcher struct {
	host     string // exact host, or "" for any
	suffix   string // ".example.com" for "*.example.com"
	path     string // exact path, or ""
	prefix   string // path prefix, or ""
	anyBelow bool   // prefix ends in "/": plain string prefix match
	methods  []string
}

func newMatcher(m config.Match) matcher {
	mt := matcher{path: m.Path, methods: m.Methods}
	if s, ok := strings.CutPrefix(m.Host, "*"); ok {
		mt.suffix = strings.ToLower(s)
	} else {
		mt.host = strings.ToLower(m.Host)
	}
	if m.PathPrefix != "" {
		mt.prefix = m.PathPrefix
		mt.anyBelow = strings.HasSuffix(m.PathPrefix, "/")
	}
	return mt
}

// match reports whether a request for host (lower-case, no port), the
// cleaned path p and method matches.
func (m *matcher) match(host, p, method string) bool {
	if m.host != "" && host != m.host {
		return false
	}
	// A wildcard matches any depth of subdomain but not the apex itself:
	// "*.example.com" matches a.example.com and a.b.example.com, not
	// example.com, as a TLS wildcard certificate would not either.
	if m.suffix != "" && (len(host) <= len(m.suffix) || !strings.HasSuffix(host, m.suffix)) {
		return false
	}
	if m.path != "" && p != m.path {
		return false
	}
	if m.prefix != "" && !hasPathPrefix(p, m.prefix, m.anyBelow) {
		return false
	}
	if len(m.methods) > 0 {
		for _, mm := range m.methods {
			if mm == method {
				return true
			}
		}
		return false
	}
	return true
}

// hasPathPrefix matches prefix at a segment boundary, so that a route for
// /admin does not also capture /administrator. A prefix ending in "/" is
// already a boundary.
func hasPathPrefix(p, prefix string, anyBelow bool) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return anyBelow || len(p) == len(prefix) || p[len(prefix)] == '/'
}

// requestHost returns the request's host without port, lower-cased, with a
// trailing dot removed. It allocates only when the host has upper-case letters.
func requestHost(hostport string) string {
	h := hostport
	if strings.HasPrefix(h, "[") { // [v6]:port or [v6]
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 && strings.IndexByte(h[i+1:], ':') < 0 {
		h = h[:i] // name:port or v4:port; a bare v6 address keeps its colons
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// needsClean reports whether u's path needs normalising before routing:
// dot segments in the decoded path (%2e%2e included), or empty or dot
// segments in the escaped one. Such a path is normalised before routing and
// forwarding, so that /public/../admin cannot be routed as /public and then
// served as /admin upstream.
func needsClean(u *url.URL) bool {
	if !strings.HasPrefix(u.Path, "/") || hasDotSegment(u.Path) {
		return true
	}
	if u.RawPath == "" {
		return strings.Contains(u.Path, "//")
	}
	e := u.EscapedPath()
	return strings.Contains(e, "//") || hasDotSegment(e)
}

func hasDotSegment(p string) bool {
	return strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
		strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")
}

// cleanURLPath normalises u's path in place (RFC 3986 §5.2.4 dot-segment
// removal plus merged slashes), keeping a trailing slash. Slashes are merged
// in the escaped form, so an encoded slash (%2F) stays inside its segment,
// as the client meant. But the decoded path must end up without dot
// segments: an upstream that decodes %2e%2e would otherwise be walked out
// of the prefix the request was routed by, so when the escaped form still
// decodes to one, the decoded path is cleaned instead.
func cleanURLPath(u *url.URL) {
	esc := cleanSlashed(u.EscapedPath())
	if p, err := url.PathUnescape(esc); err == nil && !hasDotSegment(p) {
		u.Path, u.RawPath = p, esc
		if u.EscapedPath() != esc {
			u.RawPath = "" // not a valid encoding of p: let url escape it
		}
		return
	}
	u.Path, u.RawPath = cleanSlashed(u.Path), ""
}

// cleanSlashed is path.Clean of "/"+p, keeping a trailing slash.
func cleanSlashed(p string) string {
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// table is an immutable routing table. Proxy swaps whole tables atomically so
// that a reload never shows a request half of two configs.
type table struct {
	routes    []*Route
	upstreams []*Upstream
	byName    map[string]*Upstream
	routeIdx  map[string]*Route // routes by name
	index     *routeIndex       // first-match lookup without a scan
}

// seal builds the lookup structures once the routes are all in.
func (t *table) seal() {
	t.routeIdx = make(map[string]*Route, len(t.routes))
	for _, rt := range t.routes {
		t.routeIdx[rt.name] = rt
	}
	t.index = newRouteIndex(t.routes)
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

// lookup returns the first route that matches, or nil.
func (t *table) lookup(host, p, method string) *Route {
	return t.index.lookup(host, p, method)
}
