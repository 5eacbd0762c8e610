package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"time"
)

// The floor role is a measuring stick, not a proxy: the least a Go program
// can do to pass this benchmark's requests through, so that the overhead
// table shows what Go's goroutine-per-connection runtime (scheduler,
// netpoller, syscalls) costs on this machine before any HTTP work. Each
// client connection gets one goroutine and one upstream connection of its
// own, dialled at its first request; request heads go to the upstream
// byte for byte, and each answer comes back in one write. It frames
// messages and nothing more: GET requests without a body only, answers
// with a Content-Length only, no header rewriting, no pooling, no
// features. Anything else closes both connections.
//
// With work, each request also costs that much CPU in the floor: a busy
// wait of half of it before the request goes upstream and half before the
// answer goes back, where a proxy parses and decides. The harness runs the
// floor with several amounts of work to show how the closed loop's p99
// answers CPU per request on this machine (the "Go floor + work" table):
// the curve a proxy's own work per request puts it on.

const (
	floorRow    = "Go floor: minimal forwarder" // its row in the overhead table
	floorMaxBuf = 1 << 20                       // a larger message closes the connection
)

func runFloorRole(listen, target string, life, work time.Duration) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	if u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("target %q: want http://host:port", target)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	defer endRole(ln, life, func() { ln.Close() })()
	serveFloor(ln, u.Host, life, work)
	return nil
}

// serveFloor forwards each connection ln accepts to upstream until ln is
// closed, with work of CPU per request. A connection lasts at most life.
func serveFloor(ln net.Listener, upstream string, life, work time.Duration) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed: stdin gone or life over
		}
		go floorConn(c, upstream, life, work)
	}
}

// busyWork keeps the CPU busy for d: what a proxy spends on a request's
// parsing, routing and bookkeeping, without touching memory.
func busyWork(d time.Duration) {
	if d <= 0 {
		return
	}
	start := time.Now()
	x := uint64(d)
	for time.Since(start) < d {
		for range 64 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	workSink.Store(x)
}

var workSink atomic.Uint64 // keeps busyWork's loop from being optimised away

// floorConn forwards one client connection's requests, one at a time,
// over its own upstream connection; any error closes both.
func floorConn(c net.Conn, upstream string, life, work time.Duration) {
	defer c.Close()
	deadline := time.Now().Add(life)
	c.SetDeadline(deadline)
	var up net.Conn
	defer func() {
		if up != nil {
			up.Close()
		}
	}()
	in := floorBuf{b: make([]byte, 4096)}  // from the client: pipelined heads stay here
	out := floorBuf{b: make([]byte, 4096)} // from the upstream: one answer at a time
	for {
		n, err := in.head(c)
		if err != nil {
			return
		}
		head := in.b[:n]
		if l, ok := contentLength(head); !ok || l > 0 || !bytes.HasPrefix(head, []byte("GET ")) {
			return
		}
		busyWork(work / 2)
		if up == nil {
			if up, err = net.DialTimeout("tcp", upstream, 2*time.Second); err != nil {
				return
			}
			up.SetDeadline(deadline)
		}
		if _, err := up.Write(head); err != nil {
			return
		}
		in.drop(n)
		h, err := out.head(up)
		if err != nil {
			return
		}
		l, ok := contentLength(out.b[:h])
		if !ok || l < 0 || out.fill(up, h+l) != nil {
			return
		}
		busyWork(work - work/2)
		if _, err := c.Write(out.b[:h+l]); err != nil {
			return
		}
		out.drop(h + l)
	}
}

// floorBuf is a connection's read buffer: b[:n] is read and not yet used.
type floorBuf struct {
	b []byte
	n int
}

// head reads from r until the buffer starts with a whole head (up to and
// including the blank line), and returns the head's length.
func (f *floorBuf) head(r io.Reader) (int, error) {
	from := 0
	for {
		if i := bytes.Index(f.b[from:f.n], []byte("\r\n\r\n")); i >= 0 {
			return from + i + 4, nil
		}
		from = max(0, f.n-3)
		if err := f.fill(r, f.n+1); err != nil {
			return 0, err
		}
	}
}

// fill reads from r until the buffer holds at least k bytes, growing it
// if it is too small.
func (f *floorBuf) fill(r io.Reader, k int) error {
	if k > floorMaxBuf {
		return errors.New("floor: message too large")
	}
	for len(f.b) < k {
		f.b = append(f.b, make([]byte, len(f.b))...)
	}
	for f.n < k {
		m, err := r.Read(f.b[f.n:])
		f.n += m
		if err != nil && f.n < k {
			return err
		}
	}
	return nil
}

// drop discards the first k bytes, keeping what follows them.
func (f *floorBuf) drop(k int) { f.n = copy(f.b, f.b[k:f.n]) }

// contentLength reads a head's framing: its Content-Length, or -1 if it has
// none. ok is false if it has Transfer-Encoding or a malformed length.
func contentLength(head []byte) (length int, ok bool) {
	length = -1
	_, rest, _ := bytes.Cut(head, []byte("\r\n")) // skip the request or status line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, _ := bytes.Cut(line, []byte(":"))
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, false
		case bytes.EqualFold(name, []byte("Content-Length")):
			value = bytes.TrimSpace(value)
			if len(value) == 0 || len(value) > 9 {
				return 0, false
			}
			length = 0
			for _, d := range value {
				if d < '0' || d > '9' {
					return 0, false
				}
				length = 10*length + int(d-'0')
			}
		}
	}
	return length, true
}
