package overload

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/testutil"
)

// refusal is a small complete HTTP/1.1 answer, as the proxy's would be.
const refusal = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 5\r\nRetry-After: 1\r\n\r\nbusy\n"

// serveCapped serves an HTTP handler on a loopback listener wrapped by m.
func serveCapped(t *testing.T, m *Manager, refuse []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(m.Listener(ln, refuse)) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return ln.Addr().String()
}

// waitOpen polls until m counts want open connections: the server sees
// a client's close only when its read returns.
func waitOpen(t *testing.T, m *Manager, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.State().ConnectionsOpen != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want %d", m.State().ConnectionsOpen, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// keepAliveRefusal is refusal as a parked connection answers it.
const keepAliveRefusal = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nRetry-After: 1\r\n\r\nbusy\n"

// dial connects to addr with a deadline that ends a hung test.
func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// readAnswer reads one response's bytes: its head and, unless head is
// set (a HEAD request), its Content-Length body.
func readAnswer(t *testing.T, br *bufio.Reader, head bool) string {
	t.Helper()
	var b strings.Builder
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading an answer: %v after %q", err, b.String()+line)
		}
		b.WriteString(line)
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" {
			break
		}
	}
	if !head {
		body := make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatalf("reading a body: %v", err)
		}
		b.Write(body)
	}
	return b.String()
}

