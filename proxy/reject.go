package proxy

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"sluice/admission"
	"sluice/proxy/internal/routing"
)

const (
	problemQuota    = "https://iana.org/assignments/http-problem-types#quota-exceeded"
	problemCapacity = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
)

// rejectInfo is what the rejection table of docs/SPEC.md ("Admission order
// and rejections") says about one reason.
type rejectInfo struct {
	status int
	detail string
	header []string // Sluice-Reject value, shared: header values are never mutated in place
}

var rejects = func() map[admission.Reason]rejectInfo {
	m := map[admission.Reason]rejectInfo{
		admission.RateLimited:       {http.StatusTooManyRequests, "the route's rate limit is exhausted for this client", nil},
		admission.QueueFull:         {http.StatusServiceUnavailable, "the route is at capacity and its wait queue is full", nil},
		admission.QueueTimeout:      {http.StatusServiceUnavailable, "the route stayed at capacity for the maximum queue wait", nil},
		admission.BreakerOpen:       {http.StatusServiceUnavailable, "the upstream's circuit breaker is open", nil},
		admission.NoHealthyUpstream: {http.StatusServiceUnavailable, "no target of the upstream is healthy", nil},
		admission.ShuttingDown:      {http.StatusServiceUnavailable, "the proxy is shutting down", nil},
		admission.Overloaded:        {http.StatusServiceUnavailable, "the proxy is overloaded and sheds new work until it recovers", nil},
	}
	for r, ri := range m {
		ri.header = []string{r.String()}
		m[r] = ri
	}
	return m
}()

var (
	hdrProblemJSON = []string{"application/problem+json"}
	hdrNoStore     = []string{"no-store"}
)

// retryAfterSeconds rounds d up to whole seconds, at least 1: a client told
// "0" would retry at once into the same overload.
func retryAfterSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// writeReject is the one place that turns an admission refusal into its
// response: status, Sluice-Reject, Retry-After (omitted for shutting_down,
// which promises nothing) and an RFC 9457 problem body.
func writeReject(w http.ResponseWriter, rt *Route, reason admission.Reason, retryAfter time.Duration) {
	ri, ok := rejects[reason]
	if !ok {
		panic("proxy: no response for reason " + reason.String())
	}
	h := w.Header()
	h["Sluice-Reject"] = ri.header
	var secs int64
	if reason != admission.ShuttingDown {
		secs = retryAfterSeconds(retryAfter)
		h["Retry-After"] = retryAfterValue(secs)
	}

	writeProblem(w, ri.status, rt, ri.header[0], secs, ri.detail)
}

// retryAfterValues holds the header values of common Retry-After seconds,
// so that refusing under overload allocates nothing for the header.
var retryAfterValues = func() [][]string {
	v := make([][]string, 301)
	for i := range v {
		v[i] = []string{strconv.Itoa(i)}
	}
	return v
}()

func retryAfterValue(secs int64) []string {
	if secs < int64(len(retryAfterValues)) {
		return retryAfterValues[secs]
	}
	return []string{strconv.FormatInt(secs, 10)}
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// closeIfBodyUnread marks the response for connection close when the
// request body may not have been read to the end. Otherwise net/http would
// first drain up to 256 KiB of it before writing the answer, so a client
// that stalls its body would never get the refusal and would pin the
// connection (a slowloris through the rejection path).
func closeIfBodyUnread(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		w.Header()["Connection"] = hdrClose
	}
}

var hdrClose = []string{"close"}

// writeProblem writes an application/problem+json (RFC 9457) response. The
// body is appended by hand: rejections are the hot path under overload and
// must not pay for reflection. reason "" and retryAfter 0 are left out.
func writeProblem(w http.ResponseWriter, status int, rt *Route, reason string, retryAfter int64, detail string) {
	bp := bodyPool.Get().(*[]byte)
	b := (*bp)[:0]
	typ := "about:blank"
	switch status {
	case http.StatusTooManyRequests:
		typ = problemQuota
	case http.StatusServiceUnavailable:
		typ = problemCapacity
	}
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","title":"`...)
	b = append(b, http.StatusText(status)...)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"detail":"`...)
	b = append(b, detail...) // details are constants without characters to escape
	b = append(b, '"')
	if rt != nil {
		b = append(b, `,"route":`...)
		b = append(b, rt.nameJSON...)
	}
	if reason != "" {
		b = append(b, `,"reason":"`...)
		b = append(b, reason...)
		b = append(b, '"')
	}
	if retryAfter > 0 {
		b = append(b, `,"retry_after":`...)
		b = strconv.AppendInt(b, retryAfter, 10)
	}
	b = append(b, "}\n"...)

	h := w.Header()
	h["Content-Type"] = hdrProblemJSON
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
	*bp = b
	bodyPool.Put(bp)
}

// WriteError answers w with status and an RFC 9457 problem body naming no
// route, for the answers the server writes around the proxy (a listener
// still waiting for its certificates, an HTTPS redirect with no host to
// send the client to), so that every error sluice writes has one form.
// detail is written as is: a constant without characters to escape.
func WriteError(w http.ResponseWriter, status int, detail string) {
	writeProblem(w, status, nil, "", 0, detail)
}

// CheckHost returns nil when a request's Host (host[:port]) names a host a
// route can be meant for, else an error whose message is written for the
// client; the proxy refuses such a request with 400 before routing. The
// rules are routing.CheckHost's.
func CheckHost(hostport string) error { return routing.CheckHost(hostport) }
