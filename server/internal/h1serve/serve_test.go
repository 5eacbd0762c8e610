package h1serve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"sluice/internal/testutil"
)

// TestMain fails the package if a test leaves a goroutine behind: a
// connection's loop or watch must end with its server.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// served is a Server on a loopback listener; handedOff counts the
// connections its Fallback was given.
type served struct {
	srv       *Server
	addr      string
	handedOff atomic.Int32
	logs      *testutil.SyncBuffer
	done      chan error
}

func serveH1(t *testing.T, h http.Handler, tune func(*http.Server), opts ...func(*Server)) *served {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &served{addr: ln.Addr().String(), logs: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	fb := &http.Server{Handler: h, ErrorLog: log.New(s.logs, "", 0)}
	if tune != nil {
		tune(fb)
	}
	s.srv = &Server{Fallback: fb, Wrap: func(c net.Conn) net.Conn { s.handedOff.Add(1); return c }}
	for _, o := range opts {
		o(s.srv)
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	t.Cleanup(func() {
		s.srv.Close()
		if err := <-s.done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s
}

// serveNetHTTP is the same handler under a plain net/http server.
func serveNetHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// exchange sends each request on one connection, in turn, and returns
// each answer's raw bytes; after the last answer (or a closed
// connection) it reports whether the connection was still open.
func exchange(t *testing.T, addr string, reqs ...string) (answers []string, open bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &raw))
	for _, req := range reqs {
		if _, err := io.WriteString(c, req); err != nil {
			return answers, false
		}
		method := strings.SplitN(req, " ", 2)[0]
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return answers, false
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		answers = append(answers, raw.String()[:raw.Len()-br.Buffered()])
		rest := raw.Bytes()[raw.Len()-br.Buffered():]
		raw.Reset()
		raw.Write(rest)
		if res.Close {
			return answers, false
		}
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = br.Peek(1)
	var ne net.Error
	return answers, errors.As(err, &ne) && ne.Timeout()
}

var dateLine = regexp.MustCompile(`(?m)^Date: .*\r$`)

// TestResponsesMatchNetHTTP runs handlers that use every part of the
// ResponseWriter under both loops and compares the bytes each client
// receives (Date apart), and whether the connection stays open.
func TestResponsesMatchNetHTTP(t *testing.T) {
	handlers := map[string]http.HandlerFunc{
		"short": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") },
		"html":  func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html><body>hi</body></html>") },
		"typed": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/x")
			w.Write([]byte("x"))
		},
		"untyped": func(w http.ResponseWriter, r *http.Request) { w.Header()["Content-Type"] = nil; w.Write([]byte("x")) },
		"encoded": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write([]byte("x"))
		},
		"empty":   func(w http.ResponseWriter, r *http.Request) {},
		"status":  func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(418) },
		"unknown": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(599); io.WriteString(w, "x") },
		"nocontent": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3")
			w.WriteHeader(204)
		},
		"notmodified": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "a/b")
			w.WriteHeader(304)
		},
		"big": func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("abcdefgh"), 1000)) },
		"biglen": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "8000")
			w.Write(bytes.Repeat([]byte("abcdefgh"), 1000))
		},
		"shortlen": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "abc")
		},
		"badlen": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "x")
			io.WriteString(w, "abc")
		},
		"overlen": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "abc")
		},
		"flushed": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		},
		"flushedEmpty": func(w http.ResponseWriter, r *http.Request) { w.(http.Flusher).Flush() },
		"controller": func(w http.ResponseWriter, r *http.Request) {
			http.NewResponseController(w).Flush()
			io.WriteString(w, "c")
		},
		"trailers": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum, Content-Length")
			io.WriteString(w, "d")
			w.Header().Set("X-Sum", "1")
		},
		"prefixTrailer": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "e")
			w.Header().Set(http.TrailerPrefix+"X-Late", "2")
		},
		"interim": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a>")
			w.WriteHeader(103)
			w.WriteHeader(200)
			io.WriteString(w, "f")
		},
		"close": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "g")
		},
		"identity": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Transfer-Encoding", "identity")
			io.WriteString(w, "h")
		},
		"chunkedTE": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Transfer-Encoding", "chunked")
			io.WriteString(w, "i")
		},
		"dated": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Date", "yesterday")
			io.WriteString(w, "j")
		},
		"newline": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-A", "a\r\nb ")
			w.Header()["bad name"] = []string{"v"}
			io.WriteString(w, "k")
		},
		"several": func(w http.ResponseWriter, r *http.Request) {
			for _, k := range []string{"X-D", "Cache-Control", "X-B", "Vary", "X-A", "Etag", "X-C"} {
				w.Header().Set(k, "v")
			}
			io.WriteString(w, "p")
		},
		"multi": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			io.WriteString(w, "l")
		},
		"writeString": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(struct{ io.Writer }{w}, "m")
			w.(io.StringWriter).WriteString("n")
		},
		"headAfterWrite": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "o"); w.WriteHeader(500) },
		"echo": func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s %q %v", r.Method, r.URL, r.Host, r.Close)
		},
	}
	mux := http.NewServeMux()
	for name, h := range handlers {
		mux.Handle("/"+name, h)
	}
	ours := serveH1(t, mux, nil)
	theirs := serveNetHTTP(t, mux)
	for name := range handlers {
		for _, req := range []string{
			"GET /" + name + " HTTP/1.1\r\nHost: a\r\n\r\n",
			"HEAD /" + name + " HTTP/1.1\r\nHost: a\r\n\r\n",
			"GET /" + name + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		} {
			// Twice on one connection: the second answer shows the
			// connection survived the first as it should.
			got, gotOpen := exchange(t, ours.addr, req, req)
			want, wantOpen := exchange(t, theirs, req, req)
			g := dateLine.ReplaceAllString(strings.Join(got, "|"), "Date: -\r")
			w := dateLine.ReplaceAllString(strings.Join(want, "|"), "Date: -\r")
			if g != w || gotOpen != wantOpen {
				t.Errorf("%q:\n ours   (open %v) %q\n net/http (open %v) %q", req, gotOpen, g, wantOpen, w)
			}
		}
	}
	if n := ours.handedOff.Load(); n != 0 {
		t.Errorf("%d connections were handed to net/http", n)
	}
}

