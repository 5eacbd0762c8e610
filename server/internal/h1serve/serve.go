// Package h1serve serves HTTP/1.1 on plain TCP connections with a
// connection loop of its own for the common request, and hands every
// other connection to a net/http server at the first request it does not
// take.
//
// The common request is a GET, HEAD, DELETE or OPTIONS in HTTP/1.1 with an
// origin-form target, one plain Host header, header lines of token names
// and visible-ASCII values, and nothing that frames a body or switches
// protocols (no Content-Length, Transfer-Encoding, Expect, Upgrade,
// Trailer, HTTP2-Settings or Pragma), in a head no longer than 4 KiB or
// MaxHeaderBytes. parseHead accepts exactly such heads, and parses them
// into the request http.ReadRequest would (FuzzParseHead). Anything else —
// a body, HTTP/1.0, an upgrade, an h2c preface, a malformed or oversized
// head — is net/http's: the connection, with the bytes read of it so far,
// goes to Server.Fallback, which serves it from that request on as if it
// had accepted it, including its error answers.
//
// What this saves over net/http for the common request: net/http reads
// each request through a bufio.Reader and textproto, allocating every
// line and header value; starts a background read of the connection for
// each request, so that a client that leaves cancels the request's
// context, and wakes it again at the end; and sets read deadlines twice
// per request. Here the head is copied into one string that all the
// request's strings share; the connection is watched only when someone
// waits on the request's context (its Done channel is made lazily); and
// the idle deadline is set once per request.
//
// Responses follow net/http's rules for the same handler calls (the head,
// Content-Length from a short body, chunking, Content-Type sniffing, Date,
// trailers, HEAD, 1xx, Connection: close), so a client cannot tell which
// loop answered (TestResponsesMatchNetHTTP).
package h1serve

