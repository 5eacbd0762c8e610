// Package h1 is the HTTP/1.1 client sluice forwards with: a RoundTripper
// that carries the common request — HTTP/1.1 to a plain http:// target, no
// request body, no upgrade — on pooled connections in the calling
// goroutine, and hands every other request to an http.Transport.
//
// Besides http.Request values (RoundTrip), Transport.Send takes an Exchange:
// anything that can write a request head onto the connection and receive
// interim responses. The proxy's direct path uses that to write the
// upstream head straight from the client's request, without building an
// outgoing request first.
package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"sluice/internal/httpsyntax"
)

// Transport forwards the common request — HTTP/1.1 to a plain http://
// target, no request body, no upgrade — in the calling goroutine, and hands
// every other request to http.Transport.
//
// http.Transport runs each connection with two goroutines of its own, a
// writer and a reader, and hands every request and response between them
// and the caller over channels: three goroutines wake for each proxied
// request. On the benchmark's two cores that hand-off, its allocations and
// the reader's idle read were about a third of sluice's CPU (docs/
// BENCHMARKS.md, "Where sluice's CPU goes"). Here the caller writes the
// request and reads the response on a pooled connection itself; the
// response body returns the connection to the pool when read to its end.
// The common response head (readCommonResponse: HTTP/1.1, a final status,
// a Content-Length or no body) is read here in four allocations, two for a
// HeaderExchange, where http.ReadResponse, which reads every other, takes
// about ten.
//
// What http.Transport does that matters here is kept: the response header
// timeout and the context's deadline, as read deadlines; cancellation (a
// context that ends closes the read with a deadline in the past, once the
// exchange has run for watchAfter or has a body still to read); interim 1xx
// responses passed to the request's httptrace hook, as ReverseProxy forwards
// them; one retry of an idempotent request on a fresh connection when a
// reused one turns out to have been closed by the upstream before it
// answered a byte; a check that an idle connection is still open before it
// is reused (a peek, one syscall: always for a request that cannot be
// retried, else after a second idle); at most maxIdle idle connections per
// target, closed after idleTimeout.
type Transport struct {
	fallback    *http.Transport
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	respTimeout time.Duration // response header timeout; 0: none
	maxIdle     int
	idleTimeout time.Duration

	mu     sync.Mutex                // guards idle, pruner
	idle   map[string][]*persistConn // by address, most recently used last
	pruner *time.Timer               // armed while some connection is idle
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns a Transport that dials with fallback's DialContext,
// keeps at most maxIdle idle connections per address (at least 1) for
// fallback's IdleConnTimeout, and waits at most respTimeout for a response
// head (0: no limit but the request context's deadline).
func NewTransport(fallback *http.Transport, maxIdle int, respTimeout time.Duration) *Transport {
	return &Transport{
		fallback:    fallback,
		dial:        fallback.DialContext,
		respTimeout: respTimeout,
		maxIdle:     max(maxIdle, 1),
		idleTimeout: fallback.IdleConnTimeout,
		idle:        map[string][]*persistConn{},
	}
}

// Fast reports whether Transport forwards req itself rather than handing
// it to the fallback.
func Fast(req *http.Request) bool {
	return req.URL.Scheme == "http" && req.ProtoAtLeast(1, 1) &&
		(req.Body == nil || req.Body == http.NoBody) && req.ContentLength == 0 &&
		len(req.Header["Upgrade"]) == 0 && len(req.Trailer) == 0 && !req.Close
}

func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !Fast(req) {
		return t.fallback.RoundTrip(req)
	}
	return t.Send(req.Context(), CanonicalAddr(req.URL), req, (*clientRequest)(req))
}

// Exchange is what a connection needs of one request besides its method:
// its head, written on the connection, and where interim (1xx) responses
// go. RoundTrip's requests are http.Requests (clientRequest); the proxy's
// direct path writes the upstream head straight from the client's request
// (proxy/internal/direct), without building an outgoing request first.
type Exchange interface {
	// WriteHead writes the request line and header block, ending with the
	// empty line; the request has no body.
	WriteHead(w *bufio.Writer) error
	// Interim receives a 1xx response other than 101; an error ends the
	// exchange.
	Interim(code int, h http.Header) error
}

// A HeaderExchange is an Exchange with a header of its own for the final
// response's fields: a proxy's, where the fields are forwarded to. When
// the transport reads the response head itself (the common head), the
// fields but the hop-by-hop ones go straight into that header, added to
// what it holds, and the response's Header is it; otherwise the response
// has a header of its own, with every field. The proxy's direct path
// passes the client's response header, which spares each response a map
// and the copy of its fields into the client's.
type HeaderExchange interface {
	Exchange
	ResponseHeader() http.Header
}

