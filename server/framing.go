package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP/1 message framing guard.
//
// A request with both Content-Length and Transfer-Encoding is the classic
// request-smuggling vector (RFC 9112 §6.1, §11.2): two parties that frame
// it differently disagree on where the next request starts. net/http frames
// such a request by Transfer-Encoding and deletes Content-Length before any
// handler sees it, so the handler cannot refuse it. The guard sits between
// the connection and net/http: it follows the framing of each request on an
// HTTP/1 connection (request line, header block, Content-Length body) and,
// at a request that carries both headers, hands net/http a malformed
// request line in its place and then end of stream. net/http answers that
// with 400 Bad Request and closes the connection; the requests before it on
// the connection are answered as usual, nothing after it is read.
//
// The guard holds back the bytes of a header block until the block is
// complete, so net/http never sees part of a request the guard has not
// judged; body bytes pass as they come. It stops following (passes
// everything) after a request with Transfer-Encoding, since sluice closes
// the connection after a chunked HTTP/1 request anyway (and net/http
// refuses other transfer codings); after an Upgrade request, since the
// bytes that follow a 101 are another protocol (the handler closes the
// connection when the upgrade is refused: see upgradeCloser); at an HTTP/2
// preface; and at a header block longer than net/http accepts, which it
// refuses with 431.

// framingPoison is what net/http reads in place of a conflicting request:
// a request line without method, target and version, which it answers
// with 400 Bad Request and a close.
const framingPoison = "Content-Length-with-Transfer-Encoding\r\n\r\n"

// framingGuard wraps listeners with the guard and counts what it refused.
type framingGuard struct {
	maxHead  int // longest header block followed; net/http refuses longer ones
	rejected atomic.Uint64
	onReject func(remote net.Addr) // logs a refusal; may be nil
}

func newFramingGuard(maxHeaderBytes int, onReject func(net.Addr)) *framingGuard {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	// net/http reads up to MaxHeaderBytes plus 4096 bytes of slack.
	return &framingGuard{maxHead: maxHeaderBytes + 4096, onReject: onReject}
}

// listener wraps ln (plain TCP) so that every connection is guarded.
func (g *framingGuard) listener(ln net.Listener) net.Listener { return &guardedListener{ln, g} }

type guardedListener struct {
	net.Listener
	g *framingGuard
}

func (l *guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.g.wrap(c), nil
}

func (g *framingGuard) wrap(c net.Conn) *guardedConn {
	return &guardedConn{Conn: c, g: g, buf: make([]byte, 0, 4096)}
}

// guardState is where a guarded connection is in its byte stream.
type guardState uint8

const (
	inHead   guardState = iota // a header block, held back until complete
	inBody                     // a Content-Length body: body bytes to pass
	passing                    // no longer followed: everything passes
	poisoned                   // the poison is handed out, then end of stream
)

// guardedConn is a connection whose reads pass through the framing guard.
// net/http reads a connection from one goroutine at a time (its background
// read runs only between requests), so Read needs no lock.
type guardedConn struct {
	net.Conn
	g *framingGuard

	buf   []byte // read from Conn, not yet handed out: buf[off:]
	off   int
	clear int // buf[off:clear] may be handed out
	state guardState
	body  int64 // inBody: body bytes still to pass
	err   error // from Conn, returned once what may be handed out is
}

// guardedTLSConn is a guarded TLS connection. Its ConnectionState makes
// net/http set Request.TLS, as it does for any connection with that method
// (so a plain guardedConn must not have it).
type guardedTLSConn struct {
	*guardedConn
	tc *tls.Conn
}

func (c guardedTLSConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

func (c *guardedConn) Read(p []byte) (int, error) {
	for {
		if c.clear > c.off {
			n := copy(p, c.buf[c.off:c.clear])
			c.off += n
			return n, nil
		}
		if c.state == poisoned {
			return 0, c.discard()
		}
		if err := c.err; err != nil {
			// Returned once: a deadline (net/http sets one in the past to
			// stop its background read, and clears it) is no end of stream.
			c.err = nil
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				c.clear = len(c.buf) // an unfinished header block: net/http judges it
				c.state = passing
			}
			if c.clear > c.off {
				c.err = err
				continue
			}
			return 0, err
		}
		if c.off == len(c.buf) && (c.state == passing || c.state == inBody) {
			return c.readDirect(p)
		}
		c.fill()
		c.advance()
	}
}

