// Package admin serves sluice's admin listener: liveness and readiness,
// Prometheus metrics, the JSON monitoring API and the dashboard. It is never
// mounted on the proxy listener.
//
//	GET /healthz, /readyz          always open
//	GET /metrics                   Prometheus text
//	GET /api/v1/...                JSON monitoring API   } the admin token when
//	GET /, /ui/...                 dashboard             } admin.token_file is set
//
// The token arrives as "Authorization: Bearer <token>" (API clients) or as
// the sluice_admin_token cookie, which GET /?token=<token> sets (browsers:
// a page cannot send a header when the user navigates to it).
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"time"

	"sluice/admission"
	"sluice/clock"
	"sluice/config"
	"sluice/monitor"
	"sluice/proxy"
)

// Options are what the admin server needs from the running process.
type Options struct {
	// Ready reports whether the proxy is serving (false while draining).
	// If nil, the process is always ready.
	Ready func() bool
	// Metrics serves /metrics; nil leaves it out.
	Metrics http.Handler
	// Proxy is the running proxy, read for the monitoring API; nil leaves
	// the API out.
	Proxy *proxy.Proxy
	// Config returns the effective config for /api/v1/config.
	Config func() *config.Config
	// Token, if not empty, is required on /api/* and the dashboard, as
	// "Authorization: Bearer <token>" or as the sluice_admin_token cookie.
	Token string
	// Version and Started feed the overview.
	Version string
	Started time.Time
	// Clock paces the rate tracker. If nil, the wall clock is used.
	Clock clock.Clock
}

// Server is the admin listener's handler.
type Server struct {
	o     Options
	mux   *http.ServeMux
	rates *monitor.RateTracker
	// tokenSum is the SHA-256 of Options.Token: guesses are hashed and
	// compared with it, so the comparison is constant-time in the length
	// too (subtle.ConstantTimeCompare returns at once on unequal lengths).
	tokenSum [sha256.Size]byte
}

// New builds the admin handler. Call Run to keep the per-second rates
// of the API current.
func New(o Options) *Server {
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	s := &Server{
		o:        o,
		mux:      http.NewServeMux(),
		rates:    monitor.NewRateTracker(len(admission.Rejections), o.Clock, nil),
		tokenSum: sha256.Sum256([]byte(o.Token)),
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// Alive: the process answers. Load balancers use /readyz to decide traffic.
		writeText(w, http.StatusOK, "ok\n")
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if o.Ready != nil && !o.Ready() {
			writeText(w, http.StatusServiceUnavailable, "draining\n")
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	})
	if o.Metrics != nil {
		s.mux.Handle("GET /metrics", o.Metrics)
	}
	if o.Proxy != nil {
		s.routesAPI()
		s.faultAPI()
	}
	s.dashboardRoutes()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Run samples the counters behind the API's per-second rates at once and
// then every second until ctx is done (monitor.RateTracker.Run).
func (s *Server) Run(ctx context.Context) { s.rates.Run(ctx, s.routeCounts) }

// Tick takes one sample of the counters behind the per-second rates.
func (s *Server) Tick() { s.rates.Sample(s.routeCounts) }

// routeCounts yields every route's admission counters, the rejections in
// admission.Rejections order, for the rate tracker. It yields one slice for
// every route, which the tracker copies.
func (s *Server) routeCounts(yield func(string, monitor.Counts) bool) {
	if s.o.Proxy == nil {
		return
	}
	rejected := make([]uint64, len(admission.Rejections))
	for _, rt := range s.o.Proxy.Routes() {
		adm := rt.Admission()
		for i, r := range admission.Rejections {
			rejected[i] = adm.Rejected(r)
		}
		if !yield(rt.Name(), monitor.Counts{Admitted: adm.Admitted(), Rejected: rejected}) {
			return
		}
	}
}

// tokenCookie carries the admin token for browsers; GET /?token= sets it.
const tokenCookie = "sluice_admin_token"

// authed requires the admin token when one is configured: 401 with a
// problem body otherwise.
func (s *Server) authed(h http.Handler) http.Handler {
	if s.o.Token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hasToken(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice admin"`)
			writeProblem(w, http.StatusUnauthorized,
				"a valid admin token is required: send Authorization: Bearer <token>, or open /?token=<token> in a browser")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hasToken reports whether r carries the admin token, as a bearer header
// or as the cookie. Either one that matches is enough.
func (s *Server) hasToken(r *http.Request) bool {
	// The scheme name is case-insensitive (RFC 9110, section 11.1).
	if h := r.Header.Get("Authorization"); len(h) > len("Bearer ") && strings.EqualFold(h[:len("Bearer ")], "Bearer ") {
		if s.tokenMatches(strings.TrimSpace(h[len("Bearer "):])) {
			return true
		}
	}
	if c, err := r.Cookie(tokenCookie); err == nil {
		v := c.Value
		if u, err := url.PathUnescape(v); err == nil {
			v = u // the cookie holds the token path-escaped (tokenCookieValue)
		}
		return s.tokenMatches(v)
	}
	return false
}

// tokenMatches compares a guess with the token in time that depends on
// neither, so a client cannot learn the token a byte at a time (or its
// length) from response timing.
func (s *Server) tokenMatches(guess string) bool {
	sum := sha256.Sum256([]byte(guess))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

// tokenCookieValue is the token as a cookie value: path-escaped, which
// leaves the usual hex and base64url tokens as they are and turns bytes a
// cookie cannot hold (space, quote, semicolon, comma, backslash) into %XX.
func tokenCookieValue(token string) string { return url.PathEscape(token) }

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
