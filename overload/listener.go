package overload

import (
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
// in the kernel's accept queue where a client would wait for nothing: if
// refusal is set (the plain HTTP/1 listener: a whole 503 response) it is
// written first; then the connection is half-closed, its input drained
// for a moment and closed. The half-close is what makes the refusal
// clean: closing a socket with unread input (the request the client sent
// at once) sends a TCP RST, on which the client's kernel may discard the
// answer before the client reads it. On the TLS listener refusal is nil:
// an answer would cost a handshake, the work being refused, so the
// client sees the connection closed during its handshake.
func (m *Manager) Listener(ln net.Listener, refusal []byte) net.Listener {
	return &capListener{Listener: ln, m: m, refusal: refusal}
}

type capListener struct {
	net.Listener
	m       *Manager
	refusal []byte
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.m.openConn() {
			return &countedConn{Conn: c, m: l.m}, nil
		}
		l.m.connsRefused.Add(1)
		l.m.lingering.refuse(c, l.refusal)
	}
}

// Close stops accepting and ends the refusals still lingering.
func (l *capListener) Close() error {
	err := l.Listener.Close()
	l.m.lingering.closeAll()
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
