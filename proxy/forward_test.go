package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestBalancingEndToEnd(t *testing.T) {
	a, b, c := echoUpstream(t, "a"), echoUpstream(t, "b"), echoUpstream(t, "c")
	p := startProxy(t, fmt.Sprintf(`
upstreams:
  - {name: pool, targets: %s}
routes:
  - {name: all, match: {path_prefix: /}, upstream: pool}
`, yamlList(a.URL, b.URL, c.URL)))
	counts := map[string]int{}
	for i := 0; i < 30; i++ {
		_, body := get(t, p.URL+"/")
		counts[decodeEcho(t, body).Name]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if counts[n] != 10 {
			t.Errorf("round_robin: %s answered %d of 30, want 10", n, counts[n])
		}
	}
}

// TestLeastInflightEndToEnd pins in-flight loads on three real targets, in
// every order, and checks that real requests all go to the least loaded.
func TestLeastInflightEndToEnd(t *testing.T) {
	a, b, c := echoUpstream(t, "a"), echoUpstream(t, "b"), echoUpstream(t, "c")
	p := startProxy(t, fmt.Sprintf(`
upstreams:
  - {name: pool, balance: least_inflight, targets: %s}
routes:
  - {name: all, match: {path_prefix: /}, upstream: pool}
`, yamlList(a.URL, b.URL, c.URL)))
	targets := p.Upstreams()[0].Targets()
	names := []string{"a", "b", "c"}
	for _, loads := range permutations([]int64{0, 4, 9}) {
		for i, l := range loads {
			targets[i].inflight.Store(l) // as if l long requests were open there
		}
		want := names[slices.Index(loads, 0)]
		for i := 0; i < 6; i++ {
			_, body := get(t, p.URL+"/")
			if got := decodeEcho(t, body).Name; got != want {
				t.Fatalf("loads %v: request %d went to %s, want %s", loads, i, got, want)
			}
		}
	}
	for _, tg := range targets {
		tg.inflight.Store(0)
	}
}

func TestForwardedHeaders(t *testing.T) {
	up := echoUpstream(t, "u")
	p := startProxy(t, fmt.Sprintf(`
upstreams:
  - {name: u, targets: ["%s"]}
routes:
  - {name: r, match: {path_prefix: /api}, upstream: u, strip_prefix: true}
`, up.URL))
	req, _ := http.NewRequest("GET", p.URL+"/api/items/%2Fx?q=1&r=2", nil)
	req.Host = "shop.example.com:8443"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("Forwarded", "for=203.0.113.9")
	req.Header.Set("Connection", "keep-alive, X-Secret-Hop")
	req.Header.Set("X-Secret-Hop", "must not pass")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	req.Header.Set("X-End-To-End", "kept")
	resp, body := do(t, req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	checks := []struct{ what, got, want string }{
		{"Host", e.Host, "shop.example.com:8443"},
		{"path", e.Path, "/items//x"},
		{"raw path", e.RawPath, "/items/%2Fx"},
		{"query", e.Query, "q=1&r=2"},
		{"X-Forwarded-For", e.Header.Get("X-Forwarded-For"), "203.0.113.9, 127.0.0.1"},
		{"X-Forwarded-Host", e.Header.Get("X-Forwarded-Host"), "shop.example.com:8443"},
		{"X-Forwarded-Proto", e.Header.Get("X-Forwarded-Proto"), "http"},
		{"Forwarded", e.Header.Get("Forwarded"), `for=203.0.113.9, for=127.0.0.1;host="shop.example.com:8443";proto=http`},
		{"X-End-To-End", e.Header.Get("X-End-To-End"), "kept"},
		{"X-Secret-Hop", e.Header.Get("X-Secret-Hop"), ""},
		{"Keep-Alive", e.Header.Get("Keep-Alive"), ""},
		{"Proxy-Authorization", e.Header.Get("Proxy-Authorization"), ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("upstream saw %s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

// TestSSEStreamsIncrementally proves events are flushed as they come: the
// upstream sends the second event only after the client has read the first
// through the proxy, so a buffering proxy would deadlock (and time out).
func TestSSEStreamsIncrementally(t *testing.T) {
	gotFirst := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		fmt.Fprint(w, "data: one\n\n")
		rc.Flush()
		select {
		case <-gotFirst:
		case <-time.After(10 * time.Second):
			return // the client never saw event one: the test fails below
		}
		fmt.Fprint(w, "data: two\n\n")
		rc.Flush()
	}))
	defer up.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, up.URL))
	resp, err := http.Get(p.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(gotFirst)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest of stream %q: second event missing (was the first buffered?)", rest)
	}
}