// TestHandOff sends requests the loop leaves to net/http, alone and
// after requests it serves on the same connection, pipelined too: each is
// answered, in order, by the handler or by net/http's refusal.
func TestHandOff(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %q", r.Proto, r.Method, r.URL.Path, b)
	})
	s := serveH1(t, h, func(fb *http.Server) { fb.MaxHeaderBytes = 1 << 10 })
	get := "GET /g HTTP/1.1\r\nHost: a\r\n\r\n"
	post := "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
	body := func(answer string) string { return answer[strings.Index(answer, "\r\n\r\n")+4:] }
	for _, tc := range []struct {
		name      string
		reqs      []string
		want      []string // bodies, or a status line prefix
		handedOff int32
	}{
		{"served", []string{get, get}, []string{`HTTP/1.1 GET /g ""`, `HTTP/1.1 GET /g ""`}, 0},
		{"body", []string{post, get}, []string{`HTTP/1.1 POST /p "abc"`, `HTTP/1.1 GET /g ""`}, 1},
		{"after served", []string{get, post, get}, []string{`HTTP/1.1 GET /g ""`, `HTTP/1.1 POST /p "abc"`, `HTTP/1.1 GET /g ""`}, 1},
		{"pipelined", []string{get + post + get}, []string{`HTTP/1.1 GET /g ""`}, 1},
		{"HTTP/1.0", []string{"GET /o HTTP/1.0\r\n\r\n"}, []string{`HTTP/1.0 GET /o ""`}, 1},
		{"malformed", []string{"GET / HTTP/1.1\r\nBad Header\r\n\r\n"}, []string{"HTTP/1.1 400 "}, 1},
		{"too large", []string{"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 8<<10) + "\r\n\r\n"}, []string{"HTTP/1.1 431 "}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.handedOff.Load()
			got, _ := exchange(t, s.addr, tc.reqs...)
			if len(got) != len(tc.want) {
				t.Fatalf("%d answers, want %d: %q", len(got), len(tc.want), got)
			}
			for i, a := range got {
				if !strings.HasPrefix(a, tc.want[i]) && body(a) != tc.want[i] {
					t.Errorf("answer %d: %q, want %q", i, a, tc.want[i])
				}
			}
			if n := s.handedOff.Load() - before; n != tc.handedOff {
				t.Errorf("%d connections handed off, want %d", n, tc.handedOff)
			}
		})
	}
	// The pipelined connection's later answers: read them all at once.
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, get+post+get+"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, _ := io.ReadAll(c)
	if n := strings.Count(string(all), "HTTP/1.1 200 OK"); n != 4 || !strings.HasSuffix(string(all), `HTTP/1.1 GET /last ""`) {
		t.Errorf("pipelined answers:\n%s", all)
	}
}

