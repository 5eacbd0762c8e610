package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawUpstream is a loopback HTTP/1.1 server scripted per request: answer
// gets the connection's number (from 1), the request's number on it (from
// 1) and the request, and writes whatever it likes; it returns false to
// close the connection without another word.
type rawUpstream struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
}

func newRawUpstream(t *testing.T, answer func(conn, n int, req *http.Request, w *bufio.Writer) bool) *rawUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
	u.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conn := int(u.conns.Add(1))
			u.wg.Go(func() {
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for n := 1; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if !answer(conn, n, req, bw) || bw.Flush() != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); u.wg.Wait() })
	return u
}

func (u *rawUpstream) url() string { return "http://" + u.ln.Addr().String() }

func ok(w *bufio.Writer, body string) bool {
	fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return true
}

func newTestH1(maxIdle int, respTimeout time.Duration) *Transport {
	fb := &http.Transport{DialContext: (&net.Dialer{}).DialContext, IdleConnTimeout: 90 * time.Second}
	return NewTransport(fb, maxIdle, respTimeout)
}

// send makes one request through rt and reads the answer.
func send(t *testing.T, rt http.RoundTripper, method, url string, body io.Reader) (int, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), err
}

// TestH1ReusesConnections: sequential requests share one connection; a
// request with a body goes through http.Transport, on its own connection.
func TestH1ReusesConnections(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http.Request, w *bufio.Writer) bool {
		return ok(w, fmt.Sprintf("conn %d request %d %s", conn, n, req.Method))
	})
	rt := newTestH1(4, 0)
	defer rt.CloseIdleConnections()
	for i := 1; i <= 5; i++ {
		code, body, err := send(t, rt, "GET", up.url()+"/", nil)
		if want := fmt.Sprintf("conn 1 request %d GET", i); err != nil || code != 200 || body != want {
			t.Fatalf("GET %d: %d %q %v, want %q", i, code, body, err, want)
		}
	}
	if code, body, err := send(t, rt, "POST", up.url()+"/", strings.NewReader("x")); err != nil || code != 200 || body != "conn 2 request 1 POST" {
		t.Fatalf("POST with a body: %d %q %v", code, body, err)
	}
	// A HEAD and a 204 have no body: the connection goes back at once.
	up2 := newRawUpstream(t, func(conn, n int, req *http.Request, w *bufio.Writer) bool {
		fmt.Fprintf(w, "HTTP/1.1 204 No Content\r\nX-Conn: %d\r\n\r\n", conn)
		return true
	})
	for range 3 {
		if code, _, err := send(t, rt, "HEAD", up2.url()+"/", nil); err != nil || code != 204 {
			t.Fatalf("HEAD: %d %v", code, err)
		}
	}
	if n := up2.conns.Load(); n != 1 {
		t.Errorf("bodiless answers used %d connections, want 1", n)
	}
}

// TestH1StaleConnection: the upstream closes a kept-alive connection. When
// it has closed it before the request, the idle check notices and a fresh
// one is dialled (even for a POST, which is never sent twice); when it closes it on reading the request, an idempotent
// request is sent again on a fresh one, and a POST is not (it may have been
// acted on): it fails.
func TestH1StaleConnection(t *testing.T) {
	t.Run("closed while idle", func(t *testing.T) {
		up := newRawUpstream(t, func(conn, n int, req *http.Request, w *bufio.Writer) bool {
			ok(w, fmt.Sprint("conn ", conn))
			w.Flush()
			return false // close after answering, without saying so
		})
		rt := newTestH1(4, 0)
		defer rt.CloseIdleConnections()
		for i := 1; i <= 3; i++ {
			if i > 1 {
				waitClosed(t, rt)
			}
			code, body, err := send(t, rt, "POST", up.url()+"/", nil)
			if err != nil || code != 200 || body != fmt.Sprint("conn ", i) {
				t.Fatalf("POST %d: %d %q %v", i, code, body, err)
			}
		}
	})
	t.Run("closed on the request", func(t *testing.T) {
		up := newRawUpstream(t, func(conn, n int, req *http.Request, w *bufio.Writer) bool {
			if n == 2 {
				return false // the second request on a connection: hang up
			}
			return ok(w, fmt.Sprint("conn ", conn))
		})
		rt := newTestH1(4, 0)
		defer rt.CloseIdleConnections()
		for i, want := range []string{"conn 1", "conn 2"} { // the second retried on conn 2
			if code, body, err := send(t, rt, "GET", up.url()+"/", nil); err != nil || code != 200 || body != want {
				t.Fatalf("GET %d: %d %q %v, want %q", i+1, code, body, err, want)
			}
		}
		if _, _, err := send(t, rt, "POST", up.url()+"/", nil); err == nil {
			t.Fatal("POST on a connection the upstream hung up on: no error, want one (not retried)")
		}
		if n := up.conns.Load(); n != 2 {
			t.Errorf("%d connections, want 2 (the POST was not sent again)", n)
		}
	})
}