// clientRequest is an outgoing http.Request as an Exchange: its head is
// what http.Request.Write would send, and 1xx responses go to its
// httptrace hook, as http.Transport passes them.
type clientRequest http.Request

func (r *clientRequest) WriteHead(w *bufio.Writer) error {
	return WriteRequestHead(w, (*http.Request)(r))
}

func (r *clientRequest) Interim(code int, h http.Header) error {
	if trace := httptrace.ContextClientTrace((*http.Request)(r).Context()); trace != nil && trace.Got1xxResponse != nil {
		return trace.Got1xxResponse(code, textproto.MIMEHeader(h))
	}
	return nil
}

// Send sends one request to addr on a pooled or new connection and
// reads its response head; req gives the method (a HEAD response has no
// body) and becomes the response's Request. On success the response's body
// owns the connection.
func (t *Transport) Send(ctx context.Context, addr string, req *http.Request, x Exchange) (*http.Response, error) {
	for retried := false; ; retried = true {
		pc, err := t.conn(ctx, addr, !idempotent(req.Method))
		if err != nil {
			return nil, err
		}
		resp, err := pc.roundTrip(ctx, req, x, t.respTimeout)
		if err == nil {
			return resp, nil
		}
		pc.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if d, ok := ctx.Deadline(); ok && IsTimeout(err) && !time.Now().Before(d) {
			return nil, context.DeadlineExceeded // the read deadline was ctx's, its timer not yet run
		}
		// The upstream closed a kept-alive connection as we reused it
		// (before answering a byte): an idempotent request is safe to send
		// again, as http.Transport would. An upstream that timed out is
		// not asked twice.
		if retried || !pc.reused || pc.gotByte || !idempotent(req.Method) || IsTimeout(err) {
			return nil, err
		}
	}
}

func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// peekAfter is how long a connection may have been idle before it is
// checked for an idempotent request. Such a request is sent again if the
// connection turns out closed, so a check (one syscall) is worth it only
// where a close is likely: upstreams close idle connections after seconds.
const peekAfter = time.Second

// conn returns an idle connection to addr, or dials one. An idle
// connection is checked to be still open first if it has been idle for
// peekAfter or more, or always with check: for a request that cannot be
// sent twice.
func (t *Transport) conn(ctx context.Context, addr string, check bool) (*persistConn, error) {
	for {
		t.mu.Lock()
		pool := t.idle[addr]
		if len(pool) == 0 {
			t.mu.Unlock()
			break
		}
		pc := pool[len(pool)-1]
		pool[len(pool)-1] = nil
		t.idle[addr] = pool[:len(pool)-1]
		t.mu.Unlock()
		idle := time.Since(pc.idleAt)
		if idle < t.idleTimeout && (!check && idle < peekAfter || pc.open()) {
			pc.reused = true
			return pc, nil
		}
		pc.c.Close()
	}
	c, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &persistConn{t: t, addr: addr, c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}, nil
}

// put returns a connection whose response was read to its end to the pool.
func (t *Transport) put(pc *persistConn) {
	pc.idleAt = time.Now()
	pc.reused, pc.gotByte = false, false
	t.mu.Lock()
	pool := t.idle[pc.addr]
	var drop *persistConn
	if len(pool) >= t.maxIdle {
		drop = pool[0] // the least recently used
		copy(pool, pool[1:])
		pool = pool[:len(pool)-1]
	}
	t.idle[pc.addr] = append(pool, pc)
	if t.pruner == nil {
		t.pruner = time.AfterFunc(t.idleTimeout, t.prune)
	}
	t.mu.Unlock()
	if drop != nil {
		drop.c.Close()
	}
}

// prune closes connections idle for longer than idleTimeout, and runs again
// while any connection is idle.
func (t *Transport) prune() {
	var old []*persistConn
	t.mu.Lock()
	n := 0
	for addr, pool := range t.idle {
		i := 0
		for i < len(pool) && time.Since(pool[i].idleAt) >= t.idleTimeout {
			old = append(old, pool[i])
			i++
		}
		pool = append(pool[:0], pool[i:]...)
		t.idle[addr] = pool
		n += len(pool)
	}
	t.pruner = nil
	if n > 0 {
		t.pruner = time.AfterFunc(t.idleTimeout, t.prune)
	}
	t.mu.Unlock()
	for _, pc := range old {
		pc.c.Close()
	}
}