// TestClientLeavingCancelsAWait: a handler that waits on its request's
// context sees it cancelled when the client closes the connection (once
// the watch delay has passed, by default); one that does not wait finds
// the context live while it runs and cancelled once it has returned.
func TestClientLeavingCancelsAWait(t *testing.T) {
	cancelled := make(chan error, 1)
	var kept atomic.Pointer[context.Context]
	mux := http.NewServeMux()
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(10 * time.Second):
			cancelled <- nil
		}
	})
	mux.HandleFunc("/quick", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		kept.Store(&ctx)
		fmt.Fprint(w, ctx.Err())
	})
	s := serveH1(t, mux, nil)

	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(20 * time.Millisecond) // let the handler start waiting; either order passes
	c.Close()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Errorf("the waiting handler's context ended with %v, want Canceled", err)
	}

	got, open := exchange(t, s.addr, "GET /quick HTTP/1.1\r\nHost: a\r\n\r\n")
	if len(got) != 1 || !strings.HasSuffix(got[0], "<nil>") || !open {
		t.Errorf("quick: %q open %v", got, open)
	}
	if err := (*kept.Load()).Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("after the handler returned, its context's Err is %v", err)
	}
	if v := (*kept.Load()).Value(http.ServerContextKey); v != s.srv.Fallback {
		t.Errorf("ServerContextKey holds %v", v)
	}
}

// TestWatchKeepsThePipelinedByte: a handler that waits on its context
// while the client sends its next request does not lose that request's
// first byte to the watch.
func TestWatchKeepsThePipelinedByte(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
		io.WriteString(w, r.URL.Path)
	})
	s := serveH1(t, h, nil, func(s *Server) { s.WatchDelay = -1 })
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(20 * time.Millisecond)
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	time.Sleep(20 * time.Millisecond)
	close(release)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, _ := io.ReadAll(c)
	if !strings.Contains(string(all), "\r\n\r\n/wait") || !strings.HasSuffix(string(all), "\r\n\r\n/next") {
		t.Errorf("answers:\n%s", all)
	}
}

// TestShortWaitsStartNoWatch: requests that wait on their context for
// less than the watch delay start no watch, and a delay timer left from
// one request starts nothing during the next.
func TestShortWaitsStartNoWatch(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Millisecond):
		}
		io.WriteString(w, r.URL.Path)
	})
	s := serveH1(t, h, nil, func(s *Server) { s.WatchDelay = time.Hour })
	reqs := make([]string, 20)
	for i := range reqs {
		reqs[i] = fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: a\r\n\r\n", i)
	}
	got, open := exchange(t, s.addr, reqs...)
	if len(got) != 20 || !open {
		t.Fatalf("%d answers, open %v", len(got), open)
	}
	for i, a := range got {
		if !strings.HasSuffix(a, fmt.Sprintf("\r\n\r\n/%d", i)) {
			t.Errorf("answer %d: %q", i, a)
		}
	}
	if n := s.srv.watches.Load(); n != 0 {
		t.Errorf("%d watches started", n)
	}
}