func TestWebSocketEcho(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	defer up.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: ws, match: {path: /ws}, upstream: u, timeout: 0}]
`, up.URL))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, m := range []string{"hello", "world", strings.Repeat("x", 70000)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo: "+m {
			t.Fatalf("got %.40q, want echo of %.20q", got, m)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// zeroReader yields n zero bytes without holding them in memory.
type zeroReader struct{ left int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.left {
		p = p[:z.left]
	}
	clear(p)
	z.left -= int64(len(p))
	return len(p), nil
}

// TestLargeUploadStreams sends 100 MB through the proxy and checks that the
// whole process allocated far less than the body: the proxy streams it
// rather than buffering.
func TestLargeUploadStreams(t *testing.T) {
	const size = 100 << 20
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, n)
	}))
	defer up.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: up, match: {path: /upload}, upstream: u}]
`, up.URL))

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	req, _ := http.NewRequest("POST", p.URL+"/upload", &zeroReader{left: size})
	req.ContentLength = size
	resp, body := do(t, req)
	runtime.ReadMemStats(&after)
	if resp.StatusCode != 200 || string(body) != fmt.Sprint(size) {
		t.Fatalf("status %d, upstream counted %s bytes, want %d", resp.StatusCode, body, size)
	}
	// Client, proxy and upstream share this process, so this bounds all
	// three; a buffering proxy alone would allocate at least 100 MB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("allocated %d MB while moving a %d MB body", alloc>>20, size>>20)
	}
}

func TestUpstreamErrors(t *testing.T) {
	dead := closedPortURL(t) // connect refused

	hang := make(chan struct{})
	defer close(hang)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()

	p := startProxy(t, fmt.Sprintf(`
upstreams:
  - {name: dead, targets: ["%s"]}
  - {name: slowhdr, targets: ["%s"], response_header_timeout: 100ms}
  - {name: slowroute, targets: ["%s"]}
routes:
  - {name: dead, match: {path: /dead}, upstream: dead}
  - {name: slowhdr, match: {path: /slowhdr}, upstream: slowhdr}
  - {name: deadline, match: {path: /deadline}, upstream: slowroute, timeout: 100ms}
`, dead, slow.URL, slow.URL))

	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/dead", http.StatusBadGateway},
		{"/slowhdr", http.StatusGatewayTimeout},
		{"/deadline", http.StatusGatewayTimeout},
	} {
		resp, body := get(t, p.URL+tc.path)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d; body %s", tc.path, resp.StatusCode, tc.status, body)
			continue
		}
		pb := decodeProblem(t, resp, body)
		if pb.Status != tc.status || pb.Route != strings.TrimPrefix(tc.path, "/") {
			t.Errorf("%s: problem %+v", tc.path, pb)
		}
		if strings.Contains(string(body), "127.0.0.1") || strings.Contains(string(body), "dial") {
			t.Errorf("%s: internal error leaked to the client: %s", tc.path, body)
		}
	}
}

// TestClientGoneIs499 cancels a request while the upstream holds it and
// checks the proxy logs it as 499 and writes nothing.
func TestClientGoneIs499(t *testing.T) {
	entered := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}))
	defer up.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, up.URL))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", p.URL+"/wait", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error %v, want context.Canceled", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs.String(), `"status":499`) {
		if time.Now().After(deadline) {
			t.Fatalf("no 499 logged; logs:\n%s", p.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if tg := p.Upstreams()[0].Targets()[0]; tg.Inflight() != 0 {
		t.Errorf("in-flight count %d after the request ended", tg.Inflight())
	}
}