// TestListenerCapsConnections holds max_connections open with real TCP
// clients: the next connections are parked, each of their requests
// answered with the refusal over keep-alive and never reaching the
// server's handler; once a served one closes, a parked one is served at
// its next request.
func TestListenerCapsConnections(t *testing.T) {
	m := New(Limits{MaxConnections: 2}, Options{Log: slog.New(slog.DiscardHandler)})
	addr := serveCapped(t, m, []byte(refusal))

	var held []net.Conn
	for range 2 {
		c, br := dial(t, addr)
		if resp := testutil.KeepAliveGet(t, c, br, "x", "/"); resp.StatusCode != 200 {
			t.Fatalf("held connection: %d", resp.StatusCode)
		}
		held = append(held, c)
	}
	waitOpen(t, m, 2)

	// Three over the limit: each request gets the refusal without
	// Connection: close, and the connection stays for the next.
	type parked struct {
		c  net.Conn
		br *bufio.Reader
	}
	var ps []parked
	for i := range 3 {
		c, br := dial(t, addr)
		for j := range 2 {
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if got := readAnswer(t, br, false); got != keepAliveRefusal {
				t.Fatalf("parked connection %d, request %d: %q, want %q", i, j, got, keepAliveRefusal)
			}
		}
		ps = append(ps, parked{c, br})
	}
	// Two requests in one write (pipelined), the second a HEAD: both
	// answered in order, the HEAD without the body.
	io.WriteString(ps[0].c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	if got := readAnswer(t, ps[0].br, false); got != keepAliveRefusal {
		t.Errorf("pipelined GET: %q", got)
	}
	if got, want := readAnswer(t, ps[0].br, true), keepAliveRefusal[:len(keepAliveRefusal)-len("busy\n")]; got != want {
		t.Errorf("pipelined HEAD: %q, want %q", got, want)
	}
	io.WriteString(ps[0].c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if got := readAnswer(t, ps[0].br, false); got != keepAliveRefusal {
		t.Errorf("after the HEAD: %q, want %q", got, keepAliveRefusal)
	}
	if s := m.State(); s.ConnectionsOpen != 2 || s.ConnectionsRefused != 3 || s.ConnectionsParked != 3 || s.ParkedRefused != 9 {
		t.Errorf("open %d refused %d parked %d parked refusals %d, want 2, 3, 3 and 9",
			s.ConnectionsOpen, s.ConnectionsRefused, s.ConnectionsParked, s.ParkedRefused)
	}

	// A served connection closes: the next request on a parked one is
	// served, and its connection now counts as open.
	held[0].Close()
	waitOpen(t, m, 1)
	if resp := testutil.KeepAliveGet(t, ps[1].c, ps[1].br, "x", "/"); resp.StatusCode != 200 {
		t.Fatalf("parked connection after a close: %d, want 200", resp.StatusCode)
	}
	if resp := testutil.KeepAliveGet(t, ps[1].c, ps[1].br, "x", "/"); resp.StatusCode != 200 {
		t.Errorf("promoted connection, next request: %d, want 200", resp.StatusCode)
	}
	if s := m.State(); s.ConnectionsOpen != 2 || s.ConnectionsParked != 2 || s.ConnectionsRefused != 3 {
		t.Errorf("open %d parked %d refused %d, want 2, 2 and 3", s.ConnectionsOpen, s.ConnectionsParked, s.ConnectionsRefused)
	}

	// A reload raising the limit lets the next request of a parked one
	// in; lowering it closes nothing already open.
	m.SetLimits(Limits{MaxConnections: 3})
	if resp := testutil.KeepAliveGet(t, ps[2].c, ps[2].br, "x", "/"); resp.StatusCode != 200 {
		t.Errorf("after raising the limit: %d, want 200", resp.StatusCode)
	}
	m.SetLimits(Limits{MaxConnections: 1})
	if resp := testutil.KeepAliveGet(t, ps[2].c, ps[2].br, "x", "/"); resp.StatusCode != 200 {
		t.Errorf("an open connection after lowering the limit: %d, want 200", resp.StatusCode)
	}
}

// cappedAtOne serves with max_connections 1 and holds that connection,
// so that the next ones are refused.
func cappedAtOne(t *testing.T) (*Manager, string) {
	t.Helper()
	m := New(Limits{MaxConnections: 1}, Options{Log: slog.New(slog.DiscardHandler)})
	addr := serveCapped(t, m, []byte(refusal))
	c, br := dial(t, addr)
	testutil.KeepAliveGet(t, c, br, "x", "/")
	waitOpen(t, m, 1)
	return m, addr
}

// TestParkedRequestsItDoesNotFollow: a request with a body, an upgrade,
// HTTP/1.0, Connection: close or a head that does not end gets the
// refusal with Connection: close, and the connection ends cleanly: the
// client reads the whole answer, then EOF, not a reset.
func TestParkedRequestsItDoesNotFollow(t *testing.T) {
	m, addr := cappedAtOne(t)

	for _, req := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
		"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("a", parkHeadBytes) + "\r\n\r\n",
	} {
		r, _ := dial(t, addr)
		io.WriteString(r, req)
		got, err := io.ReadAll(r)
		if err != nil || string(got) != refusal {
			t.Errorf("%.40q: read %q, %v; want %q then EOF", req, got, err, refusal)
		}
	}
	// A parked connection that answered over keep-alive first still ends
	// cleanly on one it does not follow.
	r, rbr := dial(t, addr)
	io.WriteString(r, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if got := readAnswer(t, rbr, false); got != keepAliveRefusal {
		t.Errorf("first request: %q", got)
	}
	io.WriteString(r, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	if got, err := io.ReadAll(rbr); err != nil || string(got) != refusal {
		t.Errorf("second request: read %q, %v; want %q then EOF", got, err, refusal)
	}
	testutil.WaitFor(t, "the parked connections to end", func() bool { return m.State().ConnectionsParked == 0 })
}

// TestParkingBound: past four times max_connections parked, a refused
// connection is answered with Connection: close at once and closed.
func TestParkingBound(t *testing.T) {
	m, addr := cappedAtOne(t)
	for range parkFactor {
		p, pbr := dial(t, addr)
		io.WriteString(p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if got := readAnswer(t, pbr, false); got != keepAliveRefusal {
			t.Fatalf("parked: %q", got)
		}
	}
	r, _ := dial(t, addr)
	io.WriteString(r, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if got, err := io.ReadAll(r); err != nil || string(got) != refusal {
		t.Errorf("past the bound: read %q, %v; want %q then EOF", got, err, refusal)
	}
	if s := m.State(); s.ConnectionsParked != parkFactor || s.ConnectionsRefused != parkFactor+1 {
		t.Errorf("parked %d refused %d, want %d and %d", s.ConnectionsParked, s.ConnectionsRefused, parkFactor, parkFactor+1)
	}
}

// TestParkedIdle: a parked connection that sends nothing for parkIdle is
// closed, as an idle keep-alive connection is.
func TestParkedIdle(t *testing.T) {
	m, addr := cappedAtOne(t)
	p, pbr := dial(t, addr)
	io.WriteString(p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	readAnswer(t, pbr, false)
	if got, err := io.ReadAll(pbr); err != nil || len(got) != 0 {
		t.Errorf("idle parked connection: read %q, %v; want EOF", got, err)
	}
	// The close reaches the client just before the set forgets it.
	testutil.WaitFor(t, "the idle parked connection to leave the set", func() bool { return m.State().ConnectionsParked == 0 })
}

// TestListenerRefusesWithoutAnswer: with no refusal to write (the TLS
// listener), a refused client sees its connection end, not hang.
func TestListenerRefusesWithoutAnswer(t *testing.T) {
	m := New(Limits{MaxConnections: 1}, Options{Log: slog.New(slog.DiscardHandler)})
	addr := serveCapped(t, m, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.KeepAliveGet(t, c, bufio.NewReader(c), "x", "/")
	waitOpen(t, m, 1)

	r, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(r, "\x16\x03\x01") // the start of a ClientHello
	n, err := r.Read(make([]byte, 16))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("refused connection: read %d bytes, %v; want EOF", n, err)
	}
	if s := m.State(); s.ConnectionsRefused != 1 {
		t.Errorf("refused %d, want 1", s.ConnectionsRefused)
	}
}

// TestCountedConnCloseOnce: closing a connection twice (net/http and a
// hijacker may both) counts it out once.
func TestCountedConnCloseOnce(t *testing.T) {
	m := New(Limits{}, Options{Log: slog.New(slog.DiscardHandler)})
	a, b := net.Pipe()
	defer b.Close()
	m.connsOpen.Add(1)
	c := &countedConn{Conn: a, m: m}
	c.Close()
	c.Close()
	if n := m.State().ConnectionsOpen; n != 0 {
		t.Errorf("%d open after a double close, want 0", n)
	}
	if c.NetConn() != a {
		t.Error("NetConn does not return the connection beneath")
	}
}