// waitClosed waits until the upstream's close of the pooled connection is
// visible to the idle check.
func waitClosed(t *testing.T, rt *Transport) {
	t.Helper()
	for range 200 {
		rt.mu.Lock()
		var pc *persistConn
		for _, pool := range rt.idle {
			if len(pool) > 0 {
				pc = pool[0]
			}
		}
		rt.mu.Unlock()
		if pc == nil || !pc.open() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the upstream's close never showed")
}

// TestH1Timeouts: the response header timeout and a canceled request end
// the exchange with an error, and their connections are not reused. A
// timeout on a reused connection is not taken for a stale one: the
// request is not sent again.
func TestH1Timeouts(t *testing.T) {
	release := make(chan struct{})
	up := newRawUpstream(t, func(conn, n int, req *http.Request, w *bufio.Writer) bool {
		if req.URL.Path == "/slow" {
			<-release
		}
		return ok(w, fmt.Sprint("conn ", conn))
	})
	defer close(release)
	rt := newTestH1(4, 100*time.Millisecond)
	defer rt.CloseIdleConnections()
	if code, body, err := send(t, rt, "GET", up.url()+"/", nil); err != nil || code != 200 || body != "conn 1" {
		t.Fatalf("first: %d %q %v", code, body, err)
	}
	if _, _, err := send(t, rt, "GET", up.url()+"/slow", nil); !IsTimeout(err) {
		t.Fatalf("response header timeout on a reused connection: %v, want a timeout", err)
	}
	if n := up.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (the timed-out GET was not sent again)", n)
	}
	rt.respTimeout = 0
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", up.url()+"/slow", nil)
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := rt.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v, want context.Canceled", err)
	}
	if code, body, err := send(t, rt, "GET", up.url()+"/", nil); err != nil || code != 200 || body != "conn 3" {
		t.Fatalf("after: %d %q %v, want a third connection", code, body, err)
	}
}

// TestH1AnswersPastWatchAfter: an answer slower than watchAfter — a head
// that arrives in two parts, a 103 long before its 200, a body that
// trickles — still arrives whole, on a connection that is kept; a context
// that ends after watchAfter, or a deadline that passes, ends the wait.
func TestH1AnswersPastWatchAfter(t *testing.T) {
	pause := func(w *bufio.Writer) {
		w.Flush()
		time.Sleep(3 * watchAfter)
	}
	release := make(chan struct{})
	defer close(release)
	up := newRawUpstream(t, func(conn, n int, req *http.Request, w *bufio.Writer) bool {
		switch req.URL.Path {
		case "/split-head":
			w.WriteString("HTTP/1.1 200 OK\r\n")
			pause(w)
			w.WriteString("Content-Length: 2\r\n\r\nok")
		case "/late-final":
			w.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
			pause(w)
			return ok(w, "ok")
		case "/trickle":
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok")
			pause(w)
			w.WriteString("ok")
		case "/stall-body":
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok")
			w.Flush()
			<-release
			return false
		case "/hang":
			<-release
			return false
		default:
			return ok(w, fmt.Sprint("conn ", conn))
		}
		return true
	})
	rt := newTestH1(4, time.Second)
	defer rt.CloseIdleConnections()
	for _, path := range []string{"/split-head", "/late-final", "/trickle"} {
		code, body, err := send(t, rt, "GET", up.url()+path, nil)
		if err != nil || code != 200 || (body != "ok" && body != "okok") {
			t.Errorf("%s: %d %q %v, want 200 and the whole body", path, code, body, err)
		}
	}
	if n := up.conns.Load(); n != 1 {
		t.Errorf("%d connections for three slow answers, want 1 (kept after each)", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(3*watchAfter, cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", up.url()+"/hang", nil)
	if _, err := rt.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled after watchAfter: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*watchAfter)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, "GET", up.url()+"/hang", nil)
	if _, err := rt.RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline after watchAfter: %v, want context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*watchAfter)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, "GET", up.url()+"/stall-body", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("stalled body, head: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || !IsTimeout(err) {
		t.Errorf("stalled body past the deadline: %q %v, want \"ok\" then a timeout", b, err)
	}
}

