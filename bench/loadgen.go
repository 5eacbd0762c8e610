package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// openLoad describes one open-loop run: requests are sent at a fixed rate
// on a schedule made before the run, whatever happened to earlier ones.
// Latency runs from a request's scheduled send time, not from when a
// connection was free to send it, so a proxy that stalls cannot hide the
// stall from the figures (coordinated omission, as wrk2 and Gil Tene's
// HdrHistogram describe it).
type openLoad struct {
	Addr     string        // host:port on loopback
	Path     string        // request target
	Rate     float64       // requests per second
	Warmup   time.Duration // sent but not counted
	Duration time.Duration // counted
	Timeout  time.Duration // per request, from its scheduled time: then it is lost
	MaxConns int           // connections held at most; a request waits for one
	// Variants, when set, are kinds of request sent in turn by weight
	// (priority classes), each with its own header line; results
	// are then also counted per variant in openResult.ByClass.
	Variants []reqVariant
	// OnWindow, when set, is called (in its own goroutine) as the counted
	// part of the schedule starts: to change the setup mid-run.
	OnWindow func()
	// TailFrom, when set, also measures the counted part from this offset
	// on (openResult.Tail*): how things stand once a change has settled.
	TailFrom time.Duration
}

// reqVariant is one kind of request of a mixed load.
type reqVariant struct {
	Name   string // as reported
	Header string // extra header line without CRLF, e.g. "X-Priority: critical"; "" for none
	Weight int    // share of the requests, relative to the others' weights
}

// classResult is what one request variant got over the counted part.
type classResult struct {
	Name                     string
	Sent, OK, Rejected, Lost int
}

// SuccessRate is the share of the variant's counted requests answered 2xx.
func (c classResult) SuccessRate() float64 {
	if c.Sent == 0 {
		return 0
	}
	return float64(c.OK) / float64(c.Sent)
}

// openResult is what an open-loop run measured over its counted part.
type openResult struct {
	Sent int // requests scheduled in the counted part
	OK   int // 2xx
	// OKDone counts 2xx answers that arrived within the counted part,
	// whenever their request was sent: the work actually delivered in that
	// window. It, not OK, is goodput: a proxy whose queue grows without
	// bound answers requests of the counted part long after it (or never).
	OKDone    int
	Rejected  int             // 429 and 503: the proxy refused
	RetryHint int             // refusals that carried Retry-After
	Lost      int             // no answer in time, a broken connection, or another status
	Timeouts  int             // of Lost: no full answer within Timeout
	Errors    int             // of Lost: connection refused, reset or closed early
	Other     map[int]int     // of Lost: other statuses (502, 504...), by code
	OKLat     []time.Duration `json:"-"`          // latency of each 2xx, from its scheduled time
	RejLat    []time.Duration `json:"-"`          // latency of each refusal
	ByClass   []classResult   `json:",omitempty"` // per variant, when the load has Variants
	// The tail of the counted part (openLoad.TailFrom on): 2xx latencies
	// of requests scheduled in it, 2xx answers that arrived in it, and its
	// length.
	TailOKLat    []time.Duration `json:"-"`
	TailOKDone   int             `json:",omitempty"`
	TailMeasured time.Duration   `json:",omitempty"`
	TailOKP99    time.Duration   `json:",omitempty"`
	Late         time.Duration   // how far the scheduler fell behind at worst
	Measured     time.Duration

	// Quantiles, filled in by summarize once the run is over: what the
	// report and the saved results use.
	OKP50, OKP99, RejP50, RejP99 time.Duration
	// AnsweredP99 is the p99 over requests not refused, a lost one counting
	// as the timeout; HasAnswered is false when every request was refused.
	AnsweredP99 time.Duration
	HasAnswered bool
}

// summarize computes the quantiles from the latencies.
func (r *openResult) summarize(timeout time.Duration) {
	r.OKP50, r.OKP99 = quantile(r.OKLat, 0.5), quantile(r.OKLat, 0.99)
	r.RejP50, r.RejP99 = quantile(r.RejLat, 0.5), quantile(r.RejLat, 0.99)
	r.AnsweredP99, r.HasAnswered = p99Answered(r, timeout)
	r.TailOKP99 = quantile(r.TailOKLat, 0.99)
}

// TailGoodput is 2xx answers per second over the tail; 0 without one.
func (r *openResult) TailGoodput() float64 {
	if r.TailMeasured <= 0 {
		return 0
	}
	return float64(r.TailOKDone) / r.TailMeasured.Seconds()
}

// p99Answered is the p99 of requests that were not refused, a lost request
// counting as the timeout (it got no answer within it).
func p99Answered(res *openResult, timeout time.Duration) (time.Duration, bool) {
	n := len(res.OKLat) + res.Lost
	if n == 0 {
		return 0, false
	}
	all := make([]time.Duration, 0, n)
	all = append(all, res.OKLat...)
	for i := 0; i < res.Lost; i++ {
		all = append(all, timeout)
	}
	return quantile(all, 0.99), true
}

