package proxy

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Reject reasons: the values of the Sluice-Reject header (SPEC, "Admission
// order and rejections").
const (
	ReasonRateLimited       = "rate_limited"
	ReasonQueueFull         = "queue_full"
	ReasonQueueTimeout      = "queue_timeout"
	ReasonBreakerOpen       = "breaker_open"
	ReasonNoHealthyUpstream = "no_healthy_upstream"
	ReasonShuttingDown      = "shutting_down"
)

const (
	problemQuota    = "https://iana.org/assignments/http-problem-types#quota-exceeded"
	problemCapacity = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
)

// rejectInfo is what the rejection table of SPEC says about one reason.
type rejectInfo struct {
	status int
	detail string
	header []string // Sluice-Reject value, shared: header values are never mutated in place
}

var rejects = map[string]rejectInfo{
	ReasonRateLimited:       {http.StatusTooManyRequests, "the route's rate limit is exhausted for this client", nil},
	ReasonQueueFull:         {http.StatusServiceUnavailable, "the route is at capacity and its wait queue is full", nil},
	ReasonQueueTimeout:      {http.StatusServiceUnavailable, "the route stayed at capacity for the maximum queue wait", nil},
	ReasonBreakerOpen:       {http.StatusServiceUnavailable, "the upstream's circuit breaker is open", nil},
	ReasonNoHealthyUpstream: {http.StatusServiceUnavailable, "no target of the upstream is healthy", nil},
	ReasonShuttingDown:      {http.StatusServiceUnavailable, "the proxy is shutting down", nil},
}

func init() {
	for reason, ri := range rejects {
		ri.header = []string{reason}
		rejects[reason] = ri
	}
}

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
func writeReject(w http.ResponseWriter, rt *Route, reason string, retryAfter time.Duration) {
	ri, ok := rejects[reason]
	if !ok {
		panic("proxy: unknown reject reason " + reason)
	}
	h := w.Header()
	h["Sluice-Reject"] = ri.header
	var secs int64
	if reason != ReasonShuttingDown {
		secs = retryAfterSeconds(retryAfter)
		h["Retry-After"] = []string{strconv.FormatInt(secs, 10)}
	}
	writeProblem(w, ri.status, rt, reason, secs, ri.detail)
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

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
