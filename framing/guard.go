package framing

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
)

// poison is what net/http reads in place of a conflicting request:
// a request line without method, target and version, which it answers
// with 400 Bad Request and a close.
const poison = "Content-Length-with-Transfer-Encoding\r\n\r\n"

// Guard wraps a net/http server's listeners so that every HTTP/1
// connection is guarded (see the package documentation), and counts the
// requests it refused.
type Guard struct {
	maxHead  int // longest header block followed; net/http refuses longer ones
	rejected atomic.Uint64
	onReject func(remote net.Addr) // logs a refusal; may be nil
}

// NewGuard returns a guard for a server with the given MaxHeaderBytes (0:
// net/http's default). onReject, if not nil, is called with the client's
// address at each request refused for carrying both Content-Length and
// Transfer-Encoding; it runs on the connection's read path, so it must be
// quick (a log line).
func NewGuard(maxHeaderBytes int, onReject func(remote net.Addr)) *Guard {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	// net/http reads up to MaxHeaderBytes plus 4096 bytes of slack.
	return &Guard{maxHead: maxHeaderBytes + 4096, onReject: onReject}
}

// Rejected is the number of requests refused so far for carrying both
// Content-Length and Transfer-Encoding.
func (g *Guard) Rejected() uint64 { return g.rejected.Load() }

// Listener wraps ln, a plain TCP listener, so that every connection it
// accepts is guarded.
func (g *Guard) Listener(ln net.Listener) net.Listener { return &guardedListener{ln, g} }

// Conn guards one connection accepted elsewhere, from a request boundary
// on: the first byte its reads return starts a request line.
func (g *Guard) Conn(c net.Conn) net.Conn { return g.wrap(c) }

type guardedListener struct {
	net.Listener
	g *Guard
}

func (l *guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.g.wrap(c), nil
}

func (g *Guard) wrap(c net.Conn) *guardedConn {
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
	g *Guard

	buf   []byte // read from Conn, not yet handed out: buf[off:]
	off   int
	clear int // buf[off:clear] may be handed out
	state guardState
	body  int64 // inBody: body bytes still to pass
	err   error // from Conn, returned once what may be handed out is

	// seen tells Write (which may run alongside Read: net/http's
	// background read) what Read found: seenPoison, seenUpgrade.
	seen atomic.Uint32
}

// NetConn returns the connection beneath the guard, as tls.Conn.NetConn
// does, for code that must set socket options on a hijacked connection
// (an injected fault's reset sets SO_LINGER 0 on the TCP connection).
func (c *guardedConn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection, as net/http does on a bare TCP
// connection before it closes one with unread input (after a 431, or a
// request body it did not read): the client then reads the answer before
// the close resets the connection.
func (c *guardedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
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
		c.buf = append(c.buf[:c.clear], poison...)
		c.clear = len(c.buf)
		c.state = poisoned
		c.seen.Or(seenPoison)
		c.g.rejected.Add(1)
		if c.g.onReject != nil {
			c.g.onReject(c.RemoteAddr())
		}
		return
	case f.upgrade:
		c.state = passing
		c.seen.Or(seenUpgrade)
	case f.te, f.h2, f.badCL:
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