// Goodput is 2xx answers per second, counted as they arrive.
func (r *openResult) Goodput() float64 { return float64(r.OKDone) / r.Measured.Seconds() }

// RetryShare is the share of refusals with Retry-After; 1 when none.
func (r *openResult) RetryShare() float64 {
	if r.Rejected == 0 {
		return 1
	}
	return float64(r.RetryHint) / float64(r.Rejected)
}

// quantile returns the q-quantile of ds (sorted in place); 0 when empty.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// runOpen runs l and returns its measurements. It returns once every
// request has an outcome, at most Warmup+Duration+Timeout after the start
// plus the scheduler's lag.
func runOpen(ctx context.Context, l openLoad) (*openResult, error) {
	g := &generator{l: l, idle: make(chan *clientConn, l.MaxConns), res: &openResult{Other: map[int]int{}}}
	vs := l.Variants
	if len(vs) == 0 {
		vs = []reqVariant{{Weight: 1}}
	}
	var pattern []int // variant of request i is pattern[i%len(pattern)]
	for vi, v := range vs {
		hdr := ""
		if v.Header != "" {
			hdr = v.Header + "\r\n"
		}
		g.reqs = append(g.reqs, []byte("GET "+l.Path+" HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: sluice-bench\r\n"+hdr+"\r\n"))
		for w := 0; w < max(1, v.Weight); w++ {
			pattern = append(pattern, vi)
		}
	}
	if len(l.Variants) > 0 {
		for _, v := range l.Variants {
			g.res.ByClass = append(g.res.ByClass, classResult{Name: v.Name})
		}
	}
	interval := time.Duration(float64(time.Second) / l.Rate)
	total := int((l.Warmup + l.Duration) / interval)
	counted := int(l.Warmup / interval)
	start := time.Now().Add(10 * time.Millisecond)
	g.winStart = start.Add(time.Duration(counted) * interval)
	g.winEnd = start.Add(time.Duration(total) * interval)
	if l.TailFrom > 0 && l.TailFrom < l.Duration {
		g.tailStart = g.winStart.Add(l.TailFrom)
		g.res.TailMeasured = g.winEnd.Sub(g.tailStart)
	}
	var wg sync.WaitGroup
	for i := 0; i < total; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			// Sleep only for gaps worth a timer; requests that are due are
			// sent in a burst, each still timed from its own schedule.
			if d > 200*time.Microsecond {
				time.Sleep(d)
			}
		} else if -d > g.res.Late {
			g.res.Late = -d
		}
		if ctx.Err() != nil {
			break
		}
		count := i >= counted
		if count {
			g.res.Sent++
		}
		if i == counted && l.OnWindow != nil {
			go l.OnWindow()
		}
		vi := pattern[i%len(pattern)]
		if count && g.res.ByClass != nil {
			g.mu.Lock()
			g.res.ByClass[vi].Sent++
			g.mu.Unlock()
		}
		wg.Go(func() { g.send(at, count, vi) })
	}
	wg.Wait()
	g.closeIdle()
	g.res.Measured = time.Duration(g.res.Sent) * interval
	if g.res.Sent == 0 {
		return nil, errors.New("no request counted: duration too short for the rate")
	}
	g.res.summarize(l.Timeout)
	return g.res, ctx.Err()
}

type generator struct {
	l    openLoad
	reqs [][]byte // by variant
	idle chan *clientConn
	open atomic.Int64

	winStart, winEnd time.Time // the counted part of the schedule
	tailStart        time.Time // its tail (openLoad.TailFrom); zero without one

	mu  sync.Mutex // guards res once the run has started
	res *openResult
}

type clientConn struct {
	c  net.Conn
	br *bufio.Reader
}

// outcome of one request.
type outcome struct {
	status    int
	retryHint bool
	err       error
	timeout   bool
}

func (g *generator) send(at time.Time, count bool, vi int) {
	deadline := at.Add(g.l.Timeout)
	o := g.do(deadline, g.reqs[vi])
	done := time.Now()
	took := done.Sub(at)
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.res
	if o.err == nil && o.status >= 200 && o.status < 300 && !done.Before(g.winStart) && done.Before(g.winEnd) {
		r.OKDone++
		if !g.tailStart.IsZero() && !done.Before(g.tailStart) {
			r.TailOKDone++
		}
	}
	if !count {
		return
	}
	if r.ByClass != nil {
		c := &r.ByClass[vi]
		switch {
		case o.err != nil:
			c.Lost++
		case o.status >= 200 && o.status < 300:
			c.OK++
		case o.status == 429 || o.status == 503:
			c.Rejected++
		default:
			c.Lost++
		}
	}
	switch {
	case o.err != nil:
		r.Lost++
		if o.timeout {
			r.Timeouts++
		} else {
			r.Errors++
		}
	case o.status >= 200 && o.status < 300:
		r.OK++
		r.OKLat = append(r.OKLat, took)
		if !g.tailStart.IsZero() && !at.Before(g.tailStart) {
			r.TailOKLat = append(r.TailOKLat, took)
		}
	case o.status == 429 || o.status == 503:
		r.Rejected++
		r.RejLat = append(r.RejLat, took)
		if o.retryHint {
			r.RetryHint++
		}
	default:
		r.Lost++
		r.Other[o.status]++
	}
}

