package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// acmeConfig is a sluice config with automatic HTTPS from ca for
// sluice.test.
func acmeConfig(plain, tlsAddr, ca, caRoot, storage, upstream string) string {
	return fmt.Sprintf(`
server: {listen: %q}
tls:
  listen: %q
  redirect_http: true
  acme: {domains: [sluice.test], email: ops@sluice.test, ca: %q, ca_root: %q, storage: %q}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: [%q]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, plain, tlsAddr, ca, caRoot, storage, upstream)
}

// TestACME obtains a certificate from a real pebble; a client trusting
// pebble's root completes HTTPS requests through sluice over HTTP/2, and
// the upstream is told X-Forwarded-Proto https. A second start with the
// same storage, pebble gone, serves the stored certificate without an order.
func TestACME(t *testing.T) {
	noLeaks(t, certmagicLeftovers()...)
	pb := startPebble(t, pebbleOptions{httpPort: freePort(t), tlsPort: freePort(t), alwaysValid: true})
	up := echoUpstream(t)
	storage := t.TempDir()
	conf := acmeConfig("127.0.0.1:0", "127.0.0.1:0", pb.dirURL, pb.caRoot, storage, up.URL)

	rec := &logRecorder{}
	s := startTLSServer(t, conf, rec)
	client := httpsClient(t, pb.roots, s.TLSAddr(), false)
	resp, body := get(t, client, "https://sluice.test/hello?a=1")
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || body != "proto=https path=/hello?a=1" {
		t.Fatalf("https://sluice.test/hello: %d %s %q, want 200 over HTTP/2 with proto=https", resp.StatusCode, resp.Proto, body)
	}
	serial := resp.TLS.PeerCertificates[0].SerialNumber
	if len(rec.find("certificate obtained", "domain=sluice.test")) != 1 {
		t.Errorf("want one 'certificate obtained' line for sluice.test:\n%s", rec)
	}
	// redirect_http: plain HTTP is sent to https.
	resp, _ = get(t, httpsClient(t, nil, s.ProxyAddr(), true), "http://sluice.test/x")
	_, tlsPort, _ := net.SplitHostPort(s.TLSAddr())
	if want := "https://sluice.test:" + tlsPort + "/x"; resp.StatusCode != 308 || resp.Header.Get("Location") != want {
		t.Errorf("plain GET: %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	client.CloseIdleConnections()
	s.Shutdown()

	pb.stop()
	rec2 := &logRecorder{}
	s2 := startTLSServer(t, conf, rec2)
	resp, body = get(t, httpsClient(t, pb.roots, s2.TLSAddr(), false), "https://sluice.test/again")
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || body != "proto=https path=/again" {
		t.Fatalf("second start: %d %s %q", resp.StatusCode, resp.Proto, body)
	}
	if got := resp.TLS.PeerCertificates[0].SerialNumber; got.Cmp(serial) != 0 {
		t.Errorf("second start serves serial %x, want the stored %x", got, serial)
	}

	if lines := rec2.find("obtaining certificate"); len(lines) != 0 {
		t.Errorf("second start ordered a certificate: %q", lines)
	}
}

// TestACMEValidated is the one test where pebble really validates
// challenges against sluice: it resolves sluice.test through
// pebble-challtestsrv to 127.0.0.1 and connects to its httpPort for
// HTTP-01 and its tlsPort for TLS-ALPN-01. Each subtest runs sluice with
// only one of its listeners on the port pebble validates, so that
// challenge type must succeed there (the ACME client falls back from the
// other one within the order).
func TestACMEValidated(t *testing.T) {
	httpPort, tlsPort := freePort(t), freePort(t)
	dns := startChallTestSrv(t)
	pb := startPebble(t, pebbleOptions{httpPort: httpPort, tlsPort: tlsPort, dnsServer: dns})
	up := echoUpstream(t)
	for _, tc := range []struct {
		challenge    string
		plain, tlsAt int
	}{
		{"http-01", httpPort, freePort(t)},
		{"tls-alpn-01", freePort(t), tlsPort},
	} {
		t.Run(tc.challenge, func(t *testing.T) {
			rec := &logRecorder{}
			s := startTLSServer(t, acmeConfig(fmt.Sprintf("127.0.0.1:%d", tc.plain), fmt.Sprintf("127.0.0.1:%d", tc.tlsAt),
				pb.dirURL, pb.caRoot, t.TempDir(), up.URL), rec)
			// certmagic logs each key authorization it serves (sluice
			// demotes those lines to debug).
			if len(rec.find("served key authentication", "challenge="+tc.challenge, "sluice.test")) == 0 {
				t.Errorf("sluice answered no %s challenge:\n%s\npebble:\n%s", tc.challenge, rec, pb.out)
			}
			resp, body := get(t, httpsClient(t, pb.roots, s.TLSAddr(), false), "https://sluice.test/v")
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 || body != "proto=https path=/v" {
				t.Errorf("https://sluice.test/v: %d %s %q", resp.StatusCode, resp.Proto, body)
			}
		})
	}
}

// TestACMEErrors: a CA that cannot be reached, or a ca_root that is not
// PEM, fails New or Start with a clear error, and nothing is left
// listening.
func TestACMEErrors(t *testing.T) {
	up := echoUpstream(t)
	closed := freePort(t) // nothing listens: connection refused
	notPEM := t.TempDir() + "/root.pem"
	writeAtomic(t, notPEM, []byte("not a certificate"))

	t.Run("unreachable CA", func(t *testing.T) {
		noLeaks(t, certmagicLeftovers()...)
		rec := &logRecorder{}
		s, err := newServer(t, acmeConfig("127.0.0.1:0", "127.0.0.1:0", fmt.Sprintf("https://127.0.0.1:%d/dir", closed), "",
			t.TempDir(), up.URL), rec)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = s.Start(context.Background())
		if err == nil {
			s.Shutdown()
			t.Fatal("Start succeeded without a CA")
		}
		t.Logf("Start: %v (after %s)", err, time.Since(start).Round(time.Millisecond))
		for _, w := range []string{"sluice.test", fmt.Sprintf("127.0.0.1:%d", closed), "connection refused"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
		if len(rec.find("obtaining certificate failed", "domain=sluice.test")) == 0 {
			t.Errorf("failure not logged with the domain:\n%s", rec)
		}
		for _, addr := range []string{s.ProxyAddr(), s.TLSAddr(), s.AdminAddr()} {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Errorf("%s still accepts connections after a failed Start", addr)
			}
		}
	})
	t.Run("ca_root not PEM", func(t *testing.T) {
		_, err := newServer(t, acmeConfig("127.0.0.1:0", "127.0.0.1:0", "https://127.0.0.1:1/dir", notPEM, t.TempDir(), up.URL), &logRecorder{})
		if err == nil || !strings.Contains(err.Error(), "tls.acme.ca_root") || !strings.Contains(err.Error(), notPEM) {
			t.Errorf("New: %v, want an error naming tls.acme.ca_root %s", err, notPEM)
		}
	})
}
