package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"sluice/config"
	"sluice/internal/testutil"
)

// logRecorder keeps what a server logged.
type logRecorder = testutil.LogRecorder

// syncBuffer is a log sink a test reads while the server writes to it.
type syncBuffer = testutil.SyncBuffer

// newServer builds (but does not start) a server logging to rec.
func newServer(t *testing.T, yaml string, rec *logRecorder) (*Server, error) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	detectorOff(cfg, yaml)
	return New(cfg, Options{Log: slog.New(rec), Stderr: io.Discard})
}

// startTLSServer builds and starts a server, failing the test on error,
// and shuts it down at the end of the test.
func startTLSServer(t *testing.T, yaml string, rec *logRecorder) *Server {
	t.Helper()
	s, err := newServer(t, yaml, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v\nlog:\n%s", err, rec)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// httpsClient trusts roots and dials addr whatever the URL's host, so a
// URL can carry the name the certificate is for (SNI, Host) while the
// connection stays on loopback. With h1 it never negotiates HTTP/2. Its
// idle connections are closed at the end of the test, before the servers
// started earlier shut down: an HTTP/2 server otherwise waits a second for
// a client to act on its GOAWAY.
func httpsClient(t *testing.T, roots *x509.CertPool, addr string, h1 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: !h1,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	if h1 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// peerSerial handshakes with addr as serverName and returns the serial of
// the certificate presented.
func peerSerial(t *testing.T, addr, serverName string, roots *x509.CertPool) (*big.Int, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: serverName, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// echoUpstream answers with the X-Forwarded-Proto it was sent.
func echoUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "proto="+r.Header.Get("X-Forwarded-Proto")+" path="+r.URL.RequestURI())
	}))
	t.Cleanup(up.Close)
	return up
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(b)
}

// TestStaticTLS serves a generated pair: HTTP/2 and HTTP/1.1 on the TLS
// listener, the upstream told X-Forwarded-Proto https, TLS 1.1 refused;
// then the files are replaced and new handshakes present the new pair.
func TestStaticTLS(t *testing.T) {
	noLeaks(t)
	up := echoUpstream(t)
	first, certFile, keyFile := testutil.StaticPair(t)
	rec := &logRecorder{}
	s := startTLSServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", read_header_timeout: 2s, idle_timeout: 7s, max_header_bytes: 4096}
tls: {listen: "127.0.0.1:0", cert_file: %q, key_file: %q, redirect_http: false}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, certFile, keyFile, up.URL), rec)

	if s.https.srv.ReadHeaderTimeout != 2*time.Second || s.https.srv.IdleTimeout != 7*time.Second || s.https.srv.MaxHeaderBytes != 4096 {
		t.Errorf("https server limits %v/%v/%d, want the plain server's 2s/7s/4096",
			s.https.srv.ReadHeaderTimeout, s.https.srv.IdleTimeout, s.https.srv.MaxHeaderBytes)
	}
	for _, h1 := range []bool{false, true} {
		resp, body := get(t, httpsClient(t, first.Pool(), s.TLSAddr(), h1), "https://localhost/x?y=1")
		wantMajor := 2
		if h1 {
			wantMajor = 1
		}
		if resp.StatusCode != 200 || resp.ProtoMajor != wantMajor || body != "proto=https path=/x?y=1" {
			t.Errorf("h1=%v: %d %s %q, want 200 HTTP/%d proto=https", h1, resp.StatusCode, resp.Proto, body, wantMajor)
		}
	}
	// Plain HTTP keeps proxying with redirect_http false, and says so.
	if resp, body := get(t, http.DefaultClient, "http://"+s.ProxyAddr()+"/p"); resp.StatusCode != 200 || body != "proto=http path=/p" {
		t.Errorf("plain listener: %d %q, want 200 proto=http", resp.StatusCode, body)
	}
	old := &tls.Config{RootCAs: first.Pool(), ServerName: "localhost", MaxVersion: tls.VersionTLS11}
	if c, err := tls.Dial("tcp", s.TLSAddr(), old); err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded; want TLS 1.2 minimum")
	}

	// A renewal: the files are replaced, new handshakes get the new pair.
	second := testutil.NewCert(t, "localhost", "127.0.0.1")
	second.Install(t, certFile, keyFile)
	both := first.Pool()
	both.AddCert(second.Cert)
	testutil.WaitFor(t, "the new certificate served", func() bool {
		serial, err := peerSerial(t, s.TLSAddr(), "localhost", both)
		return err == nil && serial.Cmp(second.Cert.SerialNumber) == 0
	})
	if len(rec.Find("certificate reloaded", "localhost")) == 0 {
		t.Errorf("no reload logged:\n%s", rec)
	}
	if resp, _ := get(t, httpsClient(t, second.Pool(), s.TLSAddr(), false), "https://localhost/"); resp.ProtoMajor != 2 {
		t.Errorf("after reload: %s, want HTTP/2", resp.Proto)
	}

	// A bad pair (the key of another certificate) is refused; the last
	// good one keeps serving.
	testutil.WriteAtomic(t, keyFile, testutil.NewCert(t, "localhost").KeyPEM)
	testutil.WaitFor(t, "the bad pair refused", func() bool {
		return len(rec.Find("certificate reload failed", "private key does not match")) > 0
	})
	if serial, err := peerSerial(t, s.TLSAddr(), "localhost", both); err != nil || serial.Cmp(second.Cert.SerialNumber) != 0 {
		t.Errorf("after a bad pair: serial %v err %v, want the previous certificate", serial, err)
	}
}