// CloseIdleConnections closes every idle connection, of both transports.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	var all []*persistConn
	for addr, pool := range t.idle {
		all = append(all, pool...)
		delete(t.idle, addr)
	}
	if t.pruner != nil {
		t.pruner.Stop()
		t.pruner = nil
	}
	t.mu.Unlock()
	for _, pc := range all {
		pc.c.Close()
	}
	t.fallback.CloseIdleConnections()
}

// persistConn is one upstream connection of an Transport.
type persistConn struct {
	t      *Transport
	addr   string
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// deadline is the read deadline last set by the exchanges (cut, which
	// runs elsewhere, leaves it: a cut connection is not used again).
	deadline time.Time

	reused  bool        // taken from the pool for this request
	gotByte bool        // some of the response has arrived
	stop    func() bool // stops watching the request's context; nil: not watched
}

// open reports whether an idle connection can carry a request: the
// upstream has not closed it (or sent anything unasked, which leaves it
// unusable too). It peeks without blocking, one syscall.
func (pc *persistConn) open() bool {
	if pc.br.Buffered() > 0 {
		return false
	}
	pc.setReadDeadline(time.Time{}) // the last exchange's may have passed
	sc, ok := pc.c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true // never wait for readiness
	})
	return err == nil && alive
}

func (pc *persistConn) close() { pc.c.Close() }

// setReadDeadline sets the connection's read deadline and remembers it.
func (pc *persistConn) setReadDeadline(t time.Time) {
	pc.c.SetReadDeadline(t)
	pc.deadline = t
}

// aLongTimeAgo is a deadline that has passed: set, it ends a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// watchAfter is how long an exchange waits for its upstream before it
// watches its context. Until then the route's deadline and the response
// header timeout bound it as read deadlines, and a client that leaves is
// noticed when the answer is written to it: an upstream that answers
// within watchAfter costs no context registration, no timer and no
// second deadline. After it (or at once for a body still to come) the
// context is watched as http.Transport watches it, and a client that left
// closes the upstream connection.
const watchAfter = 50 * time.Millisecond

// roundTrip writes x's head and reads the response head. On success the
// response's body owns the connection.
func (pc *persistConn) roundTrip(ctx context.Context, req *http.Request, x Exchange, respTimeout time.Duration) (*http.Response, error) {
	now := time.Now()
	bodyBy, _ := ctx.Deadline() // zero: none
	headBy := bodyBy
	if respTimeout > 0 && (headBy.IsZero() || now.Add(respTimeout).Before(headBy)) {
		headBy = now.Add(respTimeout)
	}
	watchBy := now.Add(watchAfter)
	if !headBy.IsZero() && headBy.Before(watchBy) {
		watchBy = headBy
	}
	// A deadline that only starts the watch may come early: the one a
	// previous exchange set is kept when it falls within watchAfter/32
	// before watchBy, which spares most exchanges on a busy connection a
	// runtime timer update.
	if watchBy.Equal(headBy) || pc.deadline.After(watchBy) || watchBy.Sub(pc.deadline) > watchAfter/32 {
		pc.setReadDeadline(watchBy)
	}
	fail := func(err error) (*http.Response, error) {
		pc.unwatch()
		return nil, err
	}
	if err := x.WriteHead(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	var (
		resp *http.Response
		r    *response // resp, read by readCommonResponse
	)
	for {
		if _, err := pc.br.Peek(1); err != nil {
			if pc.stop == nil && IsTimeout(err) && !watchBy.Equal(headBy) {
				// No answer within watchAfter: wait on, watching ctx.
				pc.watch(ctx, headBy)
				continue
			}
			return fail(err)
		}
		pc.gotByte = true
		if pc.stop == nil && !headBuffered(pc.br) {
			// The rest of the head may take longer than watchAfter.
			pc.watch(ctx, headBy)
		}
		var dst http.Header
		if hx, ok := x.(HeaderExchange); ok {
			dst = hx.ResponseHeader()
		}
		if r = readCommonResponse(pc.br, req, dst); r != nil {
			resp = &r.Response
			break
		}
		var err error
		if resp, err = http.ReadResponse(pc.br, req); err != nil {
			return fail(err)
		}
		if resp.StatusCode >= 200 {
			break
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errors.New("h1: upstream switched protocols on a request that asked for no upgrade"))
		}
		// An interim response (100, 103): passed on, as ReverseProxy
		// forwards them with http.Transport.
		if err := x.Interim(resp.StatusCode, resp.Header); err != nil {
			return fail(err)
		}
	}
	var b *body
	if r != nil {
		b = &r.body
		b.pc, b.keep = pc, !resp.Close
	} else {
		b = &body{pc: pc, rc: resp.Body, keep: !resp.Close}
	}
	if resp.Body == http.NoBody {
		b.finish(true)
		return resp, nil
	}
	if resp.ContentLength < 0 || int64(pc.br.Buffered()) < resp.ContentLength {
		// Body still to come: bounded by the route's deadline alone, and
		// cut if the client leaves. (A body already in the buffer needs
		// neither: no more reads. The connection's read deadline is set
		// again before its next use.)
		pc.watch(ctx, bodyBy)
	}
	resp.Body = b
	return resp, nil
}

