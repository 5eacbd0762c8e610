package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/testutil"
)

// TestOwnLoopMatchesNetHTTP sends one corpus of raw requests — the seeds
// of the proxy's FuzzDirectHead and requests the loop hands to net/http —
// to the proxy listener (sluice's own HTTP/1.1 loop) and to the same
// proxy served by net/http behind the framing guard, as the listener was
// served before the loop. The upstream must see the same requests, and
// the client the same bytes (Date apart) with the same connection
// handling.
func TestOwnLoopMatchesNetHTTP(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range r.Header {
				if !yield(k) {
					return
				}
			}
		})
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %s host=%s len=%d", r.Method, r.RequestURI, r.Proto, r.Host, r.ContentLength)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%q", k, r.Header[k])
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(&b, " body=%q", body)
		mu.Lock()
		seen = append(seen, b.String())
		mu.Unlock()
		w.Header().Set("X-Up", "1")
		if r.URL.Path == "/api/stream" {
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	t.Cleanup(up.Close)
	s := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", access_log: false}
admin: {listen: "127.0.0.1:0"}
upstreams:
  - {name: u, targets: [%q]}
  - {name: dead, targets: [%q], breaker: {consecutive_failures: 1000}}
routes:
  - {name: api, match: {path_prefix: /api}, strip_prefix: true, upstream: u, bulkhead: {max_concurrent: 10}}
  - {name: abort, match: {path_prefix: /abort}, upstream: u, fault: {abort: {status: 503, percent: 100}}}
  - {name: dead, match: {path_prefix: /dead}, upstream: dead}
  - {name: rest, match: {path_prefix: /}, upstream: u}
`, up.URL, "http://"+closedAddr(t)))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	netHTTP := &http.Server{Handler: s.proxySrv.Handler, ErrorLog: s.proxySrv.ErrorLog}
	done := make(chan struct{})
	go func() { netHTTP.Serve(s.guard.Listener(ln)); close(done) }()
	t.Cleanup(func() { netHTTP.Close(); <-done })

	head := testutil.RequestHead
	corpus := []string{
		head("GET", "/api/a%2Fb?x=1;y=2", "Connection: X-A, keep-alive\nX-A: 1\nTe: trailers, gzip\nX-Forwarded-For: 10.0.0.1\nForwarded: for=10.0.0.1"),
		head("POST", "/p?%zz", "User-Agent: \nKeep-Alive: 5\nProxy-Connection: x"),
		head("DELETE", "/api", "Connection: User-Agent\nUser-Agent: u\nCookie: a=1\nCookie: b=2"),
		head("OPTIONS", "/x?", "Host: other.example:81\nUpgrade: h2c"),
		head("GET", "/", ""),
		head("HEAD", "/api/x", "accept: */*\nX-Mixed-case: v"),
		head("GET", "/api/stream", "Connection: close"),
		head("GET", "/api/../etc?q=%41&utm_source=x", "X-Empty:\nX-Tab: \ta b\t"),
		head("GET", "/abort/x", ""), // a refusal: problem+json, Retry-After, Sluice-Fault
		head("HEAD", "/abort/x", ""),
		head("GET", "/dead/x", ""), // 502: the upstream refuses the connection
		"POST /api/p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"GET /old HTTP/1.0\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	}
	dates := regexp.MustCompile(`(?m)^Date: .*\r$`)
	send := func(addr, req string) (string, []string) {
		mu.Lock()
		seen = nil
		mu.Unlock()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// Twice on one connection, then whatever else comes.
		io.WriteString(c, req)
		var raw bytes.Buffer
		br := bufio.NewReader(io.TeeReader(c, &raw))
		method := strings.SplitN(req, " ", 2)[0]
		if res, err := http.ReadResponse(br, &http.Request{Method: method}); err == nil {
			io.Copy(io.Discard, res.Body)
			if !res.Close {
				io.WriteString(c, req)
			}
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		rest, err := io.ReadAll(br)
		var ne net.Error
		state := "closed"
		if errors.As(err, &ne) && ne.Timeout() {
			state = "open"
		}
		_ = rest
		mu.Lock()
		defer mu.Unlock()
		return dates.ReplaceAllString(raw.String(), "Date: -\r") + " [" + state + "]", slices.Clone(seen)
	}
	served, handedOff := s.h1.Served(), s.h1.HandedOff()
	for _, req := range corpus {
		gotRes, gotUp := send(s.ProxyAddr(), req)
		wantRes, wantUp := send(ln.Addr().String(), req)
		if gotRes != wantRes {
			t.Errorf("%q: the client read\n own loop: %q\n net/http: %q", req, gotRes, wantRes)
		}
		if !slices.Equal(gotUp, wantUp) {
			t.Errorf("%q: the upstream saw\n own loop: %q\n net/http: %q", req, gotUp, wantUp)
		}
	}
	// Of the first eleven, nine are the loop's, each sent twice but the
	// one with Connection: close; the POST, the Upgrade and the last five
	// are net/http's.
	if n := s.h1.Served() - served; n != 17 {
		t.Errorf("the loop served %d requests, want 17", n)
	}
	if n := s.h1.HandedOff() - handedOff; n != 7 {
		t.Errorf("the loop handed off %d connections, want 7", n)
	}
	// The same counts on /metrics.
	res, err := http.Get("http://" + s.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		fmt.Sprintf("sluice_http1_loop_requests_total %d\n", s.h1.Served()),
		fmt.Sprintf("sluice_http1_handoffs_total %d\n", s.h1.HandedOff()),
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
