package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/internal/testutil"
	"sluice/proxy/internal/direct"
	"sluice/proxy/internal/h1"
)

// seen is what the upstream received of one request.
type seen struct {
	Method, URI, Host, Proto string
	Header                   http.Header
}

// answered is what the client received.
type answered struct {
	Status  int
	Header  http.Header
	Body    string
	Trailer http.Header
	Interim []int
	BodyErr string // the answer broke off
}

// differentialUpstream answers by path with every kind of response framing
// and header the forwarding code treats apart, and records what it saw.
func differentialUpstream(t *testing.T) (*httptest.Server, func() seen) {
	var mu sync.Mutex
	var last seen
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last = seen{r.Method, r.RequestURI, r.Host, r.Proto, r.Header.Clone()}
		mu.Unlock()
		h := w.Header()
		switch strings.TrimPrefix(r.URL.Path, "/api") {
		case "/plain":
			h.Set("Content-Type", "text/plain")
			h["Set-Cookie"] = []string{"a=1", "b=2"}
			h.Set("Connection", "X-Hop-Resp")
			h.Set("X-Hop-Resp", "dropped")
			h.Set("Keep-Alive", "timeout=5")
			h.Set("X-End", "kept")
			h.Set("Ratelimit", "upstream's own")
			io.WriteString(w, "plain body\n")
		case "/chunked":
			h.Set("Trailer", "X-Sum")
			w.WriteHeader(200)
			io.WriteString(w, "part one,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
			h.Set("X-Sum", "42")
			h.Set(http.TrailerPrefix+"X-Late", "unannounced")
		case "/early":
			h.Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			h.Del("Link")
			io.WriteString(w, "after hints")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			h.Set("Etag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case "/sse":
			h.Set("Content-Type", "text/event-stream; charset=utf-8")
			io.WriteString(w, "data: one\n\n")
		case "/close":
			// No length, no chunking: the body ends when the upstream
			// closes (HTTP/1.0-style), which a hijack makes it do.
			c, bw, _ := http.NewResponseController(w).Hijack()
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
			bw.Flush()
			c.Close()
		case "/slow", "/deadline-slow":
			// Longer than the upstream's response_header_timeout.
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		case "/cut":
			// The body breaks off after 5 of the 100 bytes announced.
			c, bw, _ := http.NewResponseController(w).Hijack()
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
			bw.Flush()
			c.Close()
		default:
			h.Set("Content-Type", "text/plain")
			io.WriteString(w, r.URL.Path)
		}
	}))
	t.Cleanup(s.Close)
	return s, func() seen { mu.Lock(); defer mu.Unlock(); return last }
}

