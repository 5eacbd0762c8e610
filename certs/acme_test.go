package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"sluice/clock"
	"sluice/config"
	"sluice/internal/testutil"
)

// TestMain fails the package if any test leaves a goroutine behind, except
// the two certmagic keeps for the life of the process (certmagicLeftovers).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, certmagicLeftovers()...)
}

// certmagicLeftovers are the goroutines certmagic starts that no API of it
// stops, so Stop cannot either:
//   - one rate limiter per ACME directory and account email, kept in a
//     package map for the life of the process ("TODO: stop rate limiter
//     when it is garbage-collected");
//   - a lock-file refresher per storage lock, which notices the lock was
//     released within lockFreshnessInterval (5 s) and returns.
func certmagicLeftovers() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	}
}

// acmeTLS is a tls block with ACME from ca for sluice.test.
func acmeTLS(ca, caRoot, storage string) *config.TLS {
	return &config.TLS{ACME: &config.ACME{
		Domains: []string{"sluice.test"}, Email: "ops@sluice.test", CA: ca, CARoot: caRoot, Storage: storage,
	}}
}

// frontend serves a Source as the server does, on loopback: a plain HTTP
// listener passing challenges to ServeChallenge, and a TLS listener whose
// handshakes take the Source's certificates. Everything stops at the end
// of the test.
type frontend struct {
	src            Source
	plain, tlsAddr string
}

func serveSource(t *testing.T, src Source) *frontend {
	t.Helper()
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Start(plainLn.Addr(), tlsLn.Addr()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	plain := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsChallengePath(r.URL.Path) && src.ServeChallenge(w, r) {
			return
		}
		http.NotFound(w, r)
	})}
	secure := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	tc := &tls.Config{GetCertificate: src.GetCertificate, NextProtos: append([]string{"http/1.1"}, src.ALPN()...)}
	go plain.Serve(plainLn)
	go secure.Serve(tls.NewListener(tlsLn, tc))
	t.Cleanup(func() {
		plain.Close()
		secure.Close()
		src.Stop()
	})
	return &frontend{src: src, plain: plainLn.Addr().String(), tlsAddr: tlsLn.Addr().String()}
}

// peerSerial handshakes with addr as serverName and returns the serial of
// the certificate presented.
func peerSerial(addr, serverName string, roots *x509.CertPool) (*big.Int, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: serverName, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// TestACME obtains a certificate from a real pebble (which skips
// validation here: TestACMEValidated in package server has it validate
// against sluice's listeners), and serves it to a client trusting pebble's
// root. A second source with the same storage, pebble gone, serves the
// stored certificate without an order.
func TestACME(t *testing.T) {
	pb := testutil.StartPebble(t, testutil.PebbleOptions{HTTPPort: testutil.FreePort(t), TLSPort: testutil.FreePort(t), AlwaysValid: true})
	cfg := acmeTLS(pb.DirURL, pb.CARoot, t.TempDir())

	rec := &testutil.LogRecorder{}
	src, err := New(cfg, slog.New(rec), clock.Real())
	if err != nil {
		t.Fatal(err)
	}
	f := serveSource(t, src)
	if err := src.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v\nlog:\n%s\npebble:\n%s", err, rec, pb.Out)
	}
	serial, err := peerSerial(f.tlsAddr, "sluice.test", pb.Roots)
	if err != nil {
		t.Fatalf("handshake as sluice.test: %v", err)
	}
	if len(rec.Find("certificate obtained", "domain=sluice.test")) != 1 {
		t.Errorf("want one 'certificate obtained' line for sluice.test:\n%s", rec)
	}
	src.Stop()

	pb.Stop()
	rec2 := &testutil.LogRecorder{}
	src2, err := New(cfg, slog.New(rec2), clock.Real())
	if err != nil {
		t.Fatal(err)
	}
	f2 := serveSource(t, src2)
	if err := src2.Ready(context.Background()); err != nil {
		t.Fatalf("second Ready: %v\nlog:\n%s", err, rec2)
	}
	got, err := peerSerial(f2.tlsAddr, "sluice.test", pb.Roots)
	if err != nil || got.Cmp(serial) != 0 {
		t.Errorf("second source serves serial %x (%v), want the stored %x", got, err, serial)
	}
	if lines := rec2.Find("obtaining certificate"); len(lines) != 0 {
		t.Errorf("second source ordered a certificate: %q", lines)
	}
}

// TestACMEErrors: a CA that cannot be reached fails Ready with the domain,
// the CA and the reason; a ca_root that is not PEM or a wildcard domain
// fails New.
func TestACMEErrors(t *testing.T) {
	t.Run("unreachable CA", func(t *testing.T) {
		closed := testutil.RefusedPort(t) // bound, never listening: connection refused
		rec := &testutil.LogRecorder{}
		src, err := New(acmeTLS(fmt.Sprintf("https://127.0.0.1:%d/dir", closed), "", t.TempDir()), slog.New(rec), clock.Real())
		if err != nil {
			t.Fatal(err)
		}
		serveSource(t, src)
		err = src.Ready(context.Background())
		if err == nil {
			t.Fatal("Ready succeeded without a CA")
		}
		for _, w := range []string{"sluice.test", fmt.Sprintf("127.0.0.1:%d", closed), "connection refused"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
		if len(rec.Find("obtaining certificate failed", "domain=sluice.test")) == 0 {
			t.Errorf("failure not logged with the domain:\n%s", rec)
		}
	})
	notPEM := t.TempDir() + "/root.pem"
	testutil.WriteAtomic(t, notPEM, []byte("not a certificate"))
	for _, tc := range []struct {
		name string
		cfg  *config.TLS
		want []string
	}{
		{"ca_root not PEM", acmeTLS("https://127.0.0.1:1/dir", notPEM, t.TempDir()), []string{"tls.acme.ca_root", notPEM}},
		{"wildcard", &config.TLS{ACME: &config.ACME{Domains: []string{"*.sluice.test"}, CA: "https://127.0.0.1:1/dir", Storage: t.TempDir()}},
			[]string{"tls.acme.domains", "*.sluice.test", "DNS-01"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, slog.New(&testutil.LogRecorder{}), clock.Real())
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestIsChallengePath: one token below the challenge prefix, never a dot
// segment or a deeper path.
func TestIsChallengePath(t *testing.T) {
	for p, want := range map[string]bool{
		"/.well-known/acme-challenge/tok3n":    true,
		"/.well-known/acme-challenge/":         false,
		"/.well-known/acme-challenge/.":        false,
		"/.well-known/acme-challenge/..":       false,
		"/.well-known/acme-challenge/../admin": false,
		"/.well-known/acme-challenge/a/b":      false,
		"/.well-known/acme-challengex":         false,
		"/x/.well-known/acme-challenge/tok":    false,
	} {
		if got := IsChallengePath(p); got != want {
			t.Errorf("IsChallengePath(%q) = %v, want %v", p, got, want)
		}
	}
}
