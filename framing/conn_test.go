package framing

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/testutil"
)

// maxHeaderBytes is the test servers' MaxHeaderBytes.
const maxHeaderBytes = 4096

// recorder is a handler that records the paths it was asked for, reads
// each body and answers "ok <path> <body length>". A request with
// "Upgrade: echo" is switched and echoed; any other Upgrade is answered
// like a plain request (refused).
type recorder struct {
	mu    sync.Mutex // guards paths
	paths []string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	rec.mu.Lock()
	rec.paths = append(rec.paths, r.URL.Path)
	rec.mu.Unlock()
	if r.Header.Get("Upgrade") == "echo" {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw)
		return
	}
	fmt.Fprintf(w, "ok %s %d", r.URL.Path, n)
}

func (rec *recorder) seen() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.paths...)
}

// guarded is a net/http server set up as sluice's proxy listeners are: a
// guard on a plain listener and on a TLS one, the handler behind
// CloseRefusedUpgrades.
type guarded struct {
	g       *Guard
	rec     *recorder
	plain   string // address
	tlsAddr string

	mu       sync.Mutex // guards refusals
	refusals []net.Addr // onReject's arguments
}

func serveGuarded(t *testing.T) *guarded {
	t.Helper()
	s := &guarded{rec: &recorder{}}
	s.g = NewGuard(maxHeaderBytes, func(remote net.Addr) {
		s.mu.Lock()
		s.refusals = append(s.refusals, remote)
		s.mu.Unlock()
	})
	srv := &http.Server{Handler: CloseRefusedUpgrades(s.rec), MaxHeaderBytes: maxHeaderBytes}
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := testutil.NewCert(t, "localhost", "127.0.0.1")
	tc := &tls.Config{Certificates: []tls.Certificate{cert.TLS(t)}, NextProtos: []string{"h2", "http/1.1"}}
	s.plain, s.tlsAddr = plainLn.Addr().String(), tlsLn.Addr().String()
	done := make(chan struct{}, 2)
	go func() { srv.Serve(s.g.Listener(plainLn)); done <- struct{}{} }()
	go func() { srv.Serve(s.g.TLSListener(tls.NewListener(tlsLn, tc), 5*time.Second)); done <- struct{}{} }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		<-done
	})
	return s
}

// dialers are the two ways to reach a guarded HTTP/1 server.
func (s *guarded) dialers() map[string]func() (net.Conn, error) {
	return map[string]func() (net.Conn, error){
		"plain": func() (net.Conn, error) { return net.Dial("tcp", s.plain) },
		"tls h1": func() (net.Conn, error) {
			return tls.Dial("tcp", s.tlsAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		},
	}
}

// answer is one response as a test compares it.
type answer struct {
	status      int
	close       bool
	contentType string
	body        string
}

// exchange writes raw on a new connection from dial and reads the answers
// until the connection ends.
func exchange(t *testing.T, dial func() (net.Conn, error), raw string) []answer {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var got []answer
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return got
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("answer %d: reading body: %v", len(got)+1, err)
		}
		got = append(got, answer{resp.StatusCode, resp.Close, resp.Header.Get("Content-Type"), string(b)})
		if resp.Close {
			return got
		}
	}
}

const get = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"

// okOne is the answer to get.
var okOne = answer{200, false, "text/plain; charset=utf-8", "ok /one 0"}

// problem is the problem+json answer a guarded server gives for status.
func problem(status int, detail string) answer {
	body := fmt.Sprintf(`{"type":"about:blank","title":%q,"status":%d,"detail":%q}`+"\n", http.StatusText(status), status, detail)
	return answer{status, true, "application/problem+json", body}
}

// TestConflictRefused: on the plain listener and on HTTP/1 over TLS, a
// request with both Content-Length and Transfer-Encoding is answered 400
// problem+json and its connection closed; the request before it on the
// connection is answered, the request smuggled behind it never reaches
// the handler, and the refusal is counted and reported.
func TestConflictRefused(t *testing.T) {
	s := serveGuarded(t)
	raw := get +
		"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	want := []answer{okOne, problem(400, "The request has both Content-Length and Transfer-Encoding, which frame its body differently.")}
	for name, dial := range s.dialers() {
		if got := exchange(t, dial, raw); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: answers\n%v\nwant\n%v", name, got, want)
		}
	}
	if got := s.rec.seen(); strings.Join(got, ",") != "/one,/one" {
		t.Errorf("handler saw %v, want only /one from each connection", got)
	}
	if n := s.g.Rejected(); n != 2 {
		t.Errorf("Rejected() = %d, want 2", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.refusals) != 2 || !strings.HasPrefix(s.refusals[0].String(), "127.0.0.1:") {
		t.Errorf("onReject called with %v, want two client addresses", s.refusals)
	}
}

