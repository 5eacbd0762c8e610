package server

// HTTPS. With a tls block, sluice serves the same proxy handler on
// tls.listen as on server.listen, over HTTP/2 and HTTP/1.1 (ALPN), TLS 1.2
// at least. Certificates come from a certSource: ACME through certmagic
// (acmeCerts) or a static pair reloaded when its files change (fileCerts).
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

	"sluice/clock"
	"sluice/config"
)

// acmeChallengePrefix is where ACME HTTP-01 validation requests arrive
// (RFC 8555 §8.3). They are never redirected to https.
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// certSource supplies the TLS listener's certificates.
type certSource interface {
	// start begins managing certificates for the proxy's plain listener
	// bound at plain and its TLS listener bound at tls (where an ACME CA
	// validates challenges). It is called before either serves.
	start(plain, tls net.Addr) error
	// ready returns once every configured name has a certificate to serve,
	// or with the reason one cannot be had. Both listeners serve meanwhile.
	ready(ctx context.Context) error
	// getCertificate is the tls.Config.GetCertificate callback.
	getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// alpn lists the ALPN protocols the source answers itself, besides
	// h2 and http/1.1.
	alpn() []string
	// serveChallenge answers an ACME HTTP-01 validation request it knows
	// and reports whether it did.
	serveChallenge(w http.ResponseWriter, r *http.Request) bool
	// stop ends background work (renewals, file watching). Safe to call
	// more than once, and before start.
	stop()
}

var (
	_ certSource = (*acmeCerts)(nil)
	_ certSource = (*fileCerts)(nil)
)

// tlsFrontend is the HTTPS side of a Server.
type tlsFrontend struct {
	cfg   *config.TLS
	log   *slog.Logger
	certs certSource
	srv   *http.Server
	ln    net.Listener // bound by start; srv reads it through tls.NewListener and the framing guard

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
	if cfg.ACME != nil {
		f.certs, err = newACMECerts(cfg.ACME, log)
	} else {
		f.certs, err = newFileCerts(cfg.CertFile, cfg.KeyFile, log, clock.Real())
	}
	if err != nil {
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
		challenge := isChallengePath(r.URL.Path)
		if challenge && f.certs.serveChallenge(w, r) {
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

// isChallengePath reports whether p names one ACME HTTP-01 token. Dot
// segments are not tokens: "/.well-known/acme-challenge/../x" must not
// slip past the redirect.
func isChallengePath(p string) bool {
	tok, ok := strings.CutPrefix(p, acmeChallengePrefix)
	return ok && tok != "" && tok != "." && tok != ".." && !strings.Contains(tok, "/")
}

// starting answers requests that arrive while certificates are obtained.
func starting(w http.ResponseWriter) {
	http.Error(w, "sluice is starting", http.StatusServiceUnavailable)
}

// redirect answers 308 (RFC 9110 §15.4.9: the method and body are kept) to
// the same host, path and query on the TLS listener.
func (f *tlsFrontend) redirect(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		// HTTP/1.0 without Host: there is nowhere to send the client.
		http.Error(w, "missing Host header", http.StatusBadRequest)
		return
	}
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
func (f *tlsFrontend) start(ctx context.Context, plain *http.Server, plainLn net.Listener, guard *framingGuard, serve func(*http.Server, net.Listener)) error {
	ln, err := net.Listen("tcp", f.cfg.Listen)
	if err != nil {
		plainLn.Close()
		return fmt.Errorf("tls listener: %w", err)
	}
	f.ln = ln
	if _, port, err := net.SplitHostPort(ln.Addr().String()); err == nil && port != "443" {
		f.port = port
	}
	if err := f.certs.start(plainLn.Addr(), ln.Addr()); err != nil {
		ln.Close()
		plainLn.Close()
		return err
	}
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: f.certs.getCertificate,
		// http.Server speaks HTTP/2 on connections that negotiated h2.
		NextProtos: append([]string{"h2", "http/1.1"}, f.certs.alpn()...),
	}
	go serve(plain, guard.listener(plainLn))
	go serve(f.srv, guard.tlsListener(tls.NewListener(ln, tc), f.srv.ReadHeaderTimeout))
	if err := f.certs.ready(ctx); err != nil {
		plain.Close()
		f.srv.Close()
		f.certs.stop()
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
		f.certs.stop()
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
