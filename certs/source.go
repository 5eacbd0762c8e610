package certs

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"sluice/clock"
	"sluice/config"
)

// Source supplies a TLS listener's certificates. Its methods may be called
// from any goroutine once Start has returned.
type Source interface {
	// Start begins managing certificates for the proxy's plain listener
	// bound at plain and its TLS listener bound at tls (where an ACME CA
	// validates challenges). It is called before either serves.
	Start(plain, tls net.Addr) error
	// Ready returns once every configured name has a certificate to serve,
	// or with the reason one cannot be had. Both listeners serve meanwhile.
	Ready(ctx context.Context) error
	// GetCertificate is the tls.Config.GetCertificate callback.
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ALPN lists the ALPN protocols the source answers itself in
	// GetCertificate, besides h2 and http/1.1.
	ALPN() []string
	// ServeChallenge answers an ACME HTTP-01 validation request it knows
	// and reports whether it did.
	ServeChallenge(w http.ResponseWriter, r *http.Request) bool
	// Stop ends background work (renewals, file watching) and waits for
	// it. Safe to call more than once, and before Start.
	Stop()
}

var (
	_ Source = (*acmeCerts)(nil)
	_ Source = (*fileCerts)(nil)
)

// New returns the Source cfg configures: ACME when cfg.ACME is set, else
// the static cfg.CertFile and cfg.KeyFile pair. The pair is loaded here, so
// a missing, unreadable or mismatched file is an error naming it; so is an
// unreadable tls.acme.ca_root or a wildcard domain. log receives the
// source's lines (certmagic's included); clk times the pair's reloads.
func New(cfg *config.TLS, log *slog.Logger, clk clock.Clock) (Source, error) {
	if cfg.ACME != nil {
		return newACMECerts(cfg.ACME, log)
	}
	return newFileCerts(cfg.CertFile, cfg.KeyFile, log, clk)
}

// challengePrefix is where ACME HTTP-01 validation requests arrive
// (RFC 8555 §8.3).
const challengePrefix = "/.well-known/acme-challenge/"

// IsChallengePath reports whether p names one ACME HTTP-01 token, a path
// that must reach ServeChallenge and never be redirected to https. Dot
// segments are not tokens: "/.well-known/acme-challenge/../x" must not
// slip past a redirect.
func IsChallengePath(p string) bool {
	tok, ok := strings.CutPrefix(p, challengePrefix)
	return ok && tok != "" && tok != "." && tok != ".." && !strings.Contains(tok, "/")
}
