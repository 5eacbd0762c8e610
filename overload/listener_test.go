package overload

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sluice/internal/testutil"
	"sync"
	"testing"
	"time"
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

// TestListenerCapsConnections holds max_connections open with real TCP
// clients: the next connection gets the refusal and then EOF, promptly
// and without the server's handler; once one closes, a new one is served.
func TestListenerCapsConnections(t *testing.T) {
	m := New(Limits{MaxConnections: 2}, Options{Log: slog.New(slog.DiscardHandler)})
	addr := serveCapped(t, m, []byte(refusal))

	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp := testutil.KeepAliveGet(t, c, bufio.NewReader(c), "x", "/"); resp.StatusCode != 200 {
			t.Fatalf("held connection: %d", resp.StatusCode)
		}
		held = append(held, c)
	}
	waitOpen(t, m, 2)

	// The third: the refusal, then EOF, well before the server would
	// time anything out. The client sends its request first, as clients
	// do: the refusal must survive the unread input.
	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("refused connection %d: %v after %q", i, err, got)
		}
		if string(got) != refusal {
			t.Fatalf("refused connection %d read %q, want %q", i, got, refusal)
		}
	}
	if s := m.State(); s.ConnectionsOpen != 2 || s.ConnectionsRefused != 3 {
		t.Errorf("open %d refused %d, want 2 and 3", s.ConnectionsOpen, s.ConnectionsRefused)
	}

	held[0].Close()
	waitOpen(t, m, 1)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp := testutil.KeepAliveGet(t, c, bufio.NewReader(c), "x", "/"); resp.StatusCode != 200 {
		t.Errorf("after a close: %d, want 200", resp.StatusCode)
	}
	if s := m.State(); s.ConnectionsOpen != 2 || s.ConnectionsRefused != 3 {
		t.Errorf("open %d refused %d, want 2 and 3", s.ConnectionsOpen, s.ConnectionsRefused)
	}

	// A reload raising the limit lets the next one in; lowering it closes
	// nothing already open.
	m.SetLimits(Limits{MaxConnections: 3})
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if resp := testutil.KeepAliveGet(t, c3, bufio.NewReader(c3), "x", "/"); resp.StatusCode != 200 {
		t.Errorf("after raising the limit: %d, want 200", resp.StatusCode)
	}
	m.SetLimits(Limits{MaxConnections: 1})
	if resp := testutil.KeepAliveGet(t, c3, bufio.NewReader(c3), "x", "/"); resp.StatusCode != 200 {
		t.Errorf("an open connection after lowering the limit: %d, want 200", resp.StatusCode)
	}
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