// TestDirectMatchesReverseProxy sends the same requests through sluice's
// own forwarding and through httputil.ReverseProxy (noDirect), and checks
// that the upstream saw the same request and the client the same response.
func TestDirectMatchesReverseProxy(t *testing.T) {
	up, last := differentialUpstream(t)
	cfg := fmt.Sprintf(`
upstreams:
  - {name: u, targets: ["%s"], response_header_timeout: 200ms}
  - {name: down, targets: ["%s"]}
  - {name: u2, targets: ["%s"]}
routes:
  - {name: deadline, match: {path: /deadline-slow}, upstream: u2, timeout: 100ms}
  - {name: api, match: {path_prefix: /api}, upstream: u, strip_prefix: true}
  - {name: down, match: {path_prefix: /down}, upstream: down}
  - {name: all, match: {path_prefix: /}, upstream: u}
`, up.URL, closedPortURL(t), up.URL)
	withDirect := startProxy(t, cfg)
	viaRP := startProxy(t, cfg)
	viaRP.noDirect = true

	type req struct {
		method, path string
		header       map[string]string
	}
	reqs := []req{
		{"GET", "/plain", nil},
		{"HEAD", "/plain", nil},
		{"GET", "/api/plain?q=1&r=%20x", map[string]string{"User-Agent": "probe/1"}},
		{"GET", "/api/items/%2Fx?a=1;b=2", nil},
		{"GET", "/bad-escape?x=%zz&y", nil},
		{"GET", "/forced?", nil},
		{"POST", "/empty-post", nil},
		{"DELETE", "/x", map[string]string{"Content-Length": "0"}},
		{"GET", "/hops", map[string]string{
			"Connection":          "keep-alive, X-Secret-Hop, User-Agent",
			"X-Secret-Hop":        "must not pass",
			"User-Agent":          "listed in Connection",
			"Keep-Alive":          "timeout=5",
			"Proxy-Authorization": "Basic Zm9vOmJhcg==",
			"Proxy-Connection":    "keep-alive",
			"Te":                  "gzip, trailers",
			"X-End-To-End":        "kept",
		}},
		{"GET", "/fwd", map[string]string{
			"X-Forwarded-For":   "203.0.113.9, 198.51.100.1",
			"X-Forwarded-Host":  "spoofed",
			"X-Forwarded-Proto": "https",
			"Forwarded":         `for=203.0.113.9;proto=https`,
			"Host":              "shop.example.com:8443",
		}},
		{"GET", "/no-ua", map[string]string{"User-Agent": ""}},
		{"GET", "/chunked", map[string]string{"Te": "trailers"}},
		{"GET", "/early", nil},
		{"GET", "/nocontent", nil},
		{"GET", "/notmodified", map[string]string{"If-None-Match": `"v1"`}},
		{"GET", "/sse", nil},
		{"GET", "/close", nil},
		// Failures: the same status, problem body and accounting.
		{"GET", "/down/x", nil},
		{"GET", "/slow", nil},
		{"GET", "/deadline-slow", nil},
		{"GET", "/cut", nil},
	}
	for _, rq := range reqs {
		t.Run(rq.method+rq.path, func(t *testing.T) {
			var got [2]answered
			var saw [2]seen
			for i, p := range []*testProxy{withDirect, viaRP} {
				got[i] = sendRaw(t, p.URL, rq.method, rq.path, rq.header)
				saw[i] = last()
			}
			if !reflect.DeepEqual(saw[0], saw[1]) {
				t.Errorf("upstream saw\n withDirect:        %+v\n ReverseProxy:  %+v", saw[0], saw[1])
			}
			if !reflect.DeepEqual(got[0], got[1]) {
				t.Errorf("client got\n withDirect:        %+v\n ReverseProxy:  %+v", got[0], got[1])
			}
		})
	}
	// Both proxies counted the same answers, upstream failures included.
	for i, rt := range withDirect.Routes() {
		if a, b := codeList(rt.Codes), codeList(viaRP.Routes()[i].Codes); !reflect.DeepEqual(a, b) {
			t.Errorf("route %s counted %v withDirect, %v through ReverseProxy", rt.Name(), a, b)
		}
	}
	for i, u := range withDirect.Upstreams() {
		if a, b := codeList(u.Codes), codeList(viaRP.Upstreams()[i].Codes); !reflect.DeepEqual(a, b) {
			t.Errorf("upstream %s counted %v withDirect, %v through ReverseProxy", u.Name(), a, b)
		}
	}
	// A body that breaks off aborts the answer: the connection closes
	// before net/http has flushed even the head (status 0 here), and the
	// request is counted with the status it had begun (200, aborted).
	want := map[string]int{"/down/x": 502, "/slow": 504, "/deadline-slow": 504, "/cut": 0}
	for path, code := range want {
		if got := sendRaw(t, withDirect.URL, "GET", path, nil); got.Status != code {
			t.Errorf("GET %s: status %d, want %d", path, got.Status, code)
		}
	}
	if got := sendRaw(t, withDirect.URL, "GET", "/cut", nil); got.BodyErr == "" {
		t.Errorf("GET /cut: answer %+v ended cleanly, want it broken off", got)
	}
}

// codeList lists what a Codes method reports, as "status×count".
func codeList(codes func(func(code int, n uint64))) []string {
	var l []string
	codes(func(code int, n uint64) { l = append(l, fmt.Sprint(code, "×", n)) })
	return l
}