// watch bounds the connection's reads by until (zero: no bound) and cuts
// them when ctx ends.
func (pc *persistConn) watch(ctx context.Context, until time.Time) {
	pc.setReadDeadline(until)
	if pc.stop == nil {
		pc.stop = context.AfterFunc(ctx, pc.cut)
	} else if ctx.Err() != nil {
		pc.cut() // ctx ended before the deadline above was set: it won
	}
}

// cut ends the connection's blocked and future reads and writes.
func (pc *persistConn) cut() { pc.c.SetDeadline(aLongTimeAgo) }

// unwatch stops watching the context and reports whether the connection
// is untouched by it: false if ctx ended and cut it.
func (pc *persistConn) unwatch() bool {
	if pc.stop == nil {
		return true
	}
	ok := pc.stop()
	pc.stop = nil
	return ok
}

// headBuffered reports whether a whole response head is in br's buffer.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, crlfcrlf)
}

var crlfcrlf = []byte("\r\n\r\n")

// IsTimeout reports whether err is a net.Error that timed out: a read
// deadline (the response header timeout, the route's deadline) or a dial
// timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// WriteRequestHead writes req's request line and header block, as
// http.Request.Write would for a request without a body: Host from
// req.Host (or the URL), no default User-Agent (an empty one is left out),
// Content-Length: 0 for methods that usually carry a body.
func WriteRequestHead(w *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	uri := req.URL.RequestURI()
	if !httpsyntax.Token(req.Method) || strings.ContainsAny(uri, " \r\n") || strings.ContainsAny(host, " \r\n") {
		return fmt.Errorf("h1: invalid request line %q %q host %q", req.Method, uri, host)
	}
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		WriteHeaderLine(w, "User-Agent", ua[0])
	}
	switch req.Method {
	case "POST", "PUT", "PATCH":
		w.WriteString("Content-Length: 0\r\n")
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vs {
			WriteHeaderLine(w, k, v)
		}
	}
	_, err := w.WriteString("\r\n")
	return err
}

// WriteHeaderLine writes one field line, with any CR or LF in the value
// turned into a space, as net/http does.
func WriteHeaderLine(w *bufio.Writer, k, v string) {
	w.WriteString(k)
	w.WriteString(": ")
	WriteHeaderValue(w, v)
	w.WriteString("\r\n")
}

// body is a response body that gives its connection back to the pool
// once read to its end, and closes it if closed before.
type body struct {
	pc   *persistConn
	rc   io.ReadCloser // http.ReadResponse's body; nil: lr
	lr   lengthReader  // the body of a head readCommonResponse read
	keep bool          // the upstream did not ask to close
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	var (
		n   int
		err error
	)
	if b.rc != nil {
		n, err = b.rc.Read(p)
	} else {
		n, err = b.lr.Read(p)
	}
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish ends the response: its connection goes back to the pool if it was
// read to its end, the upstream keeps it open and no cancellation touched
// it; otherwise it is closed.
func (b *body) finish(atEOF bool) {
	b.done = true
	if b.pc.unwatch() && atEOF && b.keep {
		b.pc.t.put(b.pc)
		return
	}
	b.pc.close()
}

// WriteHeaderValue writes a field value with any CR or LF turned into a
// space, as WriteHeaderLine does.
func WriteHeaderValue(w *bufio.Writer, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	w.WriteString(v)
}

// CanonicalAddr is host:port as the transport dials it, default port
// filled in: the key of its idle pool.
func CanonicalAddr(u *url.URL) string {
	port := u.Port()
	if port != "" && !strings.Contains(u.Host, "%") {
		return u.Host // host:port or [v6]:port already: no need to build it again
	}
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}
