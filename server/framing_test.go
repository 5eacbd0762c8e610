package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/testutil"
)

// chunkConn is a connection whose reads return the given chunks in turn,
// then EOF: the guard's input, split as the network may split it.
type chunkConn struct {
	net.Conn // nil: only Read and RemoteAddr are used
	chunks   [][]byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *chunkConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// guardOutput is what net/http reads through the guard from in, split into
// the given chunks, with reads of size readSize.
func guardOutput(g *framingGuard, chunks []string, readSize int) string {
	cc := &chunkConn{}
	for _, c := range chunks {
		cc.chunks = append(cc.chunks, []byte(c))
	}
	gc := g.wrap(cc)
	var out strings.Builder
	p := make([]byte, readSize)
	for {
		n, err := gc.Read(p)
		out.Write(p[:n])
		if err != nil {
			return out.String()
		}
	}
}

// TestGuardStream feeds byte streams through the guard, split at every
// point into two reads and read back one byte and 4 KiB at a time: the
// output never depends on how the stream was split.
func TestGuardStream(t *testing.T) {
	const (
		get      = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
		both     = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
		// A body that holds what looks like a conflicting request.
		decoy = "\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	)
	withBody := fmt.Sprintf("POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(decoy), decoy)
	cases := []struct {
		name, in, want string
	}{
		{"pipelined gets pass", get + get, get + get},
		{"a body is not read as a request", withBody + get, withBody + get},
		{"both headers: poison after the requests before", get + both + smuggled, get + framingPoison},
		{"any case, bare LF", "POST / HTTP/1.1\ntransfer-encoding: chunked\ncontent-length: 3\n\nabc", framingPoison},
		{"content-length first", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\nabc", framingPoison},
		{"folded transfer-encoding", "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc", framingPoison},
		// From here on net/http itself, or the close after the request,
		// keeps the stream safe: the guard lets it pass.
		{"chunked alone: not followed after", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + both, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + both},
		{"upgrade: not followed after", "GET / HTTP/1.1\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n" + both, "GET / HTTP/1.1\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n" + both},
		{"invalid content-length: net/http refuses it", "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n" + both, "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n" + both},
		{"differing content-lengths: net/http refuses them", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" + both, "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" + both},
		{"space before the colon: net/http refuses it", "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc"},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + both, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + both},
		{"truncated head passes at EOF", get + "GET / HTTP/1.1\r\nHost:", get + "GET / HTTP/1.1\r\nHost:"},
		{"head over the limit: net/http refuses it (431)", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 300) + "\r\n\r\n" + both, "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 300) + "\r\n\r\n" + both},
	}
	g := &framingGuard{maxHead: 256}
	var poisoned uint64
	for _, tc := range cases {
		if strings.HasSuffix(tc.want, framingPoison) {
			poisoned += 2 * uint64(len(tc.in)+1)
		}
		for split := 0; split <= len(tc.in); split++ {
			for _, rs := range []int{1, 4096} {
				got := guardOutput(g, []string{tc.in[:split], tc.in[split:]}, rs)
				if got != tc.want {
					t.Fatalf("%s (split at %d, reads of %d):\n got %q\nwant %q", tc.name, split, rs, got, tc.want)
				}
			}
		}
	}
	if n := g.rejected.Load(); n != poisoned {
		t.Errorf("counted %d refusals, want %d", n, poisoned)
	}
}

// pathRecorder is an upstream that records the paths it was asked for.
type pathRecorder struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func newPathRecorder(t *testing.T) *pathRecorder {
	r := &pathRecorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		r.paths = append(r.paths, req.URL.Path)
		r.mu.Unlock()
		if req.Header.Get("Upgrade") == "echo" {
			// Switch, then echo whatever comes.
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
		io.WriteString(w, "ok "+req.URL.Path)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *pathRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.paths...)
}

// exchange writes raw on c and reads the answers until the connection
// ends, returning each one's status and whether it closes the connection.
func exchange(t *testing.T, c net.Conn, raw string) []string {
	t.Helper()
	var got []string
	for _, resp := range testutil.RawExchange(t, c, raw) {
		conn := "keep" // ReadResponse takes Connection: close out of the header
		if resp.Close {
			conn = "close"
		}
		got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, conn))
	}
	return got
}

// TestFramingConflictRefused: on the plain listener and on HTTP/1 over TLS,
// a request with both Content-Length and Transfer-Encoding is answered 400
// and its connection closed; the request before it on the connection is
// answered, the request smuggled behind it never reaches the upstream, and
// the refusal is counted.
// startCatchAll serves one route, every path, to upstream on the plain
// listener.
func startCatchAll(t *testing.T, upstream string) *Server {
	t.Helper()
	return startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: [%q]}]
routes: [{name: all, match: {path_prefix: /}, upstream: u}]
`, upstream))
}

func TestFramingConflictRefused(t *testing.T) {
	up := newPathRecorder(t)
	_, certFile, keyFile := staticFiles(t)
	s := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
tls: {listen: "127.0.0.1:0", cert_file: %q, key_file: %q, redirect_http: false}
upstreams: [{name: u, targets: [%q]}]
routes: [{name: all, match: {path_prefix: /}, upstream: u}]
`, certFile, keyFile, up.URL))
	raw := "GET /one HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	dials := map[string]func() (net.Conn, error){
		"plain": func() (net.Conn, error) { return net.Dial("tcp", s.ProxyAddr()) },
		"tls h1": func() (net.Conn, error) {
			return tls.Dial("tcp", s.TLSAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		},
	}
	for _, name := range []string{"plain", "tls h1"} {
		c, err := dials[name]()
		if err != nil {
			t.Fatal(err)
		}
		got := exchange(t, c, raw)
		c.Close()
		if fmt.Sprint(got) != "[200 keep 400 close]" {
			t.Errorf("%s: responses %v, want the first request's, then 400", name, got)
		}
	}
	if got := up.seen(); strings.Join(got, ",") != "/one,/one" {
		t.Errorf("upstream saw %v, want only /one from each connection", got)
	}
	if n := s.guard.rejected.Load(); n != 2 {
		t.Errorf("sluice_http_framing_rejected_total %d, want 2", n)
	}
	resp, err := http.Get("http://" + s.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "sluice_http_framing_rejected_total 2\n") {
		t.Errorf("/metrics has no sluice_http_framing_rejected_total 2:\n%s", grepLines(string(b), "framing"))
	}
}

