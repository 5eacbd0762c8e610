// Package server runs sluice: it binds the proxy and admin listeners, serves
// until told to stop, and drains gracefully.
//
// Drain order on shutdown: readiness goes 503 first (so a load balancer
// polling /readyz stops sending), queued requests are refused with 503
// shutting_down, then the proxy listener stops accepting and in-flight
// requests get server.shutdown_grace to finish; whatever is still running
// after that is cut. The admin listener closes last, so /readyz is
// observable for the whole drain.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sluice/admin"
	"sluice/config"
	"sluice/framing"
	"sluice/monitor"
	"sluice/proxy"
	"sluice/server/internal/h1serve"
	"sluice/telemetry"
)

// readToken reads the admin bearer token; "" when no file is configured.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin.token_file %s is empty", path)
	}
	return tok, nil
}

// Options are a Server's collaborators. The zero value is usable.
type Options struct {
	// Log receives sluice's own log lines. If nil, slog.Default() is used.
	Log *slog.Logger
	// Version is reported by the API and in traces.
	Version string
	// Stdout receives spans of the stdout trace exporter; Stderr the access
	// log. Nil: os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// ConfigPath is the file the config came from. When set, Reload reads it
	// again and Start watches it for changes; empty (the demo) disables both.
	ConfigPath string
}

// Server is one running sluice instance.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	proxy   *proxy.Proxy
	admin   *admin.Server
	tracing *telemetry.Provider
	access  *bufferedWriter // nil without an access log
	h1      *h1serve.Server // serves the plain proxy listener, proxySrv behind it
	reloads *prometheus.CounterVec

	proxySrv *http.Server
	adminSrv *http.Server
	guard    *framing.Guard // HTTP/1 framing checks on the proxy listeners
	proxyLn  net.Listener
	https    *tlsFrontend // nil without a tls block
	adminLn  net.Listener

	draining atomic.Bool
	serveErr chan error // first fatal Serve error of either listener

	configPath string
	cfgNow     atomic.Pointer[config.Config] // the config serving now
	reloadMu   sync.Mutex                    // serialises reloads

	stopBackground context.CancelFunc // stops the admin rate ticker and log flusher
	background     sync.WaitGroup
}

// New builds a server for a validated config. Nothing listens until Start.
// It fails on what the config names but cannot be had: an unreadable or
// empty admin token file, a tracing endpoint the exporter rejects.
func New(cfg *config.Config, o Options) (*Server, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	token, err := readToken(cfg.Admin.TokenFile)
	if err != nil {
		return nil, err
	}
	tp, err := telemetry.New(context.Background(), cfg.Tracing, o.Version, o.Stdout)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	popts := proxy.Options{
		Log:     log,
		Sampler: monitor.NewSampler(cfg.Monitoring.SampleInterval, cfg.Monitoring.Samples, nil, log),
	}
	if tp.Enabled() {
		popts.Tracer, popts.Propagator = tp.Tracer(), tp.Propagator()
	}
	s := &Server{cfg: cfg, log: log, tracing: tp, serveErr: make(chan error, 3), configPath: o.ConfigPath}
	s.cfgNow.Store(cfg)
	if cfg.Server.AccessLog {
		s.access = newBufferedWriter(o.Stderr)
		popts.AccessLog = slog.New(slog.NewJSONHandler(s.access, nil))
	}
	p, err := proxy.New(cfg, popts)
	if err != nil {
		return nil, err
	}
	s.proxy = p

	reg := prometheus.NewRegistry()
	s.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_config_reloads_total", Help: "Config reloads, by result (success or error).",
	}, []string{"result"})
	s.reloads.WithLabelValues("success")
	s.reloads.WithLabelValues("error")
	s.guard = framing.NewGuard(cfg.Server.MaxHeaderBytes, func(remote net.Addr) {
		log.Warn("refused a request with both Content-Length and Transfer-Encoding (400, connection closed)", "remote", remote.String())
	})
	framingRefused := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sluice_http_framing_rejected_total",
		Help: "HTTP/1 requests refused with 400 for carrying both Content-Length and Transfer-Encoding.",
	}, func() float64 { return float64(s.guard.Rejected()) })
	// The plain listener's own HTTP/1.1 loop: what it served, and what it
	// handed to net/http (s.h1 is set below, before anything is served).
	loopServed := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sluice_http1_loop_requests_total",
		Help: "Requests on the plain listener answered by sluice's own HTTP/1.1 loop.",
	}, func() float64 { return float64(s.h1.Served()) })
	loopHandedOff := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sluice_http1_handoffs_total",
		Help: "Connections on the plain listener handed to Go's net/http server, at the first request the own loop does not serve (a body, HTTP/1.0, an upgrade, a malformed or oversized head).",
	}, func() float64 { return float64(s.h1.HandedOff()) })
	reg.MustRegister(p.Collector(), s.reloads, framingRefused, loopServed, loopHandedOff,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.admin = admin.New(admin.Options{
		Ready:   s.Ready,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}),
		Proxy:   p,
		Config:  s.Config,
		Token:   token,
		Version: o.Version,
		Started: time.Now(),
	})
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	s.proxySrv = &http.Server{
		Handler:           framing.CloseRefusedUpgrades(p),
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          errLog,
		// No ReadTimeout or WriteTimeout: they would cut uploads, streams
		// and WebSockets. The route timeout bounds each request instead.
	}
	s.h1 = &h1serve.Server{Fallback: s.proxySrv, Wrap: s.guard.Conn}
	if cfg.TLS != nil {
		if s.https, err = newTLSFrontend(cfg.TLS, s.proxySrv, log); err != nil {
			return nil, err
		}
		s.https.capConns = func(ln net.Listener) net.Listener { return p.Overload().Listener(ln, nil) }
		s.proxySrv.Handler = framing.CloseRefusedUpgrades(s.https.plainHandler(p)) // ACME challenges, redirect_http
	}
	s.adminSrv = &http.Server{
		Handler:           s.admin,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          errLog,
	}
	return s, nil
}