import (
	"bufio"
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// readBufSize is a connection's read buffer: the longest head served here.
const readBufSize = 4096

// aLongTimeAgo is a deadline in the past: it ends a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// Server serves HTTP/1.1 connections, handing what it does not serve to
// Fallback.
type Server struct {
	// Fallback serves the connections handed to it, and its settings apply
	// here too: Handler, ReadHeaderTimeout, IdleTimeout (ReadTimeout when
	// zero), MaxHeaderBytes and ErrorLog. Its ReadTimeout and WriteTimeout
	// must be zero (this loop does not apply them).
	Fallback *http.Server
	// Wrap, if not nil, wraps each connection before Fallback gets it.
	Wrap func(net.Conn) net.Conn
	// WatchDelay is how long a request waits on its context before its
	// connection is watched for the client leaving; zero means 50ms,
	// negative at once. A watch is a goroutine blocked in a read of the
	// connection, ended when the handler returns: most waits (a short
	// queue wait, a CoDel refusal at its target) end before the delay and
	// cost only a timer.
	WatchDelay time.Duration

	initOnce sync.Once
	handoff  *chanListener
	fbDone   chan error // Fallback.Serve's result

	served    atomic.Uint64 // requests this loop answered
	handedOff atomic.Uint64 // connections given to Fallback
	watches   atomic.Uint64 // watches started

	mu       sync.Mutex // guards lns and conns
	lns      map[net.Listener]struct{}
	conns    map[*conn]struct{}
	shutdown atomic.Bool
}

var (
	// ErrServerClosed is http.ErrServerClosed: Serve's result after Shutdown or Close.
	ErrServerClosed = http.ErrServerClosed
	emptyRequest    = &http.Request{}
)

func (s *Server) init(addr net.Addr) {
	s.initOnce.Do(func() {
		s.handoff = &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
		s.fbDone = make(chan error, 1)
		go func() { s.fbDone <- s.Fallback.Serve(s.handoff) }()
	})
}

// Serve accepts connections on ln and serves each in a goroutine of its
// own until ln fails or the server is shut down.
func (s *Server) Serve(ln net.Listener) error {
	s.init(ln.Addr())
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if s.lns == nil {
		s.lns = make(map[net.Listener]struct{})
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration // after a temporary accept error, as net/http
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || retryAccept(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("http: Accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(nc)
		if c == nil {
			continue // shut down meanwhile: closed
		}
		go c.serve()
	}
}

// retryAccept reports whether an accept error passes: out of file
// descriptors or buffers (what net/http retries through the deprecated
// Temporary). Connections closing free descriptors again.
func retryAccept(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// Shutdown stops accepting, closes idle connections, and waits until the
// active ones have finished their requests (they close after their
// answer), or ctx ends. Fallback is shut down alongside.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init(nil)
	s.shutdown.Store(true)
	s.mu.Lock()
	for ln := range s.lns {
		ln.Close()
	}
	s.mu.Unlock()
	fb := make(chan error, 1)
	go func() { fb <- s.Fallback.Shutdown(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			c.closeIfIdle()
		}
		s.mu.Unlock()
		if n == 0 {
			return <-fb
		}
		select {
		case <-ctx.Done():
			<-fb
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners and every connection at once, and Fallback's.
func (s *Server) Close() error {
	s.init(nil)
	s.shutdown.Store(true)
	s.mu.Lock()
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return s.Fallback.Close()
}

// Served is the number of requests the loop has answered itself.
func (s *Server) Served() uint64 { return s.served.Load() }

// HandedOff is the number of connections handed to Fallback.
func (s *Server) HandedOff() uint64 { return s.handedOff.Load() }

func (s *Server) shuttingDown() bool { return s.shutdown.Load() }

func (s *Server) logf(format string, args ...any) {
	if l := s.Fallback.ErrorLog; l != nil {
		l.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

func (s *Server) watchDelay() time.Duration {
	if s.WatchDelay == 0 {
		return 50 * time.Millisecond
	}
	return s.WatchDelay
}

func (s *Server) idleTimeout() time.Duration {
	if s.Fallback.IdleTimeout > 0 {
		return s.Fallback.IdleTimeout
	}
	return s.Fallback.ReadTimeout
}

func (s *Server) headerTimeout() time.Duration {
	if s.Fallback.ReadHeaderTimeout > 0 {
		return s.Fallback.ReadHeaderTimeout
	}
	return s.Fallback.ReadTimeout
}

// maxHead is the longest head served here; a longer one is net/http's
// (which may still accept it, up to MaxHeaderBytes).
func (s *Server) maxHead() int {
	m := s.Fallback.MaxHeaderBytes
	if m <= 0 {
		m = http.DefaultMaxHeaderBytes
	}
	return min(m, readBufSize)
}

func (s *Server) handler() http.Handler {
	if h := s.Fallback.Handler; h != nil {
		return h
	}
	return http.DefaultServeMux
}

// newConn tracks a new connection; nil (and nc closed) once shutting down.
func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, buf: make([]byte, readBufSize), bw: bufio.NewWriterSize(nc, readBufSize)}
	if ra := nc.RemoteAddr(); ra != nil {
		c.remote = ra.String()
	}
	c.base = context.WithValue(context.WithValue(context.Background(), http.ServerContextKey, s.Fallback), http.LocalAddrContextKey, nc.LocalAddr())
	c.res.c = c
	c.res.cw.res = &c.res
	c.state.Store(stateIdle)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		nc.Close()
		return nil
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// chanListener is the listener Fallback serves: it accepts the
// connections handed to it.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr {
	if l.addr == nil {
		return &net.TCPAddr{}
	}
	return l.addr
}

// give hands c to Fallback; false if it is closed.
func (l *chanListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// prefixConn is a connection whose first reads return bytes already read
// from it.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection, as net/http does before closing
// one with unread input (so the client reads the answer first).
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the connection beneath, as tls.Conn.NetConn does.
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

// A connection's state, for Shutdown: idle connections (between requests,
// nothing read of the next) are closed, active ones finish first.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

// conn is one client connection served by the loop.
type conn struct {
	srv    *Server
	nc     net.Conn
	remote string
	base   context.Context // ServerContextKey, LocalAddrContextKey

	next *request // the next request's allocation, once its bytes come
	buf  []byte   // read buffer; buf[r:w] is read and not yet parsed
	r, w int
	bw   *bufio.Writer // in front of nc
	res  response
	werr error // the first write error: the connection is done

	state atomic.Int32

	deadline  time.Time // the read deadline set on nc by the loop; zero: none
	idleArmed bool      // deadline is the idle timeout's

	// The watch: a read of the connection while a handler runs, started
	// when someone waits on the request's context, so that a client that
	// leaves cancels it. wmu guards the fields below it.
	pipelined  bool // the next request's bytes are buffered: no watch (as net/http)
	wmu        sync.Mutex
	armed      *time.Timer // starts the watch after the watch delay
	watchGen   uint64      // counts stopWatch calls: a stale timer starts nothing
	watching   bool
	aborted    bool
	watchDone  chan struct{}
	watchByte  [1]byte
	watchN     int
	watchErr   error
	clientGone bool // the watch saw the client leave
}

// closeIfIdle closes c if it is between requests. Called by Shutdown.
func (c *conn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.nc.SetReadDeadline(aLongTimeAgo) // its loop wakes and closes it
	}
}

// fail records a write error and closes the connection, as net/http does.
func (c *conn) fail(err error) {
	if c.werr == nil {
		c.werr = err
	}
	c.nc.Close()
}

// unread returns a copy of what was read and not parsed.
func (c *conn) unread() []byte {
	return append([]byte(nil), c.buf[c.r:c.w]...)
}

func (c *conn) serve() {
	handedOff := false
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			const size = 64 << 10
			buf := make([]byte, size)
			buf = buf[:runtime.Stack(buf, false)]
			c.srv.logf("http: panic serving %v: %v\n%s", c.remote, err, buf)
		}
		c.srv.forget(c)
		if !handedOff && !c.res.hijacked {
			c.nc.Close()
		}
	}()
	for {
		h, ok, handoff := c.readHead()
		if handoff {
			handedOff = c.handOff()
			return
		}
		if !ok {
			return
		}
		if !c.serveRequest(h) {
			return
		}
	}
}

// armIdle bounds the wait for the next request by the idle timeout. The
// deadline already set is kept when it is within 1/32 of the timeout of
// the one wanted: setting a deadline costs a runtime timer update, and a
// busy connection would pay it on every request to move the deadline by
// microseconds. (The idle timeout then cuts between 31/32 of it and all
// of it.)
func (c *conn) armIdle() {
	d := c.srv.idleTimeout()
	if d <= 0 {
		c.setReadDeadline(time.Time{})
		return
	}
	want := time.Now().Add(d)
	if c.idleArmed && want.Sub(c.deadline) < d/32 {
		return
	}
	c.setReadDeadline(want)
	c.idleArmed = true
}

// setReadDeadline sets the read deadline and remembers it.
func (c *conn) setReadDeadline(t time.Time) {
	if t.IsZero() && c.deadline.IsZero() && !c.idleArmed {
		return // none set, none wanted
	}
	c.nc.SetReadDeadline(t)
	c.deadline, c.idleArmed = t, false
}

// readHead reads until the buffer holds a complete head. ok is false when
// the connection is done (closed, timed out, shut down); handoff is true
// when the head is net/http's.
func (c *conn) readHead() (h head, ok, handoff bool) {
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	c.armIdle()
	if c.state.Load() == stateClosed {
		return h, false, false // closed by Shutdown, maybe before armIdle's deadline replaced its own
	}
	headerDeadline := false
	for {
		if c.w > c.r {
			if c.state.Load() == stateIdle && !c.state.CompareAndSwap(stateIdle, stateActive) {
				return h, false, false // closed by Shutdown
			}
			if c.next == nil {
				c.next = new(request)
			}
			h, n, ok := parseHead(c.buf[c.r:c.w], &c.next.url)
			if !ok {
				return h, false, true
			}
			if n > 0 {
				if n > c.srv.maxHead() {
					return h, false, true
				}
				c.r += n
				return h, true, false
			}
			if !headerDeadline {
				headerDeadline = true
				if d := c.srv.headerTimeout(); d > 0 {
					c.setReadDeadline(time.Now().Add(d))
				}
			}
		}
		if c.srv.shuttingDown() && c.r == c.w {
			return h, false, false
		}
		if c.w-c.r >= c.srv.maxHead() {
			return h, false, true // longer than served here: net/http judges it
		}
		if c.w == len(c.buf) {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		if err != nil {
			if c.w > c.r && !isTimeout(err) {
				return h, false, true // a partial head and end of stream: net/http answers as it would
			}
			return h, false, false
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handOff gives the connection, with its unparsed bytes, to Fallback.
func (c *conn) handOff() bool {
	c.nc.SetReadDeadline(time.Time{})
	var nc net.Conn = &prefixConn{Conn: c.nc, pending: c.unread()}
	if c.srv.Wrap != nil {
		nc = c.srv.Wrap(nc)
	}
	c.srv.handedOff.Add(1)
	return c.srv.handoff.give(nc)
}

// request is what one request allocates of its own: its context and URL.
type request struct {
	ctx reqCtx
	url url.URL
}

// serveRequest runs the handler for one request and completes its
// answer. It reports whether the connection serves another.
func (c *conn) serveRequest(h head) bool {
	ctx := &c.next.ctx
	ctx.c = c
	c.next = nil
	r := emptyRequest.WithContext(ctx)
	r.Method = h.method
	r.URL = h.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header = h.header
	r.Body = http.NoBody
	r.Host = h.host
	r.RemoteAddr = c.remote
	r.RequestURI = h.target
	r.Close = h.close
	c.pipelined = c.w > c.r

	// The header map is the connection's, emptied for each request: a
	// handler must not use its ResponseWriter after it returns.
	w := &c.res
	header := w.header
	if header == nil {
		header = make(http.Header)
	} else {
		clear(header)
	}
	*w = response{c: c, req: r, header: header, w: w.w, contentLength: -1}
	w.cw = chunkWriter{res: w}
	if w.w == nil {
		w.w = bufio.NewWriterSize(&w.cw, bufferBeforeChunking)
	} else {
		w.w.Reset(&w.cw)
	}

	c.srv.served.Add(1)
	c.srv.handler().ServeHTTP(w, r)
	ctx.end()
	c.stopWatch()
	if w.hijacked {
		return false
	}
	w.finish()
	if c.werr != nil || !w.reusable() || c.clientGone {
		return false
	}
	c.state.Store(stateIdle)
	return !c.srv.shuttingDown()
}

// armWatch starts the watch once the request has waited on its context
// for the server's watch delay: cancel is called if the client leaves
// while the handler runs.
func (c *conn) armWatch(cancel context.CancelFunc) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.watching || c.pipelined || c.armed != nil {
		return
	}
	gen := c.watchGen
	d := c.srv.watchDelay()
	if d <= 0 {
		c.startWatchLocked(cancel)
		return
	}
	c.armed = time.AfterFunc(d, func() {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if gen == c.watchGen && !c.watching {
			c.startWatchLocked(cancel)
		}
	})
}

// startWatchLocked starts the watch; c.wmu is held.
func (c *conn) startWatchLocked(cancel context.CancelFunc) {
	c.srv.watches.Add(1)
	c.watching, c.aborted = true, false
	c.watchN, c.watchErr = 0, nil
	c.watchDone = make(chan struct{})
	c.nc.SetReadDeadline(time.Time{})
	done := c.watchDone
	go func() {
		n, err := c.nc.Read(c.watchByte[:])
		c.wmu.Lock()
		c.watchN, c.watchErr = n, err
		gone := n == 0 && err != nil && !c.aborted
		c.wmu.Unlock()
		if gone {
			cancel() // the client closed or reset the connection
		}
		close(done)
	}()
}

// stopWatch ends the watch, if one runs, and keeps what it read.
func (c *conn) stopWatch() {
	c.wmu.Lock()
	c.watchGen++ // a timer that fires from now on starts nothing
	if c.armed != nil {
		c.armed.Stop()
		c.armed = nil
	}
	if !c.watching {
		c.wmu.Unlock()
		return
	}
	c.aborted = true
	done := c.watchDone
	c.wmu.Unlock()
	c.nc.SetReadDeadline(aLongTimeAgo)
	<-done
	c.wmu.Lock()
	c.watching = false
	if c.watchN == 1 {
		if c.w == len(c.buf) {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		c.buf[c.w] = c.watchByte[0]
		c.w++
	}
	if c.watchN == 0 && c.watchErr != nil && !isTimeout(c.watchErr) {
		c.clientGone = true
	}
	c.wmu.Unlock()
	c.nc.SetReadDeadline(time.Time{}) // the watch's, and armIdle's before it
	c.deadline, c.idleArmed = time.Time{}, false
}
