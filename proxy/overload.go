package proxy

import (
	"bytes"
	"net/http"
	"strconv"
	"time"

	"sluice/admission"
	"sluice/bulkhead"
	"sluice/config"
	"sluice/overload"
)

// overloadRetryAfter is the Retry-After of an overloaded refusal: the
// overload manager samples every 100ms and steps down after a calm
// second, so a second is the earliest a retry has a better chance. The
// clients retrying after it spread over the next second by themselves.
const overloadRetryAfter = time.Second

// limitsOf is the overload manager's part of the server block.
func limitsOf(s config.Server) overload.Limits {
	return overload.Limits{
		MaxConnections: int64(s.MaxConnections),
		MaxInflight:    int64(s.MaxInflight),
		MemoryLimit:    s.MemoryLimit.Resolved,
		SchedLatency:   schedLatencyOf(s.SchedLatencyLimit),
	}
}

// schedLatencyOf maps server.sched_latency_limit, where 0 is off, to
// Limits.SchedLatency, where off is negative.
func schedLatencyOf(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// Overload returns the process's overload manager, which the proxy
// consults at its door; the server wraps its listeners with it.
func (p *Proxy) Overload() *overload.Manager { return p.ovl }

// DoorRefused is the number of requests refused overloaded before
// routing (server.max_inflight, server.memory_limit, and the requests on
// connections parked over server.max_connections), reported under route
// "".
func (p *Proxy) DoorRefused() uint64 { return p.doorRefused.Load() + p.ovl.State().ParkedRefused }

// refuseAtDoor answers a request the overload manager did not let in. It
// has no route: it is counted under route "" like unmatched requests.
func (p *Proxy) refuseAtDoor(st *reqState, r *http.Request) {
	p.doorRefused.Add(1)
	if p.tracer != nil {
		p.startSpan(st, r)
	}
	st.reason = admission.Overloaded
	st.retryAfter = retryAfterSeconds(overloadRetryAfter)
	closeIfBodyUnread(&st.sw, r)
	writeReject(&st.sw, nil, admission.Overloaded, overloadRetryAfter)
}

// shed reports whether the saturation detector sheds r's class on rt
// and, if so, refuses it. One atomic load while nothing is shed.
func (p *Proxy) shed(st *reqState, r *http.Request, rt *Route) bool {
	level := p.ovl.Shedding()
	if level == overload.ShedNone {
		return false
	}
	cl := rt.adm.ClassOf(r)
	if !sheds(level, cl) {
		return false
	}
	// A request that finds a slot free at its route's bulkhead goes in
	// whatever the detector says: refusing it would leave the upstream
	// idle, and a saturated proxy must lose goodput last. What is shed is
	// the waiting, which a saturated process serves worst: the request
	// that would queue is refused at once instead.
	if bh := rt.adm.Bulkhead(); bh != nil && bh.Inflight() < bh.Limit() {
		return false
	}
	p.ovl.CountShed()
	rt.adm.RefuseClass(cl, admission.Overloaded)
	st.reason = admission.Overloaded
	st.retryAfter = retryAfterSeconds(overloadRetryAfter)
	closeIfBodyUnread(&st.sw, r)
	writeReject(&st.sw, rt, admission.Overloaded, overloadRetryAfter)
	return true
}

// sheds reports whether level covers class cl: sheddable first, then
// default; never critical.
func sheds(level overload.Shed, cl bulkhead.Class) bool {
	switch level {
	case overload.ShedSheddable:
		return cl == bulkhead.ClassSheddable
	case overload.ShedDefault:
		return cl == bulkhead.ClassSheddable || cl == bulkhead.ClassDefault
	}
	return false
}

// ConnRefusal is the whole HTTP/1.1 response written on a plain
// connection refused for server.max_connections: the overloaded refusal
// writeReject gives a request, with Connection: close. The overload
// package answers a parked connection's requests with it less that line.
func ConnRefusal() []byte {
	rec := &recorder{h: http.Header{}}
	writeReject(rec, nil, admission.Overloaded, overloadRetryAfter)
	rec.h["Connection"] = hdrClose
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(rec.status) + " " + http.StatusText(rec.status) + "\r\n")
	_ = rec.h.Write(&b) // sorted by name, each line CRLF-terminated
	b.WriteString("\r\n")
	b.Write(rec.body.Bytes())
	return b.Bytes()
}

// recorder is the least http.ResponseWriter: it keeps what is written.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}
