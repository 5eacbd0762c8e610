package overload

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Listener wraps ln, a TCP listener of the proxy, so that every connection
// it accepts counts against server.max_connections (all wrapped listeners
// share the one count) until it is closed.
//
// A connection over the limit is accepted and refused at once, never left
// in the kernel's accept queue where a client would wait for nothing. On
// the plain HTTP/1 listener refusal is set: a whole 503 response with a
// "Connection: close" header line. The connection is parked (see
// parkSet): each of its requests is answered with the refusal without
// that line, until the limit has room and the connection is served.
// Past the parking bound, and for a request a parked connection does not
// follow, refusal is written as it is; then the connection is
// half-closed, its input drained for a moment and closed. The half-close
// is what makes the refusal clean: closing a socket with unread input
// (the request the client sent at once) sends a TCP RST, on which the
// client's kernel may discard the answer before the client reads it. On
// the TLS listener refusal is nil: an answer would cost a handshake, the
// work being refused, so the client sees the connection closed during
// its handshake.
func (m *Manager) Listener(ln net.Listener, refusal []byte) net.Listener {
	l := &capListener{Listener: ln, m: m, refusal: refusal}
	if keep := bytes.Replace(refusal, []byte("\r\nConnection: close\r\n"), []byte("\r\n"), 1); len(keep) < len(refusal) {
		l.keepAlive = keep
		if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
			l.wake, l.promoted = d, make(chan net.Conn, 16)
		}
	}
	return l
}

type capListener struct {
	net.Listener
	m         *Manager
	refusal   []byte
	keepAlive []byte // refusal without Connection: close; nil: nothing is parked

	// wake interrupts Accept for a promoted connection; nil: parked
	// connections are never promoted, only refused until they end.
	wake     interface{ SetDeadline(time.Time) error }
	promoted chan net.Conn // parked connections the limit has room for

	mu     sync.Mutex // guards closed against promotions
	closed bool
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		select {
		case c := <-l.promoted:
			return c, nil
		default:
		}
		c, err := l.Listener.Accept()
		if err != nil {
			// A promotion set a deadline in the past to get here: clear it
			// first, then take the connection at the top of the loop (a
			// promotion after the clear sets it again).
			var ne net.Error
			if l.wake != nil && errors.As(err, &ne) && ne.Timeout() {
				_ = l.wake.SetDeadline(time.Time{})
				continue
			}
			return nil, err
		}
		if l.m.openConn() {
			return &countedConn{Conn: c, m: l.m}, nil
		}
		l.m.connsRefused.Add(1)
		if l.keepAlive != nil && l.m.parked.add(c, parkFactor*l.m.maxConns.Load()) {
			go l.park(c)
			continue
		}
		l.m.lingering.refuse(c, l.refusal)
	}
}

// Close stops accepting and ends the refusals still lingering and the
// connections parked.
func (l *capListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	for len(l.promoted) > 0 {
		_ = (<-l.promoted).Close()
	}
	l.mu.Unlock()
	l.m.lingering.closeAll()
	l.m.parked.closeAll()
	return err
}

// openConn counts a new connection in, or reports that the limit is
// reached. Like Enter it holds the limit exactly.
func (m *Manager) openConn() bool {
	limit := m.maxConns.Load()
	if limit == 0 {
		m.connsOpen.Add(1)
		return true
	}
	for {
		n := m.connsOpen.Load()
		if n >= limit {
			return false
		}
		if m.connsOpen.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// countedConn is an accepted connection, counted open until its first
// Close.
type countedConn struct {
	net.Conn
	m      *Manager
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.m.connsOpen.Add(-1)
	}
	return c.Conn.Close()
}

// NetConn returns the connection beneath, as tls.Conn.NetConn does, for
// code that sets socket options on a hijacked connection (an injected
// reset sets SO_LINGER 0).
func (c *countedConn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection, as net/http does before closing
// one with unread input.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

const (
	// maxLingering bounds the refused connections drained at once; past
	// it a refused connection is closed at once (its client may then see
	// a reset instead of the answer), so that a connection flood cannot
	// hold more descriptors through the refusals than this.
	maxLingering = 256
	// lingerFor bounds how long a refused connection is drained: long
	// enough for a client on a LAN or the internet to read the answer and
	// close (net/http waits 500ms the same way), short enough that
	// refusals do not pile up.
	lingerFor = 500 * time.Millisecond
	// drainBytes bounds what is read from a refused connection.
	drainBytes = 64 << 10
)

// lingerSet holds the refused connections being drained, so that closing
// the listener ends them at once.
type lingerSet struct {
	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

// refuse writes refusal (if any) to c and closes it cleanly.
func (s *lingerSet) refuse(c net.Conn, refusal []byte) {
	s.mu.Lock()
	if len(s.conns) >= maxLingering {
		s.mu.Unlock()
		if refusal != nil {
			// Fits the socket's send buffer: the write does not block.
			_ = c.SetWriteDeadline(time.Now().Add(lingerFor))
			_, _ = c.Write(refusal)
		}
		_ = c.Close()
		return
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
		}()
		deadline := time.Now().Add(lingerFor)
		_ = c.SetDeadline(deadline)
		if refusal != nil {
			if _, err := c.Write(refusal); err != nil {
				return
			}
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		// Read until the client closes (it was told Connection: close),
		// the deadline passes, or closeAll ends it.
		_, _ = io.Copy(io.Discard, io.LimitReader(c, drainBytes))
	}()
}

// closeAll ends every lingering refusal: their reads return at once.
func (s *lingerSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.SetDeadline(time.Now())
	}
}

var (
	_ net.Listener = (*capListener)(nil)
	_ net.Conn     = (*countedConn)(nil)
)
