package server

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"sluice/internal/testutil"
)

// metric returns the line of /metrics that starts with series, "" if none.
func metric(t *testing.T, adminAddr, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return line
		}
	}
	return ""
}

// TestMaxConnections holds server.max_connections open with real TCP
// clients. The next connection is accepted at once, never left in the
// accept queue, and parked: each of its requests is answered 503
// overloaded (Retry-After 1, problem+json) over keep-alive. Once a held
// connection closes, the parked one's next request is served, and so is
// a new connection's. sluice_connections counts all three states.
func TestMaxConnections(t *testing.T) {
	up := echoUpstream(t)
	s := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", max_connections: 2, access_log: false}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, up.URL))
	addr := s.ProxyAddr()
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := testutil.KeepAliveGet(t, c, bufio.NewReader(c), "sluice.test", "/x").StatusCode; got != 200 {
			t.Fatalf("held connection: %d", got)
		}
		held = append(held, c)
	}

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Generous: a refusal takes microseconds; the deadline only keeps a
	// broken build from hanging the test.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("refused connection: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Sluice-Reject") != "overloaded" || resp.Header.Get("Retry-After") != "1" ||
		resp.Close || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("refusal %d %v close=%v", resp.StatusCode, resp.Header, resp.Close)
	}
	var pb map[string]any
	if err := json.Unmarshal(body, &pb); err != nil || pb["reason"] != "overloaded" || pb["status"] != 503.0 || pb["retry_after"] != 1.0 {
		t.Errorf("refusal body %s (%v)", body, err)
	}
	if got := testutil.KeepAliveGet(t, c, br, "sluice.test", "/x").StatusCode; got != 503 {
		t.Errorf("the parked connection's second request: %d, want 503", got)
	}
	for series, want := range map[string]string{
		`sluice_connections{state="refused"}`:                           "1",
		`sluice_connections{state="parked"}`:                            "1",
		`sluice_admission_rejected_total{reason="overloaded",route=""}`: "2",
	} {
		if got := metric(t, s.AdminAddr(), series); got != series+" "+want {
			t.Errorf("metrics: %q, want %s %s", got, series, want)
		}
	}

	held[0].Close()
	testutil.WaitFor(t, "the server to see the close", func() bool {
		return s.Proxy().Overload().State().ConnectionsOpen == 1
	})
	if got := testutil.KeepAliveGet(t, c, br, "sluice.test", "/x").StatusCode; got != 200 {
		t.Errorf("the parked connection after a held one closed: %d, want 200", got)
	}
	held[1].Close()
	testutil.WaitFor(t, "the server to see the close", func() bool {
		return s.Proxy().Overload().State().ConnectionsOpen == 1
	})
	n, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := testutil.KeepAliveGet(t, n, bufio.NewReader(n), "sluice.test", "/x").StatusCode; got != 200 {
		t.Errorf("a new connection after a held one closed: %d, want 200", got)
	}
	for series, want := range map[string]string{`sluice_connections{state="open"}`: "2", `sluice_connections{state="parked"}`: "0"} {
		if got := metric(t, s.AdminAddr(), series); got != series+" "+want {
			t.Errorf("metrics: %q, want %s %s", got, series, want)
		}
	}
}

// TestMaxConnectionsTLS: the TLS listener shares the count; a connection
// over it is closed before its handshake.
func TestMaxConnectionsTLS(t *testing.T) {
	noLeaks(t)
	up := echoUpstream(t)
	pair, certFile, keyFile := testutil.StaticPair(t)
	s := startTLSServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", max_connections: 1, access_log: false}
tls: {listen: "127.0.0.1:0", cert_file: %q, key_file: %q, redirect_http: false}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, certFile, keyFile, up.URL), &logRecorder{})
	cfg := &tls.Config{RootCAs: pair.Pool(), ServerName: "localhost"}
	c, err := tls.Dial("tcp", s.TLSAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// The plain listener counts against the same limit.
	p, err := net.Dial("tcp", s.ProxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetDeadline(time.Now().Add(10 * time.Second))
	if got := testutil.KeepAliveGet(t, p, bufio.NewReader(p), "sluice.test", "/x").StatusCode; got != 503 {
		t.Errorf("plain connection over the limit: %d, want 503", got)
	}

	d := &net.Dialer{Timeout: 10 * time.Second, Deadline: time.Now().Add(10 * time.Second)}
	if r, err := tls.DialWithDialer(d, "tcp", s.TLSAddr(), cfg); err == nil {
		r.Close()
		t.Error("a TLS handshake over max_connections succeeded")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the refused handshake hung: %v", err)
	}
	if st := s.Proxy().Overload().State(); st.ConnectionsRefused != 2 || st.ConnectionsOpen != 1 {
		t.Errorf("refused %d open %d, want 2 and 1", st.ConnectionsRefused, st.ConnectionsOpen)
	}
}

// TestReloadOverloadLimits: the overload manager's limits reload; the
// rest of the server block still needs a restart.
func TestReloadOverloadLimits(t *testing.T) {
	f := startReloadable(t)
	cfg := strings.Replace(reloadConfig, `sched_latency_limit: 0}`, `sched_latency_limit: 250ms, max_inflight: 9, max_connections: 100, memory_limit: 1GiB}`, 1)
	if err := os.WriteFile(f.path, []byte(fmt.Sprintf(cfg, f.up, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Reload(); err != nil {
		t.Fatal(err)
	}
	l := f.s.Proxy().Overload().Limits()
	if l.MaxInflight != 9 || l.MaxConnections != 100 || l.MemoryLimit != 1<<30 || l.SchedLatency != 250*time.Millisecond {
		t.Errorf("limits after reload %+v", l)
	}
	if srv := f.s.Config().Server; srv.MaxInflight != 9 || srv.MemoryLimit.Resolved != 1<<30 {
		t.Errorf("Config() after reload: %+v", srv)
	}
	if strings.Contains(f.logs.String(), `"key":"server"`) {
		t.Errorf("a reloadable change was logged as needing a restart:\n%s", f.logs.String())
	}
}
