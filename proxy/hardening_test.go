package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/testutil"
)

// rawExchange writes raw bytes to the proxy and returns every response
// status line read until the server closes the connection.
func rawExchange(t *testing.T, proxyURL, raw string) []string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var statuses []string
	for _, resp := range testutil.RawExchange(t, c, raw) {
		statuses = append(statuses, resp.Status)
	}
	return statuses
}

// recordingUpstream remembers the framing of every request it receives.
type recordingUpstream struct {
	*httptest.Server
	mu   sync.Mutex // guards seen
	seen []string
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, fmt.Sprintf("%s %s CL=%q TE=%v body=%q err=%v", r.Method, r.URL.Path, r.Header.Get("Content-Length"), r.TransferEncoding, body, err))
		u.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

func TestNotAnOpenProxy(t *testing.T) {
	up := newRecordingUpstream(t)
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: all, match: {path_prefix: /}, upstream: u}]
`, up.URL))
	otherHost := strings.TrimPrefix(other.URL, "http://")

	if got := rawExchange(t, p.URL, "CONNECT "+otherHost+" HTTP/1.1\r\nHost: "+otherHost+"\r\nConnection: close\r\n\r\n"); len(got) == 0 || got[0] != "405 Method Not Allowed" {
		t.Errorf("CONNECT: %v, want 405", got)
	}
	// Absolute-form naming another host: routed, but only ever forwarded to
	// the route's configured upstream.
	if got := rawExchange(t, p.URL, "GET "+other.URL+"/steal HTTP/1.1\r\nHost: "+otherHost+"\r\nConnection: close\r\n\r\n"); len(got) != 1 || got[0] != "200 OK" {
		t.Errorf("absolute-form: %v", got)
	}
	// Asterisk-form OPTIONS is answered by net/http itself, never proxied.
	if got := rawExchange(t, p.URL, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); len(got) != 1 || got[0] != "200 OK" {
		t.Errorf("asterisk-form: %v", got)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the proxy sent %d requests to a host that is not a configured target", n)
	}
	if got := up.requests(); len(got) != 1 || !strings.HasPrefix(got[0], "GET /steal ") {
		t.Errorf("configured upstream saw %v", got)
	}
}

func TestDialGuard(t *testing.T) {
	p := startProxy(t, `
upstreams: [{name: u, targets: ["http://127.0.0.1:9"]}]
routes: [{name: all, match: {path_prefix: /}, upstream: u}]
`)
	tr := p.Upstreams()[0].tr
	if _, err := tr.DialContext(context.Background(), "tcp", "127.0.0.2:80"); err == nil || !strings.Contains(err.Error(), "not a configured target") {
		t.Errorf("dial of an unconfigured address: %v", err)
	}
}

// TestFraming: ambiguous framing is refused by net/http (differing
// Content-Lengths 400, unsupported Transfer-Encoding 501), and a request
// with both Content-Length and chunked is handled by Transfer-Encoding
// alone (RFC 9112 §6.3) and re-framed, so the upstream never sees the
// stale Content-Length: the two cannot disagree on where a request ends.
func TestFraming(t *testing.T) {
	up := newRecordingUpstream(t)
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: all, match: {path_prefix: /}, upstream: u}]
`, up.URL))
	cases := []struct {
		name, raw string
		want      []string
	}{
		{"differing content-lengths", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", []string{"400 Bad Request"}},
		{"unsupported transfer-encoding", "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", []string{"501 Not Implemented"}},
		{"two transfer-encodings", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []string{"501 Not Implemented"}},
		{"negative content-length", "POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", []string{"400 Bad Request"}},
		// Both: framed by chunked alone, and the connection is closed after
		// it (RFC 9112 §6.1), so the request smuggled behind it in the same
		// stream is never read.
		{"both: chunked wins, then close", "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", []string{"200 OK"}},
	}
	for _, tc := range cases {
		if got := rawExchange(t, p.URL, tc.raw); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	got := up.requests()
	if len(got) != 1 {
		t.Fatalf("upstream saw %d requests, want only the valid one: %v", len(got), got)
	}
	if !strings.Contains(got[0], `CL="" TE=[chunked] body="abc"`) && !strings.Contains(got[0], `CL="3" TE=[] body="abc"`) {
		t.Errorf("upstream saw %s: the stale Content-Length leaked or the body was misframed", got[0])
	}
}

func TestMaxBodyBytes(t *testing.T) {
	up := newRecordingUpstream(t)
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: up, match: {path_prefix: /}, upstream: u, max_body_bytes: 10, bulkhead: {max_concurrent: 1}}]
`, up.URL))
	post := func(body io.Reader, length int64) (int, string) {
		req, _ := http.NewRequest("POST", p.URL+"/upload", body)
		req.ContentLength = length
		resp, b := do(t, req)
		return resp.StatusCode, resp.Header.Get("Content-Type") + " " + string(b)
	}
	if code, _ := post(strings.NewReader("0123456789"), 10); code != 200 {
		t.Errorf("body at the limit: %d", code)
	}
	if code, body := post(strings.NewReader("0123456789A"), 11); code != 413 || !strings.HasPrefix(body, "application/problem+json") {
		t.Errorf("declared body over the limit: %d %s", code, body)
	}
	// Undeclared length (chunked): cut when it passes the limit.
	if code, _ := post(io.MultiReader(strings.NewReader("01234"), strings.NewReader("56789ABCDEF")), -1); code != 413 {
		t.Errorf("chunked body over the limit: %d, want 413", code)
	}
	// The declared-too-large body never reaches the upstream. The chunked
	// one may (its headers can go before its size is known), but then its
	// body breaks off: the upstream never sees it as a complete request.
	got := up.requests()
	if len(got) < 1 || len(got) > 2 || !strings.HasSuffix(got[0], "err=<nil>") || len(got) == 2 && strings.HasSuffix(got[1], "err=<nil>") {
		t.Errorf("upstream saw %q", got)
	}
	if adm := p.Routes()[0].Admission(); adm.Inflight() != 0 || adm.Bulkhead().Inflight() != 0 {
		t.Error("a refused body kept its slot")
	}
}

// TestSlowBodyIsCut: a client that sends headers and then dribbles its body
// forever is cut by the route timeout instead of holding a slot.
func TestSlowBodyIsCut(t *testing.T) {
	// An upstream that, like most, gives up on a request whose body breaks off.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			panic(http.ErrAbortHandler)
		}
	}))
	defer up.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, timeout: 300ms, bulkhead: {max_concurrent: 1}}]
`, up.URL))
	c, err := net.Dial("tcp", strings.TrimPrefix(p.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body within 10s: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("stalled body: %d, want 504 from the route deadline", resp.StatusCode)
	}
	waitUntil(t, "slot freed", func() bool { return p.Routes()[0].Admission().Inflight() == 0 })
}