// sendRaw sends one request on a new connection, written by hand so
// that headers Go's client would rewrite (Connection, Te, Host, an empty
// User-Agent) go out as given, and reads the response with its interim
// responses and trailers.
func sendRaw(t *testing.T, base, method, path string, header map[string]string) answered {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, path)
	if _, ok := header["Host"]; !ok {
		b.WriteString("Host: example.test\r\n")
	}
	if _, ok := header["User-Agent"]; !ok {
		b.WriteString("User-Agent: differential\r\n")
	}
	for k, v := range header {
		if k == "User-Agent" && v == "" {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var a answered
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			a.BodyErr = err.Error() // no (complete) head: the answer broke off
			return a
		}
		if res.StatusCode < 200 {
			a.Interim = append(a.Interim, res.StatusCode)
			continue
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			a.BodyErr = err.Error()
		}
		res.Header.Del("Date")
		a.Status, a.Header, a.Body, a.Trailer = res.StatusCode, res.Header, string(body), res.Trailer
		return a
	}
}

// FuzzDirectHead checks forwardDirect's upstream head against the one
// ReverseProxy, rewrite and h1.Transport make of the same request, for any
// request the server could have parsed: same method, target, Host and
// header fields (values in the same order), or an error from both.
func FuzzDirectHead(f *testing.F) {
	f.Add("GET", "/api/a%2Fb?x=1;y=2", "Connection: X-A, keep-alive\nX-A: 1\nTe: trailers, gzip\nX-Forwarded-For: 10.0.0.1\nForwarded: for=10.0.0.1", true)
	f.Add("POST", "/p?%zz", "User-Agent: \nKeep-Alive: 5\nProxy-Connection: x", false)
	f.Add("DELETE", "/api", "Connection: User-Agent\nUser-Agent: u\nCookie: a=1\nCookie: b=2", true)
	f.Add("OPTIONS", "/x?", "Host: other.example:81\nUpgrade: h2c", false)
	target, _ := url.Parse("http://127.0.0.1:9")
	f.Fuzz(func(t *testing.T, method, target2, lines string, strip bool) {
		raw := testutil.RequestHead(method, target2, lines)
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil || !strings.HasPrefix(r.URL.Path, "/") || r.ContentLength != 0 || r.Body != http.NoBody {
			return // the server would refuse it, or it has a body: not forwarded directly
		}
		r.RemoteAddr = "192.0.2.7:4711"
		st := &reqState{route: &Route{}, target: &Target{URL: target}}
		if strip {
			st.route.strip = "/api"
		}
		if !(&Proxy{}).direct(r, st) {
			return
		}

		var viaRP bytes.Buffer
		var rpErr error
		rp := &httputil.ReverseProxy{
			Rewrite: rewrite,
			Transport: roundTripFunc(func(out *http.Request) (*http.Response, error) {
				if !h1.Fast(out) {
					t.Fatalf("ReverseProxy's request would not take h1.Transport: %+v", out)
				}
				bw := bufio.NewWriter(&viaRP)
				if rpErr = h1.WriteRequestHead(bw, out); rpErr == nil {
					rpErr = bw.Flush()
				}
				return &http.Response{StatusCode: 204, Body: http.NoBody, Header: http.Header{}, Request: out}, nil
			}),
		}
		rp.ServeHTTP(httptest.NewRecorder(), r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))

		var viaDirect bytes.Buffer
		bw := bufio.NewWriter(&viaDirect)
		x := &direct.Request{R: r, W: httptest.NewRecorder(), Strip: st.route.strip, Target: target}
		dErr := x.WriteHead(bw)
		if dErr == nil {
			dErr = bw.Flush()
		}
		if (dErr == nil) != (rpErr == nil) {
			t.Fatalf("direct error %v, ReverseProxy error %v", dErr, rpErr)
		}
		if dErr != nil {
			return
		}
		a, errA := http.ReadRequest(bufio.NewReader(&viaDirect))
		b, errB := http.ReadRequest(bufio.NewReader(&viaRP))
		if errA != nil || errB != nil {
			t.Fatalf("heads do not parse: direct %v, ReverseProxy %v\n%q\n%q", errA, errB, viaDirect.String(), viaRP.String())
		}
		if a.Method != b.Method || a.RequestURI != b.RequestURI || a.Host != b.Host || !reflect.DeepEqual(a.Header, b.Header) {
			t.Fatalf("heads differ\n direct:       %s %s %s %v\n ReverseProxy: %s %s %s %v", a.Method, a.RequestURI, a.Host, a.Header, b.Method, b.RequestURI, b.Host, b.Header)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