// TestH1InterimAndEarlyClose: a 103 reaches the request's trace hook before
// the 200; a body closed before its end closes the connection (the next
// request dials), one read to its end is reused.
func TestH1InterimAndEarlyClose(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http.Request, w *bufio.Writer) bool {
		if req.URL.Path == "/hints" {
			w.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
		}
		return ok(w, fmt.Sprintf("conn %d %s", conn, strings.Repeat("x", 10000)))
	})
	rt := newTestH1(4, 0)
	defer rt.CloseIdleConnections()
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, fmt.Sprint(code, " ", h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", up.url()+"/hints", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10)) // then give up on it
	resp.Body.Close()
	if fmt.Sprint(got) != "[103 </a.css>; rel=preload]" || resp.StatusCode != 200 {
		t.Errorf("interim responses %v, final %d", got, resp.StatusCode)
	}
	for _, want := range []string{"conn 2", "conn 2"} {
		if _, body, err := send(t, rt, "GET", up.url()+"/", nil); err != nil || !strings.HasPrefix(body, want) {
			t.Fatalf("%.6q %v, want %s", body, err, want)
		}
	}
}

// TestH1IdleBounds: at most maxIdle connections wait per target, the least
// recently used go first, and idle ones are closed after idleTimeout.
func TestH1IdleBounds(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	up := newRawUpstream(t, func(conn, n int, req *http.Request, w *bufio.Writer) bool {
		if req.URL.Path == "/hold" {
			entered.Done()
			<-release
		}
		return ok(w, "ok")
	})
	rt := newTestH1(2, 0)
	rt.idleTimeout = 100 * time.Millisecond
	defer rt.CloseIdleConnections()
	var wg sync.WaitGroup
	entered.Add(5)
	for range 5 {
		wg.Go(func() {
			if code, _, err := send(t, rt, "GET", up.url()+"/hold", nil); err != nil || code != 200 {
				t.Errorf("GET: %d %v", code, err)
			}
		})
	}
	entered.Wait()
	close(release)
	wg.Wait()
	idle := func() int {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		n := 0
		for _, p := range rt.idle {
			n += len(p)
		}
		return n
	}
	if n := idle(); n != 2 {
		t.Errorf("%d idle connections after 5 in parallel, want maxIdle 2", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for idle() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := idle(); n != 0 {
		t.Errorf("%d idle connections long after idleTimeout, want 0", n)
	}
}

// TestH1Head: the request head written for the upstream.
func TestH1Head(t *testing.T) {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	req, _ := http.NewRequest("POST", "http://up:8080/a%20b/c?q=1", nil)
	req.Host = "client.example"
	req.Header = http.Header{"User-Agent": {""}, "X-A": {"1", "2"}}
	if err := WriteRequestHead(w, req); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	lines := strings.Split(b.String(), "\r\n")
	want := []string{"POST /a%20b/c?q=1 HTTP/1.1", "Host: client.example", "Content-Length: 0", "X-A: 1", "X-A: 2", "", ""}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("head %q, want %q", lines, want)
	}
	req.Method = "GE T"
	if err := WriteRequestHead(w, req); err == nil {
		t.Error("a method with a space: no error")
	}
}

// TestH1ResponseFraming: heads read by readCommonResponse and those left
// to http.ReadResponse frame their bodies alike on the connection: a
// lower-case Content-Length and a chunked body leave it reused, a
// Connection: close (the upstream keeping it open regardless) and a body
// cut short end it.
func TestH1ResponseFraming(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http.Request, w *bufio.Writer) bool {
		body := fmt.Sprint("conn ", conn)
		switch req.URL.Path {
		case "/lower":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\ncontent-length: %d\r\nx-conn: %d\r\n\r\n%s", len(body), conn, body)
		case "/chunked":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
		case "/close":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		case "/short":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body)+1, body)
			w.Flush()
			return false
		}
		return true
	})
	rt := newTestH1(4, 0)
	defer rt.CloseIdleConnections()
	for i, step := range []struct {
		path, body string
		err        error
	}{
		{"/lower", "conn 1", nil},
		{"/chunked", "conn 1", nil},
		{"/close", "conn 1", nil},
		{"/lower", "conn 2", nil},
		{"/short", "conn 2", io.ErrUnexpectedEOF},
		{"/lower", "conn 3", nil},
	} {
		req, _ := http.NewRequest("GET", up.url()+step.path, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("%d %s: %v", i, step.path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != step.body || !errors.Is(err, step.err) {
			t.Errorf("%d %s: %q %v, want %q %v", i, step.path, b, err, step.body, step.err)
		}
		if step.path == "/lower" && resp.Header.Get("X-Conn") != step.body[len("conn "):] {
			t.Errorf("%d %s: header %v, want X-Conn canonical", i, step.path, resp.Header)
		}
		if step.path == "/close" && (!resp.Close || resp.Header["Connection"] != nil) {
			t.Errorf("%d %s: Close %v, header %v; want Close and no Connection field", i, step.path, resp.Close, resp.Header)
		}
	}
}
