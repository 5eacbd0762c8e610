package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"

	"sluice/config"
)

// acmeStartTimeout bounds how long Ready waits for ACME certificates. A CA
// issues within seconds; the bound is for one that accepts connections but
// never finishes an order.
const acmeStartTimeout = 2 * time.Minute

// acmeCerts obtains and renews certificates for tls.acme.domains through
// certmagic.
//
// Each acmeCerts has its own certmagic Cache and Config, never certmagic's
// package-level default, so several servers (tests) can share a process
// and each stops its own maintenance goroutine in Stop. At Ready,
// certificates already in storage are loaded and missing ones are ordered;
// Ready returns once every domain has an unexpired certificate. certmagic's
// maintenance renews them in the background; a failed renewal is logged
// and retried while the current certificate keeps serving.
//
// certmagic is driven with ManageAsync, not ManageSync, and Ready waits on
// certmagic's events instead. ManageSync is made for a person at a
// terminal: with no email configured it prompts on stdin (and writes a
// package global), and it renews a stored certificate that is due in the
// foreground, so a CA outage during a restart would stop sluice even
// though it holds a certificate valid for weeks. Here the first failed
// order for a domain that has no valid certificate fails Ready with the
// CA's reason, and Stop cancels the order's retries.
type acmeCerts struct {
	cfg     *config.ACME
	domains []string // cfg.Domains as certmagic names them
	log     *slog.Logger
	roots   *x509.CertPool // tls.acme.ca_root; nil = the system roots
	timeout time.Duration  // bound on Ready

	// Set by Start, before anything serves.
	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
	jobs   context.Context    // certmagic's obtain and renew jobs run in it
	cancel context.CancelFunc // ends them

	mu       sync.Mutex       // guards starting, failed, obtained
	starting bool             // Ready is waiting
	failed   map[string]error // first failure per domain while starting
	obtained map[string]bool  // domains issued a certificate while starting
	changed  chan struct{}    // cap 1: an event arrived, Ready looks again

	stopOnce sync.Once
}

func newACMECerts(cfg *config.ACME, log *slog.Logger) (*acmeCerts, error) {
	a := &acmeCerts{cfg: cfg, log: log, timeout: acmeStartTimeout, changed: make(chan struct{}, 1)}
	for _, d := range cfg.Domains {
		if strings.HasPrefix(d, "*.") {
			// Wildcards need DNS-01, which needs a DNS provider's API.
			return nil, fmt.Errorf("tls.acme.domains: %q is a wildcard: a wildcard certificate needs the DNS-01 challenge, and sluice answers HTTP-01 and TLS-ALPN-01 only", d)
		}
		a.domains = append(a.domains, strings.ToLower(d))
	}
	if cfg.CARoot != "" {
		pem, err := os.ReadFile(cfg.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_root: %w", err)
		}
		a.roots = x509.NewCertPool()
		if !a.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme.ca_root %s: no PEM certificate in it", cfg.CARoot)
		}
	}
	return a, nil
}

// Start sets up certmagic for listeners bound at plain and tlsAddr; it
// orders nothing yet (that is Ready's job, once they serve).
func (a *acmeCerts) Start(plain, tlsAddr net.Addr) error {
	if err := checkWritable(a.cfg.Storage); err != nil {
		return fmt.Errorf("tls.acme.storage: %w", err)
	}
	zl := zapToSlog(a.log.Handler())
	var magic atomic.Pointer[certmagic.Config] // set just below, read by maintenance
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic.Load(), nil },
		Logger:           zl,
	})
	a.magic = certmagic.New(a.cache, certmagic.Config{
		Storage:           &certmagic.FileStorage{Path: a.cfg.Storage},
		OnEvent:           a.onEvent,
		DefaultServerName: a.domains[0], // for clients that send no SNI
		Logger:            zl,
	})
	magic.Store(a.magic)

	host, httpPort := splitAddr(plain)
	tlsHost, tlsPort := splitAddr(tlsAddr)
	if tlsHost != host {
		// One ListenHost serves both challenges; the wildcard address
		// clashes with a listener on any host, which is what is wanted.
		host = ""
	}
	a.issuer = certmagic.NewACMEIssuer(a.magic, certmagic.ACMEIssuer{
		CA:           a.cfg.CA,
		Email:        a.cfg.Email,
		Agreed:       true, // configuring an ACME CA is agreeing to its terms
		TrustedRoots: a.roots,
		// The challenges are answered by sluice's own listeners. certmagic
		// tries to bind ListenHost:port for a solver server, finds the
		// address taken and, as documented, assumes the listener there
		// answers: its HTTP-01 requests reach ServeChallenge,, GetCertificate for TLS-ALPN-01.
		ListenHost:     host,
		AltHTTPPort:    httpPort,
		AltTLSALPNPort: tlsPort,
		Logger:         zl,
	})
	a.magic.Issuers = []certmagic.Issuer{a.issuer}
	a.jobs, a.cancel = context.WithCancel(context.Background())
	return nil
}

