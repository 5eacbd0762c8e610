package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startFloorChain serves the fast upstream and the floor in front of it on
// loopback, in process, and returns the floor's address.
func startFloorChain(t *testing.T) string { return startFloorChainWork(t, 0) }

// startFloorChainWork is startFloorChain with work of CPU per request.
func startFloorChainWork(t *testing.T, work time.Duration) string {
	t.Helper()
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(bodySize) + "\r\n\r\n" + strings.Repeat("x", bodySize))
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { upLn.Close() })
	go func() {
		for {
			c, err := upLn.Accept()
			if err != nil {
				return
			}
			go serveFastConn(c, resp, time.Minute)
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveFloor(ln, upLn.Addr().String(), time.Minute, work)
	return ln.Addr().String()
}

// TestFloorKeepAlive: many requests, one after another, on one kept-alive
// connection of a real net/http client, each answered with the upstream's
// body.
func TestFloorKeepAlive(t *testing.T) {
	addr := startFloorChain(t)
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	want := strings.Repeat("x", bodySize)
	conns := 0
	for i := range 200 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/n", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if !info.Reused {
					conns++
				}
			},
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("request %d: %d %q, %v", i, resp.StatusCode, body, err)
		}
	}
	if conns != 1 {
		t.Errorf("200 requests used %d connections, want 1 (keep-alive)", conns)
	}
}

// TestFloorPipelined: two requests in one write are both answered, in
// order, on the same connection.
func TestFloorPipelined(t *testing.T) {
	c, err := net.Dial("tcp", startFloorChain(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := range 2 {
		r, err := readResponse(br)
		if err != nil || r.status != 200 || !r.keepAlive {
			t.Fatalf("pipelined answer %d: %+v, %v", i, r, err)
		}
	}
	// Nothing more: the connection is still open and idle.
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := br.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
		t.Errorf("after two answers: read %d bytes, %v; want a timeout", n, err)
	}
}

// TestFloorClosesOnBody: a request with a body, or other than GET, is not
// forwarded; the connection is closed without an answer.
func TestFloorClosesOnBody(t *testing.T) {
	addr := startFloorChain(t)
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Errorf("%q: got %q, %v; want the connection closed", req, b, err)
		}
		c.Close()
	}
}

func TestContentLength(t *testing.T) {
	for head, want := range map[string]int{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n":                     -1,
		"GET / HTTP/1.1\r\ncontent-length: 0\r\n\r\n":           0,
		"HTTP/1.1 200 OK\r\nCONTENT-LENGTH:  128 \r\n\r\n":      128,
		"HTTP/1.1 200 OK\r\nX-Content-Length: 7\r\n\r\n":        -1,
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n":         -2,
		"HTTP/1.1 200 OK\r\nContent-Length: 9999999999\r\n\r\n": -2,
		"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n": -2,
	} {
		l, ok := contentLength([]byte(head))
		if !ok {
			l = -2
		}
		if l != want {
			t.Errorf("contentLength(%q) = %d, want %d (-2: refused)", head, l, want)
		}
	}
}

// TestFloorLargeHead: a head larger than the starting buffer grows it,
// and the connection goes on working.
func TestFloorLargeHead(t *testing.T) {
	c, err := net.Dial("tcp", startFloorChain(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	big := "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 10) + "\r\n"
	br := bufio.NewReader(c)
	for i, req := range []string{big, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"} {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		if r, err := readResponse(br); err != nil || r.status != 200 {
			t.Fatalf("request %d: %+v, %v", i, r, err)
		}
	}
}

// busyWork spins for at least the time asked: the work the floor adds
// per request is there whatever the machine's speed.
func TestBusyWork(t *testing.T) {
	for _, d := range []time.Duration{0, 20 * time.Microsecond, 2 * time.Millisecond} {
		start := time.Now()
		busyWork(d)
		if got := time.Since(start); got < d {
			t.Errorf("busyWork(%v) returned after %v", d, got)
		}
	}
}

// The floor with work per request forwards as without: every answer the
// upstream's, on one kept-alive connection; and each request is held for
// at least the work (a lower bound only: a busy wait is never shorter).
func TestFloorWithWork(t *testing.T) {
	const work = 500 * time.Microsecond
	addr := startFloorChainWork(t, work)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 20 {
		start := time.Now()
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if r, err := readResponse(br); err != nil || r.status != 200 || !r.keepAlive {
			t.Fatalf("request %d: %+v, %v", i, r, err)
		}
		if took := time.Since(start); took < work {
			t.Fatalf("request %d answered in %v, under the %v of work", i, took, work)
		}
	}
}