// TestRedirectHTTP: with redirect_http the plain listener answers 308 to
// the same host, path and query on the TLS port, except for ACME HTTP-01
// challenge paths, which still reach the proxy.
func TestRedirectHTTP(t *testing.T) {
	up := echoUpstream(t)
	_, certFile, keyFile := testutil.StaticPair(t)
	s := startTLSServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
tls: {listen: "127.0.0.1:0", cert_file: %q, key_file: %q}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, certFile, keyFile, up.URL), &logRecorder{})
	_, tlsPort, _ := net.SplitHostPort(s.TLSAddr())
	noFollow := httpsClient(t, nil, s.ProxyAddr(), true)
	for _, tc := range []struct{ host, path, want string }{
		{"example.com", "/a/b?x=1&y=%2F", "https://example.com:" + tlsPort + "/a/b?x=1&y=%2F"},
		{"example.com:8080", "/", "https://example.com:" + tlsPort + "/"},
		{"[::1]:8080", "/v6", "https://[::1]:" + tlsPort + "/v6"},
		{"example.com", "/.well-known/acme-challenge/../admin", "https://example.com:" + tlsPort + "/.well-known/acme-challenge/../admin"},
	} {
		req, _ := http.NewRequest("POST", "http://"+s.ProxyAddr()+tc.path, strings.NewReader("body"))
		req.Host = tc.host
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != tc.want {
			t.Errorf("POST http://%s%s: %d Location %q, want 308 %q", tc.host, tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.want)
		}
	}
	// Location is built from the Host, so one that is not a host, or none
	// (HTTP/1.0), is refused with a problem body instead of redirected.
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: evil.example%2F@x\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a..b\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
	} {
		c, err := net.Dial("tcp", s.ProxyAddr())
		if err != nil {
			t.Fatal(err)
		}
		got := testutil.RawExchange(t, c, raw)
		c.Close()
		if len(got) != 1 || got[0].StatusCode != http.StatusBadRequest || got[0].Header.Get("Location") != "" ||
			got[0].Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%q: got %d answers, first %+v; want one 400 problem+json without Location", raw, len(got), got)
		}
	}
	// A challenge path is not redirected: without ACME here, it is proxied.
	resp, body := get(t, noFollow, "http://"+s.ProxyAddr()+"/.well-known/acme-challenge/tok3n")
	if resp.StatusCode != 200 || body != "proto=http path=/.well-known/acme-challenge/tok3n" {
		t.Errorf("challenge path: %d %q, want it proxied", resp.StatusCode, body)
	}
}

