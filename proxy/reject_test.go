package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"testing"
	"time"

	"sluice/admission"
)

// TestRejectResponsesExact: a cached refusal is byte for byte the problem
// body and headers of docs/SPEC.md, spelled out here by hand, for every
// reason, for Retry-After values inside and beyond the cache (each asked
// for twice, and beyond-the-cache values in turn so that they replace each
// other), and for a route name JSON has to escape.
func TestRejectResponsesExact(t *testing.T) {
	name := `a"b<c`
	nameJSON, _ := json.Marshal(name)
	rt := &Route{name: name, nameJSON: nameJSON, rejects: newRejectCache(nameJSON)}
	types := map[int]string{
		429: "https://iana.org/assignments/http-problem-types#quota-exceeded",
		503: "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity",
	}
	for _, reason := range admission.Rejections {
		for _, secs := range []int64{1, 2, 59, 300, 301, 7200, 301, 1, 7200} {
			ri := rejects[reason]
			want := fmt.Sprintf(`{"type":"%s","title":"%s","status":%d,"detail":"%s","route":"a\"b\u003cc","reason":"%s"`,
				types[ri.status], http.StatusText(ri.status), ri.status, ri.detail, reason)
			wantHdr := http.Header{
				"Sluice-Reject": {reason.String()}, "Content-Type": {"application/problem+json"},
				"Cache-Control": {"no-store"},
			}
			if reason != admission.ShuttingDown {
				want += fmt.Sprintf(`,"retry_after":%d`, secs)
				wantHdr["Retry-After"] = []string{strconv.FormatInt(secs, 10)}
			}
			want += "}\n"
			wantHdr["Content-Length"] = []string{strconv.Itoa(len(want))}

			w := httptest.NewRecorder()
			writeReject(w, rt, reason, time.Duration(secs)*time.Second-time.Millisecond) // rounded up to secs
			if w.Code != ri.status || w.Body.String() != want || !reflect.DeepEqual(w.Header(), wantHdr) {
				t.Errorf("%s, %ds: %d %v\n%s\nwant %d %v\n%s", reason, secs, w.Code, w.Header(), w.Body, ri.status, wantHdr, want)
			}
		}
	}
}

// TestRejectAllocations: a refusal's response, once built for its route,
// reason and Retry-After, costs no allocation, also beyond the cached range
// while the value stays the same.
func TestRejectAllocations(t *testing.T) {
	nameJSON := []byte(`"r"`)
	rt := &Route{name: "r", nameJSON: nameJSON, rejects: newRejectCache(nameJSON)}
	w := &discardWriter{h: http.Header{}}
	for _, d := range []time.Duration{3 * time.Second, time.Hour} {
		writeReject(w, rt, admission.QueueFull, d)
		if n := testing.AllocsPerRun(100, func() { writeReject(w, rt, admission.QueueFull, d) }); n != 0 {
			t.Errorf("Retry-After %v: %v allocations per refusal", d, n)
		}
	}
}