// readDirect reads into p itself when nothing is buffered and the bytes
// need no judging (a body, or a connection no longer followed): a large
// upload then takes reads of the caller's size, not of the guard's buffer.
func (c *guardedConn) readDirect(p []byte) (int, error) {
	c.buf, c.off, c.clear = c.buf[:0], 0, 0
	if c.state == passing {
		return c.Conn.Read(p)
	}
	if int64(len(p)) > c.body {
		p = p[:c.body]
	}
	n, err := c.Conn.Read(p)
	if c.body -= int64(n); c.body == 0 {
		c.state = inHead
	}
	return n, err
}

// discard reads and drops what the client sends after the poison until
// the connection fails or is closed (net/http closes it once it has
// answered the poison). It does not report end of stream: net/http, which
// may hold the poison in its buffer while it answers an earlier request,
// would take that for the client leaving and cancel that request.
func (c *guardedConn) discard() error {
	c.buf, c.off, c.clear = c.buf[:cap(c.buf)], 0, 0
	for {
		if _, err := c.Conn.Read(c.buf); err != nil {
			c.buf = c.buf[:0]
			return err
		}
	}
}

// fill reads more from the connection into buf, compacting it first.
func (c *guardedConn) fill() {
	if c.off > 0 {
		n := copy(c.buf, c.buf[c.off:])
		c.buf = c.buf[:n]
		c.clear -= c.off
		c.off = 0
	}
	if len(c.buf) == cap(c.buf) {
		c.buf = append(c.buf, make([]byte, cap(c.buf))...)[:len(c.buf)]
	}
	n, err := c.Conn.Read(c.buf[len(c.buf):cap(c.buf)])
	c.buf = c.buf[:len(c.buf)+n]
	if err != nil {
		c.err = err
	}
}

// advance clears what the framing allows of buf[clear:].
func (c *guardedConn) advance() {
	for c.clear < len(c.buf) {
		switch c.state {
		case passing:
			c.clear = len(c.buf)
		case inBody:
			k := min(c.body, int64(len(c.buf)-c.clear))
			c.clear += int(k)
			if c.body -= k; c.body == 0 {
				c.state = inHead
			}
		case inHead:
			head := c.buf[c.clear:]
			end := headEnd(head)
			if end < 0 {
				if len(head) > c.g.maxHead {
					c.state = passing // net/http refuses it (431)
					continue
				}
				return // wait for the rest of the block
			}
			if end > c.g.maxHead {
				c.state = passing // net/http refuses it (431)
				continue
			}
			c.judge(head[:end])
		case poisoned:
			return
		}
	}
}

// judge decides what follows the complete header block head, which starts
// at buf[clear:].
func (c *guardedConn) judge(head []byte) {
	f := scanHead(head)
	switch {
	case f.te && f.cl:
		// Replace the block and everything after it with the poison.
		c.buf = append(c.buf[:c.clear], framingPoison...)
		c.clear = len(c.buf)
		c.state = poisoned
		c.g.rejected.Add(1)
		if c.g.onReject != nil {
			c.g.onReject(c.RemoteAddr())
		}
		return
	case f.te, f.upgrade, f.h2, f.badCL:
		c.state = passing
	case f.length > 0:
		c.state, c.body = inBody, f.length
	}
	c.clear += len(head)
}

// headEnd is the length of the header block at the start of b, through its
// empty line, or -1 if b does not hold all of it. Lines end in LF, with or
// without CR, as net/http reads them. An empty request line ends the block
// at once (net/http refuses it).
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		line := b[i : i+j]
		i += j + 1
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			return i
		}
	}
}

// headFacts is what the guard needs to know of a header block.
type headFacts struct {
	cl, te, upgrade, h2, badCL bool
	length                     int64
}

