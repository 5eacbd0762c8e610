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
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"sluice/admin"
	"sluice/config"
	"sluice/proxy"
)

// Server is one running sluice instance.
type Server struct {
	cfg   *config.Config
	log   *slog.Logger
	proxy *proxy.Proxy

	proxySrv *http.Server
	adminSrv *http.Server
	proxyLn  net.Listener
	adminLn  net.Listener

	draining atomic.Bool
	serveErr chan error // first fatal Serve error of either listener
}

// New builds a server for a validated config. Nothing listens until Start.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	p, err := proxy.New(cfg, proxy.Options{Log: log})
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, proxy: p, serveErr: make(chan error, 2)}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	s.proxySrv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          errLog,
		// No ReadTimeout or WriteTimeout: they would cut uploads, streams
		// and WebSockets. The route timeout bounds each request instead.
	}
	s.adminSrv = &http.Server{
		Handler:           admin.Handler(admin.Options{Ready: s.Ready}),
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

// Start binds both listeners and begins serving. A bind error is returned
// before anything serves, so a bad address fails the process at start.
func (s *Server) Start(ctx context.Context) error {
	var err error
	if s.proxyLn, err = net.Listen("tcp", s.cfg.Server.Listen); err != nil {
		return fmt.Errorf("proxy listener: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", s.cfg.Admin.Listen); err != nil {
		s.proxyLn.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	s.proxy.Start(ctx)
	go s.serve(s.proxySrv, s.proxyLn)
	go s.serve(s.adminSrv, s.adminLn)
	s.log.Info("sluice serving", "proxy", s.ProxyAddr(), "admin", s.AdminAddr(),
		"routes", len(s.cfg.Routes), "upstreams", len(s.cfg.Upstreams))
	return nil
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
	if err := s.proxySrv.Shutdown(ctx); err != nil {
		s.log.Warn("grace period over, closing remaining connections", "error", err)
		s.proxySrv.Close()
	}
	s.proxy.Close()
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	_ = s.adminSrv.Shutdown(actx)
	s.log.Info("stopped")
}