// TestAdmissionOverHTTP2: a rate-limited route refuses alike over plain
// HTTP/1.1, HTTP/1.1 over TLS and HTTP/2: status, Sluice-Reject,
// Retry-After, RateLimit headers and body type; and the metrics count all
// three.
func TestAdmissionOverHTTP2(t *testing.T) {
	noLeaks(t)
	up := echoUpstream(t)
	cert, certFile, keyFile := testutil.StaticPair(t)
	s := startTLSServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
tls: {listen: "127.0.0.1:0", cert_file: %q, key_file: %q, redirect_http: false}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - {name: limited, match: {path_prefix: /}, upstream: u, rate_limit: {rps: 0.5, burst: 1, key: "header:X-Client"}}
`, certFile, keyFile, up.URL), &logRecorder{})
	type answer struct {
		proto                                        int
		status                                       int
		reject, retry, limit, policy, ctype, problem string
	}
	ask := func(c *http.Client, url, client string) answer {
		resp, body := get(t, c, url, "X-Client", client)
		a := answer{resp.ProtoMajor, resp.StatusCode, resp.Header.Get("Sluice-Reject"), resp.Header.Get("Retry-After"),
			resp.Header.Get("RateLimit"), resp.Header.Get("RateLimit-Policy"), resp.Header.Get("Content-Type"), "ok"}
		if resp.StatusCode != 200 && !(strings.Contains(body, `"reason":"rate_limited"`) && strings.Contains(body, `"status":429`)) {
			a.problem = "body " + body
		}
		return a
	}
	clients := []struct {
		name  string
		c     *http.Client
		url   string
		proto int
	}{
		{"http/1.1", http.DefaultClient, "http://" + s.ProxyAddr() + "/", 1},
		{"https http/1.1", httpsClient(t, cert.Pool(), s.TLSAddr(), true), "https://localhost/", 1},
		{"h2", httpsClient(t, cert.Pool(), s.TLSAddr(), false), "https://localhost/", 2},
	}
	var refusals []answer
	for _, c := range clients {
		// Each client has its own bucket (key header:X-Client) on the
		// same route: the first request empties it, the second is refused.
		if a := ask(c.c, c.url, c.name); a.status != 200 || a.proto != c.proto {
			t.Fatalf("%s: first request %+v, want 200 over HTTP/%d", c.name, a, c.proto)
		}
		a := ask(c.c, c.url, c.name)
		if a.proto != c.proto {
			t.Errorf("%s: answered over HTTP/%d", c.name, a.proto)
		}
		a.proto = 0
		refusals = append(refusals, a)
	}
	want := answer{status: 429, reject: "rate_limited", retry: "2", limit: `"limited";r=0;t=2`, policy: `"limited";q=1;w=2`,
		ctype: "application/problem+json", problem: "ok"}
	for i, a := range refusals {
		if a != want {
			t.Errorf("%s refusal: %+v, want %+v", clients[i].name, a, want)
		}
	}
	resp, body := get(t, http.DefaultClient, "http://"+s.AdminAddr()+"/metrics")
	if resp.StatusCode != 200 || !strings.Contains(body, `sluice_admission_rejected_total{reason="rate_limited",route="limited"} 3`) {
		t.Errorf("metrics do not count the three refusals:\n%s", grepLines(body, "rate_limited"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// noLeaks fails the test if goroutines started during it outlive it (its
// cleanups included: call it first, so its check runs last).
func noLeaks(t *testing.T, opts ...goleak.Option) {
	t.Helper()
	opts = append(opts, goleak.IgnoreCurrent())
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// certmagicLeftovers are the goroutines certmagic starts that no API of it
// stops, so Shutdown cannot either:
//   - one rate limiter per ACME directory and account email, kept in a
//     package map for the life of the process ("TODO: stop rate limiter
//     when it is garbage-collected");
//   - a lock-file refresher per storage lock, which notices the lock was
//     released within lockFreshnessInterval (5 s) and returns.
//
// Everything sluice starts for ACME (certmagic's maintenance goroutine,
// its obtain and renew jobs, the listeners) is stopped by Shutdown.
func certmagicLeftovers() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	}
}
