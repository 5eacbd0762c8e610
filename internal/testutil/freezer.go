package testutil

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Freezer is a TCP relay on loopback in front of a server. Frozen, it keeps
// every connection open and reads what clients send, but passes nothing on
// either way: the server looks up at the TCP level and never answers.
type Freezer struct {
	Addr   string
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

// StartFreezer relays connections on a free loopback port to target until
// the test ends.
func StartFreezer(t testing.TB, target string) *Freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Freezer{Addr: ln.Addr().String()}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			wg.Go(func() { f.pipe(up, c) })
			wg.Go(func() { f.pipe(c, up) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	return f
}

// pipe copies src to dst, dropping what arrives while frozen.
func (f *Freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !f.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Freeze stops passing bytes on; Thaw passes them again. Bytes dropped while
// frozen are lost, so a client's connections from then are out of step with
// the server and it must open new ones after Thaw.
func (f *Freezer) Freeze() { f.frozen.Store(true) }

// Thaw passes bytes on again, and closes the connections that lost bytes
// while frozen, as a network that recovers resets them.
func (f *Freezer) Thaw() {
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.frozen.Store(false)
}