// TestShutdownDrains: Shutdown closes an idle connection, lets an active
// request finish with Connection: close, and then returns.
func TestShutdownDrains(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "done")
	})
	s := serveH1(t, h, nil)
	idle, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(idle)
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("first answer: %v", err)
	} else {
		io.Copy(io.Discard, res.Body)
	}

	active, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	io.WriteString(active, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.srv.Shutdown(context.Background()) }()
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the idle connection read %v, want EOF", err)
	}
	close(release)
	active.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(active), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	if string(b) != "done" || !res.Close {
		t.Errorf("the active request got %q, close %v", b, res.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", s.addr); err == nil {
		t.Error("the listener still accepts")
	}
}

// TestHijack: a handler takes the connection over and speaks on it.
func TestHijack(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("raw " + r.URL.Path)
		brw.Flush()
	})
	s := serveH1(t, h, nil)
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /h HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(c); string(b) != "raw /h" {
		t.Errorf("read %q", b)
	}
}

// TestPanics: a handler's panic closes its connection and is logged with
// its stack; http.ErrAbortHandler closes it silently.
func TestPanics(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/abort" {
			panic(http.ErrAbortHandler)
		}
		panic("boom")
	})
	s := serveH1(t, h, nil)
	for _, p := range []string{"/abort", "/boom"} {
		if got, open := exchange(t, s.addr, "GET "+p+" HTTP/1.1\r\nHost: a\r\n\r\n"); len(got) != 0 || open {
			t.Errorf("%s: answers %q, open %v", p, got, open)
		}
	}
	testutil.WaitFor(t, "the panic to be logged", func() bool { return strings.Contains(s.logs.String(), "panic serving") })
	if l := s.logs.String(); strings.Count(l, "panic serving") != 1 || !strings.Contains(l, "boom") {
		t.Errorf("log:\n%s", l)
	}
}

// TestTimeouts: an idle connection is closed after IdleTimeout, and a
// head that stops arriving after ReadHeaderTimeout.
func TestTimeouts(t *testing.T) {
	s := serveH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(fb *http.Server) {
		fb.IdleTimeout, fb.ReadHeaderTimeout = 50*time.Millisecond, 50*time.Millisecond
	})
	for _, send := range []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\nHo"} {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, send)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Errorf("after %q: %v (the server did not close)", send, err)
		}
		if want := strings.HasSuffix(send, "\r\n\r\n"); strings.HasPrefix(string(b), "HTTP/1.1 200") != want {
			t.Errorf("after %q read %q", send, b)
		}
	}
}

// BenchmarkServe compares one keep-alive connection's requests under this
// loop and under net/http, the handler answering a short body.
func BenchmarkServe(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	})
	for _, loop := range []string{"h1serve", "net/http"} {
		b.Run(loop, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			fb := &http.Server{Handler: h}
			var srv interface{ Close() error } = fb
			if loop == "h1serve" {
				s := &Server{Fallback: fb}
				srv = s
				go s.Serve(ln)
			} else {
				go fb.Serve(ln)
			}
			defer srv.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte("GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: bench\r\n\r\n")
			br := bufio.NewReader(c)
			b.ReportAllocs()
			for b.Loop() {
				c.Write(req)
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
			}
		})
	}
}

// failingListener returns err from Accept until stopped, then closes.
type failingListener struct {
	net.Listener
	err   error
	calls atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.calls.Add(1) <= 2 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// TestAcceptRetriesRunningOutOfDescriptors: Serve waits out EMFILE and
// serves on, and returns any other accept error.
func TestAcceptRetriesRunningOutOfDescriptors(t *testing.T) {
	for _, tc := range []struct {
		err   error
		serve bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept", syscall.EMFILE)}, true},
		{errors.New("listener broken"), false},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fl := &failingListener{Listener: ln, err: tc.err}
		srv := &Server{Fallback: &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(fl) }()
		if tc.serve {
			got, _ := exchange(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			if len(got) != 1 || !strings.HasSuffix(got[0], "ok") {
				t.Errorf("after %v: %q", tc.err, got)
			}
			srv.Close()
			if err := <-done; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		} else {
			if err := <-done; err != tc.err {
				t.Errorf("Serve returned %v, want %v", err, tc.err)
			}
			srv.Close()
			ln.Close()
		}
	}
}
