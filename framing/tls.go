package framing

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// tlsSplitListener completes each TLS handshake off the accept loop and
// hands net/http the *tls.Conn as it is when the client chose HTTP/2 (or
// another ALPN protocol: net/http needs the *tls.Conn for those), and a
// guarded connection for HTTP/1.
type tlsSplitListener struct {
	inner   net.Listener // a tls.NewListener
	g       *Guard
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

// TLSListener wraps inner, a tls.NewListener, so that each TLS handshake
// completes off the accept loop (bounded by handshakeTimeout, 0: 10 s) and
// connections that chose HTTP/1.1 are guarded. Closing it ends the
// handshakes under way.
func (g *Guard) TLSListener(inner net.Listener, handshakeTimeout time.Duration) net.Listener {
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