// scanHead reads a complete header block. Header names are matched as
// net/http matches them (case-insensitively, no space before the colon: a
// name with one is refused by net/http).
func scanHead(head []byte) headFacts {
	var f headFacts
	line, rest, _ := bytes.Cut(head, []byte("\n"))
	if bytes.HasSuffix(bytes.TrimRight(line, "\r"), []byte(" HTTP/2.0")) {
		f.h2 = true // the HTTP/2 preface (PRI * HTTP/2.0)
		return f
	}
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimRight(line, "\r")
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseUint(string(bytes.Trim(value, " \t")), 10, 63)
			if f.cl && int64(n) != f.length || err != nil {
				f.badCL = true // net/http refuses it
			}
			f.cl, f.length = true, int64(n)
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			f.te = true
		case bytes.EqualFold(name, []byte("Upgrade")):
			f.upgrade = true
		}
	}
	return f
}

// upgradeCloser closes the connection after the response to an HTTP/1
// Upgrade request that was not switched (anything but 101): the framing
// guard stopped following that connection at the Upgrade request.
type upgradeCloser struct {
	http.ResponseWriter
	wrote bool
}

func (u *upgradeCloser) WriteHeader(code int) {
	if !u.wrote && code != http.StatusSwitchingProtocols && code >= 200 {
		u.wrote = true
		u.Header().Set("Connection", "close")
	}
	u.ResponseWriter.WriteHeader(code)
}

func (u *upgradeCloser) Write(b []byte) (int, error) {
	if !u.wrote {
		u.WriteHeader(http.StatusOK)
	}
	return u.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (ReverseProxy's way to flush and to
// hijack for a 101) reach the connection.
func (u *upgradeCloser) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func (u *upgradeCloser) Flush() { http.NewResponseController(u.ResponseWriter).Flush() }

func (u *upgradeCloser) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(u.ResponseWriter).Hijack()
}

// closeRefusedUpgrades wraps h so that an HTTP/1 Upgrade request that is
// not switched closes its connection.
func closeRefusedUpgrades(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 && r.Header.Get("Upgrade") != "" {
			w = &upgradeCloser{ResponseWriter: w}
		}
		h.ServeHTTP(w, r)
	})
}

// tlsSplitListener completes each TLS handshake off the accept loop and
// hands net/http the *tls.Conn as it is when the client chose HTTP/2 (or
// another ALPN protocol: net/http needs the *tls.Conn for those), and a
// guarded connection for HTTP/1.
type tlsSplitListener struct {
	inner   net.Listener // a tls.NewListener
	g       *framingGuard
	timeout time.Duration // per handshake

	conns  chan net.Conn
	ctx    context.Context // canceled by Close: handshakes under way end
	cancel context.CancelFunc

	mu  sync.Mutex // guards err
	err error      // why the accept loop ended
}

var (
	_ net.Listener = (*tlsSplitListener)(nil)
	_ net.Listener = (*guardedListener)(nil)
	_ net.Conn     = (*guardedConn)(nil)
)

func (g *framingGuard) tlsListener(inner net.Listener, handshakeTimeout time.Duration) net.Listener {
	if handshakeTimeout <= 0 {
		handshakeTimeout = 10 * time.Second
	}
	l := &tlsSplitListener{inner: inner, g: g, timeout: handshakeTimeout, conns: make(chan net.Conn)}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.acceptLoop()
	return l
}

func (l *tlsSplitListener) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err == nil {
			backoff = 0
			go l.handshake(c.(*tls.Conn))
			continue
		}
		if errors.Is(err, net.ErrClosed) || l.ctx.Err() != nil {
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			l.cancel()
			return
		}
		// Out of file descriptors and the like: retry as net/http does.
		backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
		select {
		case <-time.After(backoff):
		case <-l.ctx.Done():
		}
	}
}

func (l *tlsSplitListener) handshake(tc *tls.Conn) {
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	var c net.Conn = tc
	// A failed handshake goes to net/http as it is: Handshake returns the
	// same error there, and net/http answers a plaintext request with 400.
	if p := tc.ConnectionState().NegotiatedProtocol; err == nil && (p == "" || p == "http/1.1") {
		c = guardedTLSConn{l.g.wrap(tc), tc}
	}
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		c.Close()
	}
}

func (l *tlsSplitListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.err != nil && !errors.Is(l.err, net.ErrClosed) {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting; handshakes under way end with their connections
// closed.
func (l *tlsSplitListener) Close() error {
	l.cancel()
	return l.inner.Close()
}

func (l *tlsSplitListener) Addr() net.Addr { return l.inner.Addr() }