// TestErrorAnswers: every answer net/http writes on its own to a request
// it cannot read is problem+json with net/http's status, on the plain
// listener and over TLS; a request before the bad one on the connection is
// answered normally first.
func TestErrorAnswers(t *testing.T) {
	s := serveGuarded(t)
	for _, tc := range []struct {
		name, bad string
		want      answer
	}{
		{"malformed request line", "GET/nothing\r\nHost: a\r\n\r\n",
			problem(400, "The request is not valid HTTP/1.1.")},
		{"bad header line", "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
			problem(400, "The request has an invalid header name.")},
		{"no host", "GET / HTTP/1.1\r\n\r\n",
			problem(400, "The request has no Host header.")},
		{"header block over max_header_bytes", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 2*maxHeaderBytes+4096) + "\r\n\r\n",
			problem(431, "The request's header block is larger than this server accepts.")},
		{"content-length and transfer-encoding", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
			problem(400, "The request has both Content-Length and Transfer-Encoding, which frame its body differently.")},
		{"unsupported transfer coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
			problem(501, "The request's Transfer-Encoding is not supported.")},
		{"unsupported HTTP version", "GET / HTTP/3.0\r\nHost: a\r\n\r\n",
			problem(505, "The request's HTTP version is not supported.")},
	} {
		for name, dial := range s.dialers() {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				want := []answer{okOne, tc.want}
				if got := exchange(t, dial, get+tc.bad); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("answers\n%v\nwant\n%v", got, want)
				}
			})
		}
	}
}

// TestErrorAnswerHeaders: the problem+json answer is a complete response:
// Date, Content-Length of its body, Cache-Control no-store, close.
func TestErrorAnswerHeaders(t *testing.T) {
	s := serveGuarded(t)
	c := s.dialPlain(t)
	io.WriteString(c, "GET/\r\n\r\n")
	raw, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	if lines[0] != "HTTP/1.1 400 Bad Request" || len(lines) != 6 || !strings.HasPrefix(lines[1], "Date: ") {
		t.Fatalf("head %q", head)
	}
	if _, err := time.Parse(http.TimeFormat, strings.TrimPrefix(lines[1], "Date: ")); err != nil {
		t.Errorf("Date: %v", err)
	}
	want := []string{"Content-Type: application/problem+json", "Cache-Control: no-store",
		fmt.Sprintf("Content-Length: %d", len(body)), "Connection: close"}
	if fmt.Sprint(lines[2:]) != fmt.Sprint(want) {
		t.Errorf("headers %q, want %q", lines[2:], want)
	}
}

// TestUpgradeThroughGuard: a switched connection carries another protocol,
// which the guard does not judge (bytes that look like a conflicting request
// are echoed back); an Upgrade that the handler refuses closes the
// connection, since the guard no longer follows it.
func TestUpgradeThroughGuard(t *testing.T) {
	s := serveGuarded(t)
	c := s.dialPlain(t)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	// Neither judged nor rewritten: a conflicting request, and what looks
	// like one of net/http's error answers.
	for _, payload := range []string{
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 400 Bad Request" + errorHeaders + "400 Bad Request",
	} {
		io.WriteString(c, payload)
		echo := make([]byte, len(payload))
		if _, err := io.ReadFull(br, echo); err != nil || string(echo) != payload {
			t.Fatalf("echo over the switched connection: %q, %v", echo, err)
		}
	}

	// Refused (the handler answers 200): the connection closes after it,
	// and a plain request keeps its connection.
	dial := s.dialers()["plain"]
	got := exchange(t, dial, "GET /nows HTTP/1.1\r\nHost: a\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
	if want := []answer{{200, true, "text/plain; charset=utf-8", "ok /nows 0"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("refused upgrade: answers %v, want %v", got, want)
	}
	got = exchange(t, dial, get+"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if want := []answer{okOne, {200, true, "text/plain; charset=utf-8", "ok /b 0"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("plain requests: answers %v, want both answered", got)
	}
}

// TestGuardLargeBodyThenNext: a 32 MiB Content-Length body passes the guard
// whole (read straight into net/http's buffers), and the request after it
// on the same connection is judged and answered.
func TestGuardLargeBodyThenNext(t *testing.T) {
	s := serveGuarded(t)
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	const size = 32 << 20
	var conns sync.Map
	trace := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		conns.Store(i.Conn.LocalAddr().String(), true)
	}})
	up, _ := http.NewRequestWithContext(trace, "POST", "http://"+s.plain+"/up", io.LimitReader(zeros{}, size))
	up.ContentLength = size
	next, _ := http.NewRequestWithContext(trace, "GET", "http://"+s.plain+"/next", nil)
	for i, r := range []*http.Request{up, next} {
		resp, err := c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := []string{fmt.Sprint("ok /up ", size), "ok /next 0"}[i]
		if resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, b, want)
		}
	}
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d connections, want both requests on one", n)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// dialPlain connects to the guarded plain listener, with a deadline that
// turns a hung server into a failed read, and closes at cleanup.
func (s *guarded) dialPlain(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.plain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}
