package overload

import (
	"bufio"
	"bytes"
	"net"
	"sync"
	"syscall"
	"time"

	"sluice/internal/httpsyntax"
)

const (
	// parkIdle is how long a parked connection may wait for its next
	// request before it is closed.
	parkIdle = 5 * time.Second
	// parkHeadBytes bounds a request head read on a parked connection
	// (and the buffer each one holds); a longer head gets the refusal
	// with Connection: close.
	parkHeadBytes = 4 << 10
	// parkFactor bounds the parked connections: at most this many times
	// server.max_connections.
	parkFactor = 4
)

// A parked connection is one refused for server.max_connections that is
// kept open and answered: each request on it gets the refusal over
// keep-alive, so that a client that would redial at once after a close
// (and be refused again, and redial: work for both ends that helps
// no one) reuses it instead. At a request boundary where the count of
// served connections is under the limit again, the connection is
// promoted: handed to the server with the request it just sent, which
// is served. A request whose framing a parked connection does not follow
// (a body, an upgrade, HTTP/1.0, Connection: close, a head over 4 KiB)
// gets the refusal with Connection: close, and the connection ends as an
// unparked refusal does.
//
// At most four times server.max_connections are parked; past that a
// refused connection gets the refusal with Connection: close at once. A
// parked connection costs a goroutine, and a 4 KiB buffer only while it
// reads a request, a fraction of a served one: a client pool several times the limit is held without
// churn, and the bound still holds the descriptors.
type parkSet struct {
	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

// add parks c, or reports that limit connections are parked already.
func (s *parkSet) add(c net.Conn, limit int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int64(len(s.conns)) >= limit {
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *parkSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *parkSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// closeAll ends every parked connection: their reads return at once.
func (s *parkSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.SetDeadline(time.Now())
	}
}

// park answers c's requests with the keep-alive refusal until it is
// promoted, goes idle, or sends a request it does not follow. Between
// requests it holds no buffer: it waits for c to be readable, then
// reads the head into one from a pool, and gives it back once nothing
// of c's is left in it.
func (l *capListener) park(c net.Conn) {
	m := l.m
	defer m.parked.remove(c)
	var br *bufio.Reader
	defer func() {
		if br != nil {
			br.Reset(nil)
			headBufs.Put(br)
		}
	}()
	for {
		_ = c.SetReadDeadline(time.Now().Add(parkIdle))
		if br == nil {
			if err := waitReadable(c); err != nil {
				_ = c.Close() // idle, closed, or the listener closed
				return
			}
			br = headBufs.Get().(*bufio.Reader)
			br.Reset(c)
		}
		n, keep, head := nextHead(br)
		if n == 0 {
			// Idle or closed with nothing sent: closed as an idle
			// keep-alive connection is. Part of a head, too long or
			// malformed: the refusal, with Connection: close.
			if br.Buffered() == 0 {
				_ = c.Close()
				return
			}
			l.refuseParked(c)
			return
		}
		if l.promote(c, br) {
			br = nil // the promoted connection reads through it
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(lingerFor))
		if !keep {
			l.refuseParked(c)
			return
		}
		answer := l.keepAlive
		if head {
			answer = answer[:bytes.Index(answer, crlfcrlf)+4] // the head of it
		}
		// Counted before it is written, as refuseParked counts: a client
		// that has read the answer finds it in the counts.
		m.parkedRefused.Add(1)
		if _, err := c.Write(answer); err != nil {
			_ = c.Close()
			return
		}
		_, _ = br.Discard(n)
		if br.Buffered() == 0 {
			br.Reset(nil)
			headBufs.Put(br)
			br = nil
		}
	}
}

// headBufs are the buffers parked connections read request heads into.
var headBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, parkHeadBytes) }}

// waitReadable blocks until c has input (or has ended), its read deadline
// passes, or it is closed, without a buffer to read into. A connection
// without a raw descriptor returns at once: its reads then wait.
func waitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	// f peeks at one byte without waiting: the poller calls it again
	// once the descriptor is readable, and only readiness after the
	// first call wakes it (a readiness seen before is reset).
	var one [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN && err != syscall.EINTR
	})
}

// refuseParked answers a parked connection's request with the refusal and
// Connection: close, and ends it as a refusal that was never parked ends.
func (l *capListener) refuseParked(c net.Conn) {
	l.m.parkedRefused.Add(1)
	l.m.lingering.refuse(c, l.refusal)
}

// promote hands c, with what br holds of it, to Accept if the limit has
// room now and Accept can be woken.
func (l *capListener) promote(c net.Conn, br *bufio.Reader) bool {
	if l.wake == nil || !l.m.openConn() {
		return false
	}
	_ = c.SetDeadline(time.Time{})
	pc := &countedConn{Conn: &bufferedConn{Conn: c, br: br}, m: l.m}
	l.mu.Lock()
	ok := !l.closed
	if ok {
		select {
		case l.promoted <- pc:
		default:
			ok = false // Accept is that far behind: stay parked
		}
	}
	l.mu.Unlock()
	if !ok {
		l.m.connsOpen.Add(-1)
		return false
	}
	// Accept may be blocked in the kernel: a deadline in the past makes
	// it return, and it takes the promoted connection before accepting
	// again (see Accept).
	_ = l.wake.SetDeadline(time.Now())
	return true
}

// nextHead waits for the next complete request head in br and returns its
// length; whether the request can be answered over keep-alive (an
// HTTP/1.1 request without a body, upgrade or Connection: close); and
// whether it is a HEAD request, whose answer has no body. It returns 0
// when the connection ends or idles out first, or the head is longer than
// br's buffer.
func nextHead(br *bufio.Reader) (n int, keep, head bool) {
	for {
		b, _ := br.Peek(br.Buffered())
		if end := bytes.Index(b, crlfcrlf); end >= 0 {
			return end + 4, keepAliveHead(b[:end+2]), bytes.HasPrefix(b, []byte("HEAD "))
		}
		if br.Buffered() == br.Size() {
			return 0, false, false
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil { // waits for more
			return 0, false, false
		}
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// keepAliveHead reports whether the request head h (its lines, each
// ending in CRLF) is one a parked connection can answer and read past:
// HTTP/1.1, not CONNECT, and no header that frames a body, switches
// protocols or asks to close. Anything in doubt is not.
func keepAliveHead(h []byte) bool {
	line, rest, _ := bytes.Cut(h, []byte("\r\n"))
	if !bytes.HasSuffix(line, []byte(" HTTP/1.1")) || bytes.HasPrefix(line, []byte("CONNECT ")) {
		return false
	}
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !httpsyntax.Token(name) {
			return false
		}
		switch {
		case httpsyntax.EqualFold(name, "content-length"):
			if string(httpsyntax.TrimOWS(value)) != "0" {
				return false
			}
		case httpsyntax.EqualFold(name, "transfer-encoding"), httpsyntax.EqualFold(name, "upgrade"),
			httpsyntax.EqualFold(name, "expect"):
			return false
		case httpsyntax.EqualFold(name, "connection"):
			if httpsyntax.HasElement(value, "close") {
				return false
			}
		}
	}
	return true
}

// bufferedConn is a connection whose first bytes were read into br.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// NetConn returns the connection beneath.
func (c *bufferedConn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection beneath.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
