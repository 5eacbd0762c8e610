package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/admission"
	"sluice/config"
	"sluice/internal/testutil"
)

// detectorOff turns the saturation detector off in a test's config that
// does not set server.sched_latency_limit itself. The detector judges the
// whole machine, which the tests share with the other packages' tests
// under -race: on a busy machine it would refuse these tests' requests
// overloaded, whatever they test. Its own tests set the limit.
func detectorOff(cfg *config.Config, yaml string) {
	if !strings.Contains(yaml, "sched_latency_limit") {
		cfg.Server.SchedLatencyLimit = 0
	}
}

func startServer(t *testing.T, yaml string) *Server {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	detectorOff(cfg, yaml)
	s, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler), Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestGracefulDrain holds requests in the upstream, starts a shutdown, and
// checks: readiness goes 503 at once, new connections are refused, and every
// in-flight request still completes with the upstream's answer.
func TestGracefulDrain(t *testing.T) {
	const n = 10
	entered := make(chan struct{}, n)
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "done")
	}))
	defer up.Close()
	s := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", shutdown_grace: 30s}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, up.URL))
	proxyURL, adminURL := "http://"+s.ProxyAddr(), "http://"+s.AdminAddr()
	if got := status(t, adminURL+"/readyz"); got != 200 {
		t.Fatalf("/readyz before drain: %d", got)
	}

	type result struct {
		status int
		body   string
		err    error
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		go func() {
			// A fresh connection each, so the drain cannot reuse one.
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get(proxyURL + "/work")
			if err != nil {
				results <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{resp.StatusCode, string(b), err}
		}()
	}
	for i := 0; i < n; i++ {
		<-entered
	}

	drained := make(chan struct{})
	go func() { s.Shutdown(); close(drained) }()

	// Readiness flips first; the admin listener serves through the drain.
	testutil.WaitFor(t, "readyz 503", func() bool { return status(t, adminURL+"/readyz") == 503 })
	if got := status(t, adminURL+"/healthz"); got != 200 {
		t.Errorf("/healthz while draining: %d, want 200", got)
	}
	testutil.WaitFor(t, "proxy listener closed", func() bool {
		c, err := net.Dial("tcp", s.ProxyAddr())
		if err == nil {
			c.Close()
		}
		return err != nil
	})

	close(release)
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil || r.status != 200 || r.body != "done" {
			t.Errorf("in-flight request lost in drain: status %d body %q err %v", r.status, r.body, r.err)
		}
	}
	<-drained
}

// TestDrainGraceExpires checks a request still running after shutdown_grace
// is cut instead of holding the process forever.
// TestDrainRefusesQueued: at shutdown, requests holding a slot finish and
// requests waiting in the queue get 503 shutting_down without Retry-After.
func TestDrainRefusesQueued(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "done")
	}))
	defer up.Close()
	s := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", shutdown_grace: 30s}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, bulkhead: {max_concurrent: 2}, queue: {max_depth: 5, max_wait: 1m}}]
`, up.URL))
	type answer struct {
		status        int
		reason, retry string
	}
	answers := make(chan answer, 5)
	for i := 0; i < 5; i++ {
		go func() {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get("http://" + s.ProxyAddr() + "/")
			if err != nil {
				answers <- answer{status: -1, reason: err.Error()}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, resp.Header.Get("Sluice-Reject"), resp.Header.Get("Retry-After")}
		}()
	}
	<-entered
	<-entered
	adm := s.Proxy().Routes()[0].Admission()
	testutil.WaitFor(t, "3 queued", func() bool { return adm.QueueDepth() == 3 })
	drained := make(chan struct{})
	go func() { s.Shutdown(); close(drained) }()
	got := map[answer]int{}
	for i := 0; i < 3; i++ {
		got[<-answers]++
	}
	if want := (answer{503, "shutting_down", ""}); got[want] != 3 {
		t.Errorf("queued requests at shutdown got %v, want 3 × %v", got, want)
	}
	close(release)
	for i := 0; i < 2; i++ {
		if a := <-answers; a.status != 200 {
			t.Errorf("in-flight request at shutdown: %+v, want 200", a)
		}
	}
	<-drained
}

func TestDrainGraceExpires(t *testing.T) {
	entered := make(chan struct{})
	hang := make(chan struct{})
	defer close(hang)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	s := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", shutdown_grace: 50ms}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, timeout: 0}]
`, up.URL))
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + s.ProxyAddr() + "/hang")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	s.Shutdown() // returns after the grace, having cut the connection
	if err := <-errc; err == nil {
		t.Error("request outliving the grace period completed; want its connection cut")
	}
}

func TestServerHardening(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	s := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", read_header_timeout: 100ms, max_header_bytes: 1024}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, up.URL))

	t.Run("max_header_bytes", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+s.ProxyAddr()+"/", nil)
		// net/http allows 4096 bytes of slack over MaxHeaderBytes.
		req.Header.Set("X-Big", strings.Repeat("a", 8<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
	})
	t.Run("read_header_timeout", func(t *testing.T) {
		c, err := net.Dial("tcp", s.ProxyAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // and never finish
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		// The server gives up on the slow client and closes (after a 408
		// on newer Go versions); either way the read ends, not the deadline.
		_, err = io.ReadAll(bufio.NewReader(c))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("slow-header client still connected after 10s; read_header_timeout not applied")
		}
	})
}

func TestStartFailsOnBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
server: {listen: "%s"}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["http://127.0.0.1:1"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, ln.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler), Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "proxy listener") {
		t.Fatalf("Start on a busy port: %v, want a proxy listener error", err)
	}
}

// TestMetricsPassPromtool scrapes a live /metrics after traffic of every
// kind (admitted, refused, unrouted, breaker trips, upstream errors) and
// runs the real `promtool check metrics` on it.
func TestMetricsPassPromtool(t *testing.T) {
	promtool := testutil.NeedTool(t, "promtool")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "no", http.StatusBadGateway)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	redis := testutil.StartRedis(t, testutil.RedisOptions{})
	// A generous decision timeout: the store must stay up (the metrics
	// below say so) on a loaded test machine, where Redis answers in more
	// than the default 5ms.
	s := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
redis: {addrs: [%q], timeout: 500ms}
upstreams:
  - {name: u, targets: ["%s"], breaker: {consecutive_failures: 2}}
routes:
  - {name: limited, match: {path_prefix: /limited}, upstream: u, rate_limit: {rps: 1, burst: 1}}
  - {name: global, match: {path_prefix: /global}, upstream: u, rate_limit: {rps: 1, burst: 1, scope: global}}
  - {name: pooled, match: {path_prefix: /pooled}, upstream: u, bulkhead: {max_concurrent: 2}, queue: {max_depth: 2, max_wait: 1s}}
  - {name: failing, match: {path_prefix: /fail}, upstream: u}
`, redis.Addr, up.URL))
	base := "http://" + s.ProxyAddr()
	for _, p := range []string{"/limited", "/limited", "/global", "/global", "/pooled", "/nowhere", "/fail", "/fail", "/fail"} {
		status(t, base+p)
	}
	resp, err := http.Get("http://" + s.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		"sluice_requests_total", "sluice_request_duration_seconds_bucket", "sluice_admission_admitted_total",
		"sluice_admission_rejected_total", "sluice_queue_depth", "sluice_queue_capacity", "sluice_queue_wait_seconds_bucket",
		"sluice_inflight", "sluice_bulkhead_capacity", "sluice_backpressure_ratio", "sluice_breaker_state",
		"sluice_breaker_transitions_total", "sluice_upstream_requests_total", "sluice_config_reloads_total",
	} {
		if !strings.Contains(string(body), "\n"+name+"{") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for _, want := range []string{
		`sluice_admission_rejected_total{reason="rate_limited",route="limited"} 1`,
		`sluice_breaker_state{upstream="u"} 2`,
		`sluice_requests_total{code="404",route=""} 1`,
		`sluice_config_reloads_total{result="error"} 0`,
		`sluice_admission_rejected_total{reason="rate_limited",route="global"} 1`,
		"\nsluice_ratelimit_store_up 1\n",
		"\nsluice_ratelimit_store_errors_total 0\n",
		`sluice_connections{state="refused"} 0`,
		"\nsluice_overload_state 0\n",
		`sluice_admission_rejected_total{reason="overloaded",route=""} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestShutdownDuringLoad starts a drain while clients keep sending: every
// request that reached sluice is answered (200 if it held or won a slot,
// 503 shutting_down if it was queued), new connections are refused once
// the listener closes, and nothing is left in flight.
func TestShutdownDuringLoad(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	s := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", shutdown_grace: 10s, access_log: false}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, bulkhead: {max_concurrent: 4}, queue: {max_depth: 32, max_wait: 10s}}]
`, up.URL))
	url := "http://" + s.ProxyAddr() + "/"
	var mu sync.Mutex
	answers := map[string]int{}
	var refused atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			for {
				resp, err := client.Get(url)
				if err != nil {
					refused.Add(1) // the listener is gone: this client is done
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				answers[fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("Sluice-Reject"))]++
				mu.Unlock()
			}
		})
	}
	adm := s.Proxy().Routes()[0].Admission()
	testutil.WaitFor(t, "load under way with a queue", func() bool { return adm.Admitted() > 40 && adm.QueueDepth() > 0 })
	s.Shutdown()
	wg.Wait()

	var answered int
	for k, n := range answers {
		answered += n
		if k != "200 " && k != "503 shutting_down" {
			t.Errorf("%d answers %q: want only 200 and 503 shutting_down", n, k)
		}
	}
	if answers["503 shutting_down"] == 0 {
		t.Errorf("no queued request was refused at shutdown: %v", answers)
	}
	var reached uint64 = adm.Admitted()
	for _, r := range []admission.Reason{admission.RateLimited, admission.QueueFull, admission.QueueTimeout, admission.BreakerOpen, admission.NoHealthyUpstream, admission.ShuttingDown, admission.ClientGone} {
		reached += adm.Rejected(r)
	}
	if reached != uint64(answered) {
		t.Errorf("sluice handled %d requests but clients got %d answers: requests were lost in the drain", reached, answered)
	}
	if adm.Inflight() != 0 || adm.QueueDepth() != 0 {
		t.Errorf("after the drain: inflight %d, queued %d", adm.Inflight(), adm.QueueDepth())
	}
	t.Logf("answers %v, refused connections %d", answers, refused.Load())
}
