package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
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
  - {name: u, targets: ["%s"]}
routes:
  - {name: api, match: {path_prefix: /api}, upstream: u, strip_prefix: true}
  - {name: all, match: {path_prefix: /}, upstream: u}
`, up.URL)
	direct := startProxy(t, cfg)
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
	}
	for _, rq := range reqs {
		t.Run(rq.method+rq.path, func(t *testing.T) {
			var got [2]answered
			var saw [2]seen
			for i, p := range []*testProxy{direct, viaRP} {
				got[i] = sendRaw(t, p.URL, rq.method, rq.path, rq.header)
				saw[i] = last()
			}
			if !reflect.DeepEqual(saw[0], saw[1]) {
				t.Errorf("upstream saw\n direct:        %+v\n ReverseProxy:  %+v", saw[0], saw[1])
			}
			if !reflect.DeepEqual(got[0], got[1]) {
				t.Errorf("client got\n direct:        %+v\n ReverseProxy:  %+v", got[0], got[1])
			}
			if got[0].Status == 0 || got[0].Status >= 500 {
				t.Errorf("status %d", got[0].Status)
			}
		})
	}
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
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if res.StatusCode < 200 {
			a.Interim = append(a.Interim, res.StatusCode)
			continue
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		res.Header.Del("Date")
		a.Status, a.Header, a.Body, a.Trailer = res.StatusCode, res.Header, string(body), res.Trailer
		return a
	}
}