// TestUpgradeThroughGuard: a switched connection carries another protocol,
// which the guard does not judge (bytes that look like a conflicting request
// are echoed back); an Upgrade that the upstream refuses closes the
// connection, since the guard no longer follows it.
func TestUpgradeThroughGuard(t *testing.T) {
	up := newPathRecorder(t)
	s := startCatchAll(t, up.URL)

	c, err := net.Dial("tcp", s.ProxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	const payload = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	io.WriteString(c, payload)
	echo := make([]byte, len(payload))
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != payload {
		t.Fatalf("echo over the switched connection: %q, %v", echo, err)
	}

	// Refused (the upstream answers 200): the connection closes after it,
	// and a plain request keeps its connection.
	c2, err := net.Dial("tcp", s.ProxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	got := exchange(t, c2, "GET /nows HTTP/1.1\r\nHost: a\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
	if fmt.Sprint(got) != "[200 close]" {
		t.Errorf("refused upgrade: responses %v, want [200 close]", got)
	}
	c3, err := net.Dial("tcp", s.ProxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	got = exchange(t, c3, "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if fmt.Sprint(got) != "[200 keep 200 close]" {
		t.Errorf("plain requests: responses %v, want both answered", got)
	}
}

// BenchmarkGuard is the guard's cost per request: a typical proxied GET's
// header block, judged and handed out.
func BenchmarkGuard(b *testing.B) {
	req := []byte("GET /api/v1/items?id=42 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip\r\nX-Request-Id: 0123456789abcdef\r\n\r\n")
	src := &repeatConn{req: req}
	gc := (&framingGuard{maxHead: 1 << 20}).wrap(src)
	p := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		for n := 0; n < len(req); {
			k, err := gc.Read(p)
			if err != nil {
				b.Fatal(err)
			}
			n += k
		}
	}
}

// repeatConn reads the same request forever, one request per read.
type repeatConn struct {
	net.Conn
	req []byte
}

func (c *repeatConn) Read(p []byte) (int, error) { return copy(p, c.req), nil }

// TestGuardLargeBodyThenNext: a 32 MiB Content-Length body passes the guard
// whole (read straight into net/http's buffers), and the request after it
// on the same connection is judged and answered.
func TestGuardLargeBodyThenNext(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %d", r.URL.Path, n)
	}))
	defer up.Close()
	s := startCatchAll(t, up.URL)
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	const size = 32 << 20
	var conns sync.Map
	trace := func(ctx context.Context) context.Context {
		return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			conns.Store(i.Conn.LocalAddr().String(), true)
		}})
	}
	req, _ := http.NewRequestWithContext(trace(context.Background()), "POST", "http://"+s.ProxyAddr()+"/up", io.LimitReader(zeros{}, size))
	req.ContentLength = size
	for i, r := range []*http.Request{req, mustRequest(t, trace(context.Background()), "GET", "http://"+s.ProxyAddr()+"/next")} {
		resp, err := c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := []string{fmt.Sprint("/up ", size), "/next 0"}[i]
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

func mustRequest(t *testing.T, ctx context.Context, method, url string) *http.Request {
	t.Helper()
	r, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
