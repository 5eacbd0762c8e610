package proxy

import (
	"net/http"
	"strconv"
	"sync/atomic"

	"sluice/admission"
)

// setRateLimitHeaders adds the IETF draft RateLimit-Policy and RateLimit
// headers (draft-ietf-httpapi-ratelimit-headers): q is the bucket size and
// w the seconds an empty bucket takes to fill; r the whole tokens left and
// t the seconds until the bucket is full again.
func (rt *Route) setRateLimitHeaders(h http.Header, d *admission.Decision) {
	h["Ratelimit-Policy"] = rt.rlPolicy
	var t int64
	if d.Reset > 0 {
		t = retryAfterSeconds(d.Reset)
	}
	h["Ratelimit"] = rt.rlValues.value(rt.nameJSON, d.Remaining, t)
}

// rlCache remembers recent RateLimit header values by the (r, t) pair they
// encode. A bucket that stays full answers r=burst-1;t=1 again and again,
// and one that stays empty r=0 with the same t, so in both steady states
// the header costs no allocation; values in between are built and cached.
// Entries are immutable once stored and shared by concurrent responses:
// header value slices are never changed in place.
type rlCache [16]atomic.Pointer[rlEntry]

type rlEntry struct {
	remaining int
	t         int64
	v         [1]string // the header value; the entry is its backing array
}

func (c *rlCache) value(nameJSON []byte, remaining int, t int64) []string {
	slot := &c[(uint64(remaining)*31+uint64(t))%uint64(len(c))]
	if e := slot.Load(); e != nil && e.remaining == remaining && e.t == t {
		return e.v[:]
	}
	var buf [96]byte
	b := append(buf[:0], nameJSON...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(remaining), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, t, 10)
	e := &rlEntry{remaining: remaining, t: t, v: [1]string{string(b)}}
	slot.Store(e)
	return e.v[:]
}