// Proxy returns the server's proxy handler.
func (s *Server) Proxy() *proxy.Proxy { return s.proxy }

// Ready reports whether the server takes traffic: false once draining.
func (s *Server) Ready() bool { return !s.draining.Load() }

// Start binds the listeners and begins serving. A bind error (or, with
// ACME, a certificate that cannot be had) is returned before anything
// serves, so a bad setup fails the process at start. ctx bounds only the
// startup; background work runs until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("proxy listener: %w", err)
	}
	// Both proxy listeners count their connections against
	// server.max_connections; a plain connection over it is told 503
	// overloaded before it is closed.
	s.proxyLn = s.proxy.Overload().Listener(ln, proxy.ConnRefusal())
	if s.adminLn, err = net.Listen("tcp", s.cfg.Admin.Listen); err != nil {
		s.proxyLn.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	if s.https != nil {
		// Serves both proxy listeners (gated) while ACME certificates are
		// obtained; fails, with both closed, if they cannot be.
		if err := s.https.start(ctx, s.proxySrv, s.proxyLn, s.guard, s.serve); err != nil {
			s.adminLn.Close()
			return fmt.Errorf("tls: %w", err)
		}
	}
	// ctx bounds startup (a signal may end an ACME wait); the background
	// work runs on until Shutdown.
	life := context.WithoutCancel(ctx)
	s.proxy.Start(life)
	bg, stop := context.WithCancel(life)
	s.stopBackground = stop
	s.background.Go(func() { s.admin.Run(bg) })
	if s.access != nil {
		s.background.Go(func() { s.access.run(bg) })
	}
	if s.configPath != "" {
		if err := s.watchConfig(bg); err != nil {
			s.log.Warn("config file not watched; reload with SIGHUP", "error", err)
		}
	}
	if s.https == nil {
		go s.serveH1(s.proxyLn)
	}
	go s.serve(s.adminSrv, s.adminLn)
	s.https.openGate()
	s.log.Info("sluice serving", "proxy", s.ProxyAddr(), "admin", s.AdminAddr(),
		"routes", len(s.cfg.Routes), "upstreams", len(s.cfg.Upstreams),
		"max_connections", s.cfg.Server.MaxConnections, "max_inflight", s.cfg.Server.MaxInflight,
		"memory_limit", s.cfg.Server.MemoryLimit.String())
	return nil
}

// serveH1 serves the plain proxy listener with sluice's own HTTP/1.1 loop,
// which hands the connections it does not serve to proxySrv through the
// framing guard.
func (s *Server) serveH1(ln net.Listener) {
	if err := s.h1.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.serveErr <- err
	}
}

func (s *Server) serve(srv *http.Server, ln net.Listener) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.serveErr <- err
	}
}

// ProxyAddr is the bound proxy address (useful with port 0).
func (s *Server) ProxyAddr() string { return s.proxyLn.Addr().String() }

// AdminAddr is the bound admin address.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Run starts the server and serves until ctx is done (a signal), then
// drains. It returns a bind or serve error, or nil after a clean drain.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	return s.Wait(ctx)
}

// Wait serves until ctx is done or a listener fails, then drains.
func (s *Server) Wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.serveErr:
		s.log.Error("listener failed", "error", err)
	}
	s.Shutdown()
	return err
}

// Shutdown drains: readiness off, stop accepting, give in-flight requests
// server.shutdown_grace, then cut what remains and stop the admin listener.
func (s *Server) Shutdown() {
	if !s.draining.CompareAndSwap(false, true) {
		return
	}
	grace := s.cfg.Server.ShutdownGrace
	s.log.Info("draining", "grace", grace.String())
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// Queued requests are refused now (503 shutting_down) rather than kept
	// waiting for a slot the drain may not give them in time.
	s.proxy.Drain()
	waitTLS := s.https.shutdown(ctx)           // drains alongside the plain listener
	if err := s.h1.Shutdown(ctx); err != nil { // and proxySrv
		s.log.Warn("grace period over, closing remaining connections", "error", err)
		s.h1.Close()
	}
	waitTLS()
	s.proxy.Close()
	actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer acancel()
	if err := s.tracing.Shutdown(actx); err != nil {
		s.log.Warn("flushing traces", "error", err)
	}
	_ = s.adminSrv.Shutdown(actx)
	if s.stopBackground != nil {
		s.stopBackground()
		s.background.Wait() // the access log is flushed by now
	}
	s.log.Info("stopped")
}