// do sends one request and reads its answer by deadline. A connection that
// was idle may have been closed by the server meanwhile: if it fails before
// any byte of the answer, the request is sent once more on a new one, as
// net/http does for idempotent requests.
func (g *generator) do(deadline time.Time, req []byte) outcome {
	for attempt := 0; ; attempt++ {
		cc, reused, err := g.conn(deadline)
		if err != nil {
			return outcome{err: err, timeout: isTimeout(err)}
		}
		o, started, keep := g.roundTrip(cc, deadline, req)
		if keep && o.err == nil {
			g.idle <- cc
		} else {
			cc.c.Close()
			g.open.Add(-1)
		}
		if o.err != nil && reused && !started && !o.timeout && attempt == 0 {
			continue
		}
		return o
	}
}

// conn returns an idle connection, or dials one while fewer than MaxConns
// are open, or waits for one to come back until deadline.
func (g *generator) conn(deadline time.Time) (cc *clientConn, reused bool, err error) {
	select {
	case cc := <-g.idle:
		return cc, true, nil
	default:
	}
	if g.open.Add(1) > int64(g.l.MaxConns) {
		g.open.Add(-1)
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case cc := <-g.idle:
			return cc, true, nil
		case <-t.C:
			return nil, false, os.ErrDeadlineExceeded
		}
	}
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", g.l.Addr)
	if err != nil {
		g.open.Add(-1)
		return nil, false, err
	}
	return &clientConn{c: c, br: bufio.NewReaderSize(c, 4096)}, false, nil
}

func (g *generator) closeIdle() {
	for {
		select {
		case cc := <-g.idle:
			cc.c.Close()
		default:
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// roundTrip writes the request and reads the answer. started reports that
// some of the answer arrived; keep that the connection can be reused.
func (g *generator) roundTrip(cc *clientConn, deadline time.Time, req []byte) (o outcome, started, keep bool) {
	cc.c.SetDeadline(deadline)
	if _, err := cc.c.Write(req); err != nil {
		return outcome{err: err, timeout: isTimeout(err)}, false, false
	}
	if _, err := cc.br.Peek(1); err != nil {
		return outcome{err: err, timeout: isTimeout(err)}, false, false
	}
	resp, err := readResponse(cc.br)
	if err != nil {
		return outcome{err: err, timeout: isTimeout(err)}, true, false
	}
	return outcome{status: resp.status, retryHint: resp.retryAfter}, true, resp.keepAlive
}

// response is what the generator needs of an HTTP/1.1 answer.
type response struct {
	status     int
	retryAfter bool
	keepAlive  bool
}

// readResponse reads one HTTP/1.1 response to a GET, body included
// (Content-Length, chunked, or up to EOF), and discards the body.
func readResponse(br *bufio.Reader) (response, error) {
	var r response
	line, err := readLine(br)
	if err != nil {
		return r, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return r, fmt.Errorf("bad status line %q", line)
	}
	r.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return r, fmt.Errorf("bad status line %q", line)
	}
	r.keepAlive = line[7] == '1' // HTTP/1.1 keeps the connection unless told otherwise
	length, chunked := int64(-1), false
	for {
		line, err = readLine(br)
		if err != nil {
			return r, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return r, fmt.Errorf("bad header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, err = strconv.ParseInt(string(value), 10, 64)
			if err != nil || length < 0 {
				return r, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				r.keepAlive = false
			}
		case bytes.EqualFold(name, []byte("Retry-After")):
			r.retryAfter = len(value) > 0
		}
	}
	switch {
	case r.status == 204 || r.status == 304 || r.status < 200:
	case chunked:
		err = discardChunked(br)
	case length >= 0:
		_, err = br.Discard(int(length))
	default:
		_, err = io.Copy(io.Discard, br) // delimited by close
		r.keepAlive = false
	}
	return r, err
}

func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, up to the blank line
				line, err = readLine(br)
				if err != nil || len(line) == 0 {
					return err
				}
			}
		}
		if _, err := br.Discard(int(n)); err != nil {
			return err
		}
		if _, err := readLine(br); err != nil {
			return err
		}
	}
}
