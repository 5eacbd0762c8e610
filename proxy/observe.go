package proxy

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"sluice/admission"
	"sluice/clock"
)

// statusWriter records the status and body size a handler wrote. It lives
// inside the pooled reqState, so it costs no allocation. Unwrap lets
// http.ResponseController (which ReverseProxy uses) reach Flush, Hijack and
// deadlines of the real writer.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 { // 1xx are informational, not the status
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush is here as well as through Unwrap because some callers still test
// for http.Flusher directly.
func (s *statusWriter) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	http.NewResponseController(s.ResponseWriter).Flush()
}

// Hijack likewise for callers testing for http.Hijacker; an upgraded
// connection reports 101.
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if s.status == 0 {
		s.status = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

// codeCounts counts responses by status code without locks: a route sees a
// handful of distinct codes, so a small table of (code, count) slots claimed
// by CAS serves them all; the rare extra code goes to a locked overflow map.
type codeCounts struct {
	slots    [12]codeSlot
	mu       sync.Mutex // guards overflow
	overflow map[int]uint64
}

type codeSlot struct {
	code atomic.Uint32
	n    atomic.Uint64
}

func (c *codeCounts) inc(code int) {
	for i := range c.slots {
		s := &c.slots[i]
		switch s.code.Load() {
		case uint32(code):
			s.n.Add(1)
			return
		case 0:
			if s.code.CompareAndSwap(0, uint32(code)) || s.code.Load() == uint32(code) {
				s.n.Add(1)
				return
			}
		}
	}
	c.mu.Lock()
	if c.overflow == nil {
		c.overflow = make(map[int]uint64)
	}
	c.overflow[code]++
	c.mu.Unlock()
}

// each calls f for every code seen, in code order.
func (c *codeCounts) each(f func(code int, n uint64)) {
	m := map[int]uint64{}
	for i := range c.slots {
		if code := c.slots[i].code.Load(); code != 0 {
			m[int(code)] += c.slots[i].n.Load()
		}
	}
	c.mu.Lock()
	for code, n := range c.overflow {
		m[code] += n
	}
	c.mu.Unlock()
	codes := make([]int, 0, len(m))
	for code := range m {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	for _, code := range codes {
		f(code, m[code])
	}
}

// total is the sum over all codes.
func (c *codeCounts) total() uint64 {
	var t uint64
	c.each(func(_ int, n uint64) { t += n })
	return t
}

// finish accounts for one request: status counters, duration histograms,
// the access log line and the span. It runs exactly once per request.
func (p *Proxy) finish(st *reqState, r *http.Request) {
	status := st.sw.status
	if st.status == StatusClientClosed {
		status = StatusClientClosed // nothing (complete) was written to anyone
	} else if status == 0 {
		status = http.StatusOK // net/http's implicit answer
	}
	took := clock.Since(p.clk, st.start)
	if rt := st.route; rt != nil {
		rt.codes.inc(status)
		rt.durHist.Observe(took.Seconds())
		if st.reason == admission.Admitted && status != StatusClientClosed {
			rt.latWin.Observe(st.start, took)
		}
	} else {
		p.unmatched.inc(status)
	}
	if p.access != nil {
		if isRefusal(st.reason) {
			p.logRefusal(st, r, status, took)
		} else {
			p.logAccess(st, r, status, took)
		}
	}
	if st.span != nil {
		endSpan(st, status)
	}
	statePool.Put(st)
}

func (p *Proxy) logAccess(st *reqState, r *http.Request, status int, took time.Duration) {
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.Path),
		slog.String("remote", r.RemoteAddr),
		slog.Int("status", status),
		slog.Int64("bytes", st.sw.bytes),
		slog.Float64("duration_ms", float64(took.Microseconds())/1000),
	)
	if rt := st.route; rt != nil {
		attrs = append(attrs, slog.String("route", rt.name), slog.String("upstream", rt.up.name))
		if rt.adm.Bulkhead() != nil {
			attrs = append(attrs, slog.Float64("queue_wait_ms", float64(st.queueWait.Microseconds())/1000))
		}
	}
	if st.reason != admission.Admitted {
		attrs = append(attrs, slog.String("reason", st.reason.String()))
	}
	if st.target != nil {
		attrs = append(attrs, slog.String("target", st.target.URL.Host))
	}
	if st.aborted {
		// The response broke off midway (upstream or client gone, or the
		// route deadline passed while the body was streaming).
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	if st.faults != 0 {
		attrs = append(attrs, slog.String("fault", st.faults.String()))
	}
	if st.span != nil {
		attrs = append(attrs, slog.String("trace_id", st.span.SpanContext().TraceID().String()))
	}
	p.access.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}
