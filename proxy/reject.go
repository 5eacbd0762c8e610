package proxy

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"sluice/admission"
	"sluice/proxy/internal/routing"
)

const (
	problemQuota    = "https://iana.org/assignments/http-problem-types#quota-exceeded"
	problemCapacity = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
)

// rejectInfo is what the rejection table of docs/SPEC.md ("Admission order
// and rejections") says about one reason; status 0 marks a reason that is
// not a refusal (admitted, client_gone).
type rejectInfo struct {
	status int
	detail string
	header []string // Sluice-Reject value, shared: header values are never mutated in place
}

var rejects = func() (t [admission.NumReasons]rejectInfo) {
	t[admission.RateLimited] = rejectInfo{status: http.StatusTooManyRequests, detail: "the route's rate limit is exhausted for this client"}
	t[admission.QueueFull] = rejectInfo{status: http.StatusServiceUnavailable, detail: "the route is at capacity and its wait queue is full"}
	t[admission.QueueTimeout] = rejectInfo{status: http.StatusServiceUnavailable, detail: "the route stayed at capacity for the maximum queue wait"}
	t[admission.BreakerOpen] = rejectInfo{status: http.StatusServiceUnavailable, detail: "the upstream's circuit breaker is open"}
	t[admission.NoHealthyUpstream] = rejectInfo{status: http.StatusServiceUnavailable, detail: "no target of the upstream is healthy"}
	t[admission.ShuttingDown] = rejectInfo{status: http.StatusServiceUnavailable, detail: "the proxy is shutting down"}
	t[admission.Overloaded] = rejectInfo{status: http.StatusServiceUnavailable, detail: "the proxy is overloaded and sheds new work until it recovers"}
	for r := range t {
		if t[r].status != 0 {
			t[r].header = []string{admission.Reason(r).String()}
		}
	}
	return t
}()

// isRefusal reports whether r is one of the rejection table's reasons.
func isRefusal(r admission.Reason) bool { return r < admission.NumReasons && rejects[r].status != 0 }

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
// which promises nothing) and an RFC 9457 problem body. The body and the
// header values come from the route's rejectCache, so that refusing under
// overload builds nothing: everything but the map entries is shared.
func writeReject(w http.ResponseWriter, rt *Route, reason admission.Reason, retryAfter time.Duration) {
	if !isRefusal(reason) {
		panic("proxy: no response for reason " + reason.String())
	}
	ri := &rejects[reason]
	var secs int64
	if reason != admission.ShuttingDown {
		secs = retryAfterSeconds(retryAfter)
	}
	cache := doorRejects
	if rt != nil {
		cache = rt.rejects
	}
	resp := cache.response(reason, secs)
	h := w.Header()
	h["Sluice-Reject"] = ri.header
	if resp.retryAfter != nil {
		h["Retry-After"] = resp.retryAfter
	}
	h["Content-Type"] = hdrProblemJSON
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = resp.contentLength
	w.WriteHeader(ri.status)
	_, _ = w.Write(resp.body) // io.Writer: Write neither keeps nor changes it
}

// maxCachedRetryAfter is the largest Retry-After, in seconds, whose
// responses a route keeps one of per reason. Queue and breaker waits and
// the next token of any rate above 1/300 rps fall below it; beyond it a
// reason keeps only its latest response, enough for a slow bucket whose
// delay changes once a second.
const maxCachedRetryAfter = 300

// rejectCache holds a route's refusal responses by reason and Retry-After
// seconds. Each is built on the first refusal that needs it and published
// with an atomic store; once published it is never changed, so concurrent
// refusals share it. A reason's table (2.4 KiB) is made only when the route
// first refuses for it. Two refusals racing to build the same response
// both build it and one store wins: equal bytes either way.
type rejectCache struct {
	nameJSON []byte // the route's name as a JSON string
	reasons  [admission.NumReasons]atomic.Pointer[rejectSecs]
}

type rejectSecs struct {
	bySecs [maxCachedRetryAfter + 1]atomic.Pointer[rejectResponse]
	beyond atomic.Pointer[rejectResponse] // the latest above maxCachedRetryAfter
}

// rejectResponse is one refusal's answer, built once.
type rejectResponse struct {
	secs          int64
	body          []byte
	contentLength []string
	retryAfter    []string // nil for shutting_down
}

func newRejectCache(nameJSON []byte) *rejectCache { return &rejectCache{nameJSON: nameJSON} }

// doorRejects are the refusals made before any route matched (the
// overload manager's door): their bodies name no route.
var doorRejects = newRejectCache(nil)

// response returns the answer to a refusal for reason with secs of
// Retry-After (0 for shutting_down).
func (c *rejectCache) response(reason admission.Reason, secs int64) *rejectResponse {
	set := c.reasons[reason].Load()
	if set == nil {
		c.reasons[reason].CompareAndSwap(nil, new(rejectSecs))
		set = c.reasons[reason].Load()
	}
	slot := &set.beyond
	if secs <= maxCachedRetryAfter {
		slot = &set.bySecs[secs]
	}
	if r := slot.Load(); r != nil && r.secs == secs {
		return r
	}
	ri := &rejects[reason]
	body := appendProblem(nil, ri.status, c.nameJSON, ri.header[0], secs, ri.detail)
	r := &rejectResponse{secs: secs, body: body, contentLength: []string{strconv.Itoa(len(body))}}
	if reason != admission.ShuttingDown {
		r.retryAfter = retryAfterValue(secs)
	}
	slot.Store(r)
	return r
}

// retryAfterValues holds the header values of the Retry-After seconds a
// rejectCache keeps, shared by every route.
var retryAfterValues = func() [][]string {
	v := make([][]string, maxCachedRetryAfter+1)
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

// writeProblem writes an application/problem+json (RFC 9457) response for
// the answers that are not admission refusals (those have writeReject).
func writeProblem(w http.ResponseWriter, status int, rt *Route, detail string) {
	bp := bodyPool.Get().(*[]byte)
	var name []byte
	if rt != nil {
		name = rt.nameJSON
	}
	b := appendProblem((*bp)[:0], status, name, "", 0, detail)
	h := w.Header()
	h["Content-Type"] = hdrProblemJSON
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
	*bp = b
	bodyPool.Put(bp)
}

// appendProblem appends an RFC 9457 problem body to b. It is appended by
// hand: refusals are the hot path under overload and must not pay for
// reflection. nameJSON nil (no route), reason "" and retryAfter 0 are left
// out.
func appendProblem(b []byte, status int, nameJSON []byte, reason string, retryAfter int64, detail string) []byte {
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
	if nameJSON != nil {
		b = append(b, `,"route":`...)
		b = append(b, nameJSON...)
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
	return append(b, "}\n"...)
}

// WriteError answers w with status and an RFC 9457 problem body naming no
// route, for the answers the server writes around the proxy (a listener
// still waiting for its certificates, an HTTPS redirect with no host to
// send the client to), so that every error sluice writes has one form.
// detail is written as is: a constant without characters to escape.
func WriteError(w http.ResponseWriter, status int, detail string) {
	writeProblem(w, status, nil, detail)
}

// CheckHost returns nil when a request's Host (host[:port]) names a host a
// route can be meant for, else an error whose message is written for the
// client; the proxy refuses such a request with 400 before routing. The
// rules are routing.CheckHost's.
func CheckHost(hostport string) error { return routing.CheckHost(hostport) }
