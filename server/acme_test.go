package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"sluice/internal/testutil"
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

// TestACMEValidated is the one test where pebble really validates
// challenges against sluice: it resolves sluice.test through
// pebble-challtestsrv to 127.0.0.1 and connects to its httpPort for
// HTTP-01 and its tlsPort for TLS-ALPN-01. Each subtest runs sluice with
// only one of its listeners on the port pebble validates, so that
// challenge type must succeed there, through the gate, the framing guard
// and the redirect (the ACME client falls back from the other one within
// the order). Then HTTPS requests through sluice complete over HTTP/2 and
// the upstream is told X-Forwarded-Proto https.
func TestACMEValidated(t *testing.T) {
	noLeaks(t, certmagicLeftovers()...)
	httpPort, tlsPort := testutil.FreePort(t), testutil.FreePort(t)
	dns := testutil.StartChallTestSrv(t)
	pb := testutil.StartPebble(t, testutil.PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort, DNSServer: dns})
	up := echoUpstream(t)
	for _, tc := range []struct {
		challenge    string
		plain, tlsAt int
	}{
		{"http-01", httpPort, testutil.FreePort(t)},
		{"tls-alpn-01", testutil.FreePort(t), tlsPort},
	} {
		t.Run(tc.challenge, func(t *testing.T) {
			rec := &logRecorder{}
			s := startTLSServer(t, acmeConfig(fmt.Sprintf("127.0.0.1:%d", tc.plain), fmt.Sprintf("127.0.0.1:%d", tc.tlsAt),
				pb.DirURL, pb.CARoot, t.TempDir(), up.URL), rec)
			// certmagic logs each key authorization it serves (sluice
			// demotes those lines to debug).
			if len(rec.Find("served key authentication", "challenge="+tc.challenge, "sluice.test")) == 0 {
				t.Errorf("sluice answered no %s challenge:\n%s\npebble:\n%s", tc.challenge, rec, pb.Out)
			}
			resp, body := get(t, httpsClient(t, pb.Roots, s.TLSAddr(), false), "https://sluice.test/v")
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 || body != "proto=https path=/v" {
				t.Errorf("https://sluice.test/v: %d %s %q", resp.StatusCode, resp.Proto, body)
			}
			// redirect_http: plain HTTP is sent to https.
			resp, _ = get(t, httpsClient(t, nil, s.ProxyAddr(), true), "http://sluice.test/x")
			_, port, _ := net.SplitHostPort(s.TLSAddr())
			if want := "https://sluice.test:" + port + "/x"; resp.StatusCode != 308 || resp.Header.Get("Location") != want {
				t.Errorf("plain GET: %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
			}
		})
	}
}

// TestACMEStartFails: when no certificate can be had (the CA cannot be
// reached), Start fails with the CA's reason and nothing is left
// listening.
func TestACMEStartFails(t *testing.T) {
	noLeaks(t, certmagicLeftovers()...)
	up := echoUpstream(t)
	closed := testutil.RefusedPort(t) // bound, never listening: connection refused
	rec := &logRecorder{}
	s, err := newServer(t, acmeConfig("127.0.0.1:0", "127.0.0.1:0", fmt.Sprintf("https://127.0.0.1:%d/dir", closed), "",
		t.TempDir(), up.URL), rec)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(context.Background())
	if err == nil {
		s.Shutdown()
		t.Fatal("Start succeeded without a CA")
	}
	for _, w := range []string{"sluice.test", fmt.Sprintf("127.0.0.1:%d", closed), "connection refused"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	for _, addr := range []string{s.ProxyAddr(), s.TLSAddr(), s.AdminAddr()} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after a failed Start", addr)
		}
	}
}
