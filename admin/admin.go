// Package admin serves sluice's admin listener: liveness and readiness,
// Prometheus metrics, the JSON monitoring API and the dashboard. It is never
// mounted on the proxy listener.
//
//	GET /healthz, /readyz          always open
//	GET /metrics                   Prometheus text
//	GET /api/v1/...                JSON monitoring API   } bearer token when
//	GET /                          dashboard             } admin.token_file is set
package admin

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"sluice/clock"
	"sluice/config"
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
	// Token, if not empty, is required as "Authorization: Bearer <token>"
	// on /api/* and the dashboard.
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
	rates *rateTracker
}

// New builds the admin handler. Call Run to keep the per-second rates
// of the API current.
func New(o Options) *Server {
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	s := &Server{o: o, mux: http.NewServeMux(), rates: newRateTracker()}
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
	}
	s.mux.Handle("GET /{$}", s.authed(http.HandlerFunc(s.index)))
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Run samples the counters behind the API's per-second rates every second
// until ctx is done.
func (s *Server) Run(ctx context.Context) {
	for {
		s.Tick()
		t := s.o.Clock.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// Tick takes one sample of the counters behind the per-second rates.
func (s *Server) Tick() {
	if s.o.Proxy != nil {
		s.rates.tick(s.o.Clock.Now(), s.o.Proxy.Routes())
	}
}

// authed requires the bearer token when one is configured. The comparison
// takes the same time whatever the guess, so a client cannot learn the
// token a byte at a time from response timing.
func (s *Server) authed(h http.Handler) http.Handler {
	if s.o.Token == "" {
		return h
	}
	want := []byte(s.o.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice admin"`)
			writeProblem(w, http.StatusUnauthorized, "a valid bearer token is required (admin.token_file)")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`<!doctype html><title>sluice admin</title>
<h1>sluice</h1><ul>
<li><a href="/api/v1/overview">overview</a></li>
<li><a href="/api/v1/routes">routes</a></li>
<li><a href="/api/v1/upstreams">upstreams</a></li>
<li><a href="/api/v1/config">config</a></li>
<li><a href="/metrics">metrics</a></li>
</ul>`))
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