// splitAddr returns a bound address's host ("" when unspecified) and port.
func splitAddr(addr net.Addr) (string, int) {
	h, p, _ := net.SplitHostPort(addr.String())
	port, _ := strconv.Atoi(p)
	if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		h = ""
	}
	return h, port
}

// checkWritable makes dir and checks a file can be written in it, so a bad
// storage path is named at start rather than inside an ACME order.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".sluice-write-check-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// Ready waits until every domain has an unexpired certificate in the
// cache: loaded from storage, or ordered from the CA while both listeners
// answer its challenges.
func (a *acmeCerts) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	a.mu.Lock()
	a.starting, a.failed, a.obtained = true, map[string]error{}, map[string]bool{}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.starting, a.failed, a.obtained = false, nil, nil
		a.mu.Unlock()
	}()
	if err := a.magic.ManageAsync(a.jobs, a.domains); err != nil {
		return fmt.Errorf("tls.acme: %w", err)
	}
	for {
		var pending []string
		for _, d := range a.domains {
			if a.servable(d) {
				continue
			}
			a.mu.Lock()
			failed, obtained := a.failed[d], a.obtained[d]
			a.mu.Unlock()
			if failed != nil {
				return fmt.Errorf("tls.acme: no certificate for %s from %s: %w", d, a.cfg.CA, failed)
			}
			// A renewed certificate replaces an expired one in the cache
			// only after the event: load it from storage now.
			if obtained {
				if _, err := a.magic.CacheManagedCertificate(ctx, d); err == nil && a.servable(d) {
					continue
				}
			}
			pending = append(pending, d)
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-a.changed:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("tls.acme: no certificate for %s from %s within %s", strings.Join(pending, ", "), a.cfg.CA, a.timeout)
			}
			return fmt.Errorf("tls.acme: no certificate for %s: %w", strings.Join(pending, ", "), ctx.Err())
		}
	}
}

// servable reports whether the cache holds an unexpired certificate for
// name.
func (a *acmeCerts) servable(name string) bool {
	for _, c := range a.cache.AllMatchingCertificates(name) {
		if c.Leaf != nil && !c.Expired() {
			return true
		}
	}
	return false
}

// onEvent logs certmagic's certificate events, one line each, and tells a
// waiting Ready. certmagic calls it synchronously, so it only logs and
// signals.
func (a *acmeCerts) onEvent(_ context.Context, event string, data map[string]any) error {
	domain, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtaining":
		a.log.Info("obtaining certificate", "domain", domain, "ca", a.cfg.CA)
	case "cert_obtained":
		msg := "certificate obtained"
		if renewal {
			msg = "certificate renewed"
		}
		a.log.Info(msg, "domain", domain, "issuer", data["issuer"])
		a.note(domain, nil, true)
	case "cert_failed":
		err, _ := data["error"].(error)
		if err == nil {
			err = errors.New("unknown error")
		}
		if renewal {
			a.log.Error("renewing certificate failed; the current one is served until it expires and the renewal is retried",
				"domain", domain, "remaining", data["remaining"], "error", err)
		} else {
			a.log.Error("obtaining certificate failed", "domain", domain, "error", err)
		}
		a.note(domain, err, false)
	case "cached_managed_cert":
		a.log.Debug("certificate loaded", "domains", data["sans"])
		a.note("", nil, false)
	case "cert_ocsp_revoked":
		a.log.Warn("certificate revoked; replacing it", "domain", domain)
	}
	return nil
}

// note records an event for Ready and wakes it.
func (a *acmeCerts) note(domain string, err error, obtained bool) {
	a.mu.Lock()
	if a.starting && domain != "" {
		if err != nil && a.failed[domain] == nil {
			a.failed[domain] = err
		}
		if obtained {
			a.obtained[domain] = true
		}
	}
	a.mu.Unlock()
	select {
	case a.changed <- struct{}{}:
	default: // Ready has a wake-up pending already
	}
}

func (a *acmeCerts) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return a.magic.GetCertificate(hello)
}

// ALPN adds TLS-ALPN-01's protocol (RFC 8737): certmagic's GetCertificate
// answers a hello offering only it with the challenge certificate.
func (a *acmeCerts) ALPN() []string { return []string{"acme-tls/1"} }

func (a *acmeCerts) ServeChallenge(w http.ResponseWriter, r *http.Request) bool {
	return a.issuer.HandleHTTPChallenge(w, r)
}

// Stop cancels pending orders and stops certmagic's maintenance goroutine,
// waiting for it.
func (a *acmeCerts) Stop() {
	a.stopOnce.Do(func() {
		if a.cancel != nil {
			a.cancel()
		}
		if a.cache != nil {
			a.cache.Stop()
		}
	})
}
