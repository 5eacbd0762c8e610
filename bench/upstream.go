package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The synthetic upstreams and the plain httputil.ReverseProxy baseline run
// as child processes of the harness (the harness binary started again with
// -role), so that each has its own CPU and memory figures and none shares a
// garbage collector with the load generator.

// bodySize is the answer body of both upstreams: small, so the figures are
// about per-request cost rather than bandwidth.
const bodySize = 128

// upstreamHandler serves a fixed small body. With slots > 0 it is a service
// of limited capacity: at most slots requests are served at once, each for
// service time; the rest wait their turn in arrival order, as requests
// queue for a worker pool or in an accept backlog. A waiting request whose
// client (the proxy) gives up leaves the line, the friendliest case for a
// proxy that does not bound its queue.
//
// With plain, a worker just sleeps the service time, as a simple service
// does: a timer that wakes late costs it throughput, which it never pays
// back (the "plain upstream" of the saturated scenario). Otherwise it
// keeps its schedule, see slot.
func upstreamHandler(slots int, service time.Duration, plain bool) http.Handler {
	body := []byte(strings.Repeat("x", bodySize))
	hdr := []string{"text/plain"}
	// free holds the slots not in use; Go queues blocked receivers in FIFO
	// order, so it is the line too.
	var free chan *slot
	if slots > 0 {
		free = make(chan *slot, slots)
		for range slots {
			free <- &slot{}
		}
	}
	var mu sync.Mutex
	held := 0                   // slots taken away by the control endpoint
	var busy, peak atomic.Int64 // requests in service now; most at once since the last change
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The control endpoint (scenario (b): capacity changes mid-run):
		// POST /_bench/slots?n=N lowers the number of slots to N by taking
		// slots away for good: at once those that are free, the others as
		// soon as they free, in line with the waiting requests. Only
		// lowering is supported. GET answers "peak P": the most requests
		// in service at once since the last POST.
		if r.URL.Path == "/_bench/slots" && free != nil {
			if r.Method == http.MethodGet {
				fmt.Fprintf(w, "peak %d\n", peak.Load())
				return
			}
			n, err := strconv.Atoi(r.URL.Query().Get("n"))
			mu.Lock()
			defer mu.Unlock()
			if err != nil || n < 1 || n > slots-held {
				http.Error(w, "n must be between 1 and the current slots", http.StatusBadRequest)
				return
			}
			for ; slots-held > n; held++ {
				select {
				case <-free:
				default:
					go func() { <-free }()
				}
			}
			peak.Store(busy.Load())
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if free != nil {
			arrived := time.Now()
			var s *slot
			select {
			case s = <-free:
			case <-r.Context().Done():
				return
			}
			for b := busy.Add(1); ; {
				p := peak.Load()
				if b <= p || peak.CompareAndSwap(p, b) {
					break
				}
			}
			if plain {
				time.Sleep(service)
			} else {
				s.serve(arrived, service)
			}
			busy.Add(-1)
			free <- s
		}
		w.Header()["Content-Type"] = hdr
		w.Write(body)
	})
}

// slot is one of the capacity upstream's workers. It keeps its schedule,
// so that 20 ms is its mean service time: a timer wakes late by a quarter
// of a millisecond or more on a loaded machine, and a worker that slept the
// whole service time after each late wake served about 950 of its nominal
// 1 000 req/s. A request that waited for the slot starts when the previous
// one was due to end; one that found the slot free pays back the previous
// wake's lateness (at most half a service time) by a shorter service.
type slot struct {
	due  time.Time     // when the previous request's service was due to end
	late time.Duration // how late its timer woke, not yet paid back
}

// serve holds the slot for a request that arrived at arrived.
func (s *slot) serve(arrived time.Time, service time.Duration) {
	if s.due.After(arrived) {
		s.due = s.due.Add(service) // it waited: on schedule, lateness absorbed
	} else {
		s.due = arrived.Add(service - min(s.late, service/2))
	}
	time.Sleep(time.Until(s.due))
	s.late = max(time.Since(s.due), 0)
}

// endRole calls stop when stdin closes (the harness is gone or done with
// the role) or life passes, whichever is first, and prints ln's address,
// which the harness waits for. The function it returns stops the timer.
func endRole(ln net.Listener, life time.Duration, stop func()) func() bool {
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	t := time.AfterFunc(life, stop)
	fmt.Println(ln.Addr().String())
	return t.Stop
}

// serveRole runs a child role until its stdin closes (the harness is gone
// or done with it) or life passes, whichever is first: a child never
// outlives the run that started it.
func serveRole(ln net.Listener, h http.Handler, life time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 90 * time.Second}
	defer endRole(ln, life, func() { srv.Close() })()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func runUpstreamRole(listen string, slots int, service time.Duration, plain bool, life time.Duration) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if slots == 0 {
		return serveFast(ln, life)
	}
	return serveRole(ln, upstreamHandler(slots, service, plain), life)
}

// serveFast is the fast upstream: a minimal HTTP/1.1 responder that answers
// every request on a connection with the same fixed response, written in
// one syscall, with no per-request allocation. net/http would spend more
// CPU per request than some of the proxies under test, and on a machine of
// two cores the CPU the upstream takes is CPU the proxy does not get: the
// cheaper the upstream, the more the figures are about the proxy.
//
// It reads each request's head up to the blank line and skips a
// Content-Length body; the benchmark sends only GETs, and anything it does
// not understand (chunked request bodies) closes the connection.
func serveFast(ln net.Listener, life time.Duration) error {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(bodySize) +
		"\r\n\r\n" + strings.Repeat("x", bodySize))
	go func() {
		io.Copy(io.Discard, os.Stdin)
		ln.Close()
	}()
	t := time.AfterFunc(life, func() { ln.Close() })
	defer t.Stop()
	fmt.Println(ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil // closed: stdin gone or life over
		}
		go serveFastConn(c, resp, life)
	}
}

func serveFastConn(c net.Conn, resp []byte, life time.Duration) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(life))
	br := bufio.NewReaderSize(c, 8192)
	for {
		var length int64
		keep := true
		line, err := br.ReadSlice('\n') // request line
		if err != nil {
			return
		}
		if bytes.HasSuffix(bytes.TrimRight(line, "\r\n"), []byte("HTTP/1.0")) {
			keep = false
		}
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return
			}
			line = bytes.TrimRight(line, "\r\n")
			if len(line) == 0 {
				break
			}
			name, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimSpace(value)
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
					return
				}
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				return
			case bytes.EqualFold(name, []byte("Connection")):
				if bytes.EqualFold(value, []byte("close")) {
					keep = false
				} else if bytes.EqualFold(value, []byte("keep-alive")) {
					keep = true
				}
			}
		}
		if _, err := br.Discard(int(length)); err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil || !keep {
			return
		}
	}
}

// runPlainProxyRole is the baseline without backpressure: the standard
// library's ReverseProxy with a pool big enough never to be the limit, as
// a Go service that proxies with no admission control would be.
func runPlainProxyRole(listen, target string, life time.Duration) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
	}
	rp.ErrorLog = nil
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, context.Canceled) {
			return // the client left
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	return serveRole(ln, rp, life)
}
