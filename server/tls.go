package server

// HTTPS. With a tls block, sluice serves the same proxy handler on
// tls.listen as on server.listen, over HTTP/2 and HTTP/1.1 (ALPN), TLS 1.2
// at least. Certificates come from a certs.Source: ACME through certmagic,
// or a static pair reloaded when its files change.
//
// Start order, and why: ACME validates HTTP-01 on the plain listener and
// TLS-ALPN-01 on the TLS listener, so both must serve before the first
// certificate exists. Until Start has a certificate for every name, a gate
// answers everything except ACME challenges with 503; if a certificate
// cannot be had, Start closes both and fails, and the process exits
// without having proxied a request.

import (
	"context"
	"crypto/tls"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"

	"sluice/certs"
	"sluice/clock"
	"sluice/config"
	"sluice/framing"
	"sluice/proxy"
)

// tlsFrontend is the HTTPS side of a Server.
type tlsFrontend struct {
	cfg *config.TLS
	log *slog.Logger
	src certs.Source
	srv *http.Server
	ln  net.Listener // bound by start; srv reads it through tls.NewListener and the framing guard
	// capConns wraps the bound listener so that its connections count
	// against server.max_connections (nil: not counted).
	capConns func(net.Listener) net.Listener

	// open is set once Start has every certificate. Until then both
	// listeners answer ACME challenges and nothing else.
	open atomic.Bool
	// port is the TLS listener's port for redirect Locations, "" for 443.
	port string
}

// newTLSFrontend builds the HTTPS side for cfg. The HTTPS server serves
// plain's handler with plain's timeouts and header limit. A static pair is
// loaded here, so a missing, unreadable or mismatched file fails New.
func newTLSFrontend(cfg *config.TLS, plain *http.Server, log *slog.Logger) (*tlsFrontend, error) {
	f := &tlsFrontend{cfg: cfg, log: log}
	var err error
	if f.src, err = certs.New(cfg, log, clock.Real()); err != nil {
		return nil, err
	}
	f.srv = &http.Server{
		Handler:           f.gate(plain.Handler),
		ReadHeaderTimeout: plain.ReadHeaderTimeout, // also bounds the TLS handshake
		IdleTimeout:       plain.IdleTimeout,
		MaxHeaderBytes:    plain.MaxHeaderBytes,
		ErrorLog:          stdlog.New(serverErrorLog{log}, "", 0),
	}
	return f, nil
}

// serverErrorLog is the HTTPS server's ErrorLog. Failed handshakes are
// logged at debug: any client or scanner can cause them (certmagic itself
// opens and closes a connection to check the port is served), so at warn
// they would drown what matters.
type serverErrorLog struct{ log *slog.Logger }

func (w serverErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

// plainHandler wraps the proxy handler for the plain listener: ACME
// HTTP-01 challenges first, then a 308 to https (redirect_http) or the
// proxy. Challenge paths are never redirected: a CA validating HTTP-01
// follows redirects, but only to ports 80 and 443.
func (f *tlsFrontend) plainHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		challenge := certs.IsChallengePath(r.URL.Path)
		if challenge && f.src.ServeChallenge(w, r) {
			return
		}
		switch {
		case !f.open.Load():
			starting(w)
		case f.cfg.RedirectHTTP && !challenge:
			f.redirect(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// gate keeps next closed until Start has the certificates.
func (f *tlsFrontend) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.open.Load() {
			starting(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// starting answers requests that arrive while certificates are obtained.
func starting(w http.ResponseWriter) {
	proxy.WriteError(w, http.StatusServiceUnavailable, "sluice is starting: its certificates are being obtained")
}

// redirect answers 308 (RFC 9110 §15.4.9: the method and body are kept) to
// the same host, path and query on the TLS listener.
//
// The Host is checked as the proxy checks it before routing: Location is
// built from it, so a Host that is not a host would send the client to a
// URL of the client's own making.
func (f *tlsFrontend) redirect(w http.ResponseWriter, r *http.Request) {
	if r.Host == "" {
		// HTTP/1.0 without Host: there is nowhere to send the client.
		proxy.WriteError(w, http.StatusBadRequest, "the request has no Host header to redirect to")
		return
	}
	if err := proxy.CheckHost(r.Host); err != nil {
		proxy.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if f.port != "" {
		host = net.JoinHostPort(host, f.port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// start binds tls.listen, starts the certificate source, serves the plain
// server on plainLn and the HTTPS server, then waits (within ctx) until
// every certificate is there. On error nothing is left serving: both
// servers are closed, plainLn with them.
func (f *tlsFrontend) start(ctx context.Context, plain *http.Server, plainLn net.Listener, guard *framing.Guard, serve func(*http.Server, net.Listener)) error {
	ln, err := net.Listen("tcp", f.cfg.Listen)
	if err != nil {
		plainLn.Close()
		return fmt.Errorf("tls listener: %w", err)
	}
	if f.capConns != nil {
		// Beneath TLS: a connection over the limit is refused before its
		// handshake costs anything.
		ln = f.capConns(ln)
	}
	f.ln = ln
	if _, port, err := net.SplitHostPort(ln.Addr().String()); err == nil && port != "443" {
		f.port = port
	}
	if err := f.src.Start(plainLn.Addr(), ln.Addr()); err != nil {
		ln.Close()
		plainLn.Close()
		return err
	}
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: f.src.GetCertificate,
		// http.Server speaks HTTP/2 on connections that negotiated h2.
		NextProtos: append([]string{"h2", "http/1.1"}, f.src.ALPN()...),
	}
	go serve(plain, guard.Listener(plainLn))
	go serve(f.srv, guard.TLSListener(tls.NewListener(ln, tc), f.srv.ReadHeaderTimeout))
	if err := f.src.Ready(ctx); err != nil {
		plain.Close()
		f.srv.Close()
		f.src.Stop()
		return err
	}
	f.log.Info("https listener ready", "addr", ln.Addr().String())
	return nil
}

// openGate lets requests through to the proxy. Nil-safe.
func (f *tlsFrontend) openGate() {
	if f != nil {
		f.open.Store(true)
	}
}

// shutdown drains the HTTPS server within ctx (the same grace as the plain
// listener's, run alongside it) and then stops certificate maintenance. It
// returns at once; the func it returns waits for both. Nil-safe.
func (f *tlsFrontend) shutdown(ctx context.Context) (wait func()) {
	if f == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Shutdown also sends HTTP/2 clients a GOAWAY, so they stop
		// opening streams while theirs finish.
		if err := f.srv.Shutdown(ctx); err != nil {
			f.log.Warn("grace period over, closing remaining https connections", "error", err)
			f.srv.Close()
		}
		f.src.Stop()
	}()
	return func() { <-done }
}

// TLSAddr is the bound HTTPS address (useful with port 0), "" without a
// tls block.
func (s *Server) TLSAddr() string {
	if s.https == nil || s.https.ln == nil {
		return ""
	}
	return s.https.ln.Addr().String()
}
