package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/config"
	"sluice/internal/testutil"
	"sluice/telemetry"
)

// TestHelperUpstream is not a test: re-executed with SLUICE_HELPER_UPSTREAM=1
// it serves a small fixed body on loopback and prints its address, so that
// benchmarks can count the proxy's allocations without the upstream's.
func TestHelperUpstream(t *testing.T) {
	if os.Getenv("SLUICE_HELPER_UPSTREAM") != "1" {
		t.Skip("helper process for benchmarks")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	body := []byte(strings.Repeat("x", 128))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		w.Write(body)
	})}
	go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }() // parent gone → exit
	srv.Serve(ln)
}

func startHelperUpstream(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperUpstream$")
	cmd.Env = append(os.Environ(), "SLUICE_HELPER_UPSTREAM=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return "http://" + strings.TrimSpace(addr)
}

// reportCPU starts measuring the CPU time (user and system) the whole
// process spends, client included; the returned function reports it per
// op as cpu-ns/op. Wall time per op on a shared machine says little about
// cost; CPU time does.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() { b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op") }
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestHelperClient is not a test: re-executed with SLUICE_HELPER_CLIENT set
// to a URL, it GETs that URL over SLUICE_HELPER_CONNS connections at once
// as many times in all as each line of its stdin says, and answers each
// line with the statuses it got, as a map printed by fmt.
func TestHelperClient(t *testing.T) {
	url := os.Getenv("SLUICE_HELPER_CLIENT")
	if url == "" {
		t.Skip("helper process for benchmarks")
	}
	conns, _ := strconv.Atoi(os.Getenv("SLUICE_HELPER_CONNS"))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, _ := strconv.ParseInt(in.Text(), 10, 64)
		var (
			next     atomic.Int64
			mu       sync.Mutex // guards statuses
			statuses = map[int]int64{}
			wg       sync.WaitGroup
		)
		for range conns {
			wg.Go(func() {
				for next.Add(1) <= n {
					code := -1 // a transport error
					if resp, err := client.Get(url); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						code = resp.StatusCode
					}
					mu.Lock()
					statuses[code]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		fmt.Println(statuses)
	}
	os.Exit(0)
}

// remoteClient starts TestHelperClient on url and returns a benchmark that
// has it send b.N requests, each of which must be answered want. The
// client is another process, so the CPU time, allocations and memory
// reported are the proxy's own and its net/http server's (and for
// forwarded requests the upstream exchange's: the upstream is another
// process too).
func remoteClient(b *testing.B, url string, want int) func(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperClient$")
	// 16 connections: enough to keep the proxy busy, as under overload.
	cmd.Env = append(os.Environ(), "SLUICE_HELPER_CLIENT="+url, "SLUICE_HELPER_CONNS=16")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	out := bufio.NewReader(stdout)
	return func(b *testing.B) {
		b.ReportAllocs()
		b.ResetTimer()
		start := processCPU()
		fmt.Fprintln(stdin, b.N)
		got, err := out.ReadString('\n')
		cpu := processCPU() - start
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if want := fmt.Sprintf("map[%d:%d]\n", want, b.N); got != want {
			b.Fatalf("statuses %s, want %s", strings.TrimSpace(got), strings.TrimSpace(want))
		}
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	}
}

// discardWriter is the cheapest possible client side: it keeps headers and
// drops the body.
type discardWriter struct {
	h      http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(s int)           { d.status = s }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// benchConfig is BenchmarkProxy's config: one route to up with a rate
// limit and a bulkhead that never act, the top-level YAML top before it and
// extra keys for the rate limit.
func benchConfig(b *testing.B, top, up, rateLimit string) *config.Config {
	b.Helper()
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`%s
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - name: r
    match: {path_prefix: /}
    upstream: u
    rate_limit: {rps: 1000000000, burst: 1000000000%s}
    bulkhead: {max_concurrent: 100000}
`, top, up, rateLimit)))
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkProxy measures one proxied GET of a 128-byte body through a route
// with a bulkhead and rate limit configured but never triggered.
//   - handler: ServeHTTP called directly; allocs/op are the proxy's own
//     (routing, rewrite, transport), since the upstream is another process.
//   - loopback: a real client over a real listener, as a user would see it.
func BenchmarkProxy(b *testing.B) {
	up := startHelperUpstream(b)
	cfg := benchConfig(b, "", up, "")
	p, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()

	handler := func(p *Proxy) func(b *testing.B) {
		return func(b *testing.B) {
			req := httptest.NewRequest("GET", "http://bench.local/items/1", nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				p.ServeHTTP(w, req)
				if w.status != 200 {
					b.Fatalf("status %d", w.status)
				}
			}
		}
	}
	// Metrics are always on; tracing and the access log are off.
	b.Run("handler", handler(p))

	// The costs of the optional extras, each on its own.
	tp, err := telemetry.New(context.Background(), config.Tracing{Exporter: "stdout", SampleRatio: 1, ServiceName: "bench"}, "", io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	traced, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler), Tracer: tp.Tracer(), Propagator: tp.Propagator()})
	if err != nil {
		b.Fatal(err)
	}
	defer traced.Close()
	b.Run("handler-traced", handler(traced))
	logged, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler), AccessLog: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer logged.Close()
	b.Run("handler-accesslog", handler(logged))

	// The same route behind every limit of the overload manager's door:
	// max_inflight (a compare-and-swap) and the memory guard (a load).
	ocfg := benchConfig(b, "server: {max_inflight: 1000000, memory_limit: 1TiB}", up, "")
	limited, err := New(ocfg, Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer limited.Close()
	b.Run("handler-overload", handler(limited))

	// The same route with its limit global: shared through a real Redis,
	// spent from leases.
	redis := testutil.StartRedis(b, testutil.RedisOptions{})
	gcfg := benchConfig(b, fmt.Sprintf("redis: {addrs: [%q], timeout: 100ms}", redis.Addr), up, ", scope: global")
	global, err := New(gcfg, Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer global.Close()
	b.Run("handler-global", handler(global))
	srv := httptest.NewServer(p)
	defer srv.Close()
	b.Run("loopback-remote", remoteClient(b, srv.URL+"/items/1", 200))
	b.Run("loopback", func(b *testing.B) {
		srv := httptest.NewServer(p)
		defer srv.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
		b.ReportAllocs()
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := client.Get(srv.URL + "/items/1")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	})
}

// BenchmarkReject measures the refusals an overloaded route answers most,
// each on a route already saturated before the timer starts:
//   - rate_limited: a route-wide bucket of burst 1 refilling at 0.01 rps,
//     spent by one request;
//   - queue_full: max_concurrent 1 held by a request its upstream never
//     answers, and no queue (max_depth 0);
//   - breaker_open: an upstream whose breaker one refused dial opened.
//
// Metrics are on and tracing off. The plain sub-benchmarks have no access
// log; accesslog-* write it as JSON to io.Discard, as server.access_log
// does to stderr (past the budget, refusals are folded into counts).
//
// loopback-rate_limited is a real client over a real listener, to compare
// with BenchmarkProxy/loopback; loopback-remote-rate_limited has the client
// in another process, so that its cpu-ns/op are the proxy's alone, to
// compare with BenchmarkProxy/loopback-remote. loopback-remote-floor is a
// bare net/http handler writing the same answer: what no work of sluice's
// can take away.
func BenchmarkReject(b *testing.B) {
	release := make(chan struct{})
	held := make(chan struct{}, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/queue" {
			held <- struct{}{}
			<-release
		}
	}))
	defer up.Close()
	dead := closedPortURL(b)
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
upstreams:
  - {name: u, targets: ["%s"]}
  - {name: dead, targets: ["%s"], breaker: {consecutive_failures: 1, open_timeout: 5m}}
routes:
  - {name: rl, match: {path_prefix: /rl}, upstream: u, rate_limit: {rps: 0.01, burst: 1}}
  - {name: queue, match: {path_prefix: /queue}, upstream: u, bulkhead: {max_concurrent: 1}, queue: {max_depth: 0}}
  - {name: breaker, match: {path_prefix: /breaker}, upstream: dead}
`, up.URL, dead)))
	if err != nil {
		b.Fatal(err)
	}
	var holders sync.WaitGroup
	defer func() { close(release); holders.Wait() }()
	// saturated returns a proxy whose three routes refuse every request.
	saturated := func(o Options) *Proxy {
		p, err := New(cfg, o)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(p.Close)
		for path, want := range map[string]int{"/rl": 200, "/breaker": 502} {
			w := httptest.NewRecorder()
			p.ServeHTTP(w, httptest.NewRequest("GET", "http://bench.local"+path, nil))
			if w.Code != want {
				b.Fatalf("priming %s: status %d, want %d", path, w.Code, want)
			}
		}
		holders.Go(func() {
			p.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://bench.local/queue", nil))
		})
		<-held
		return p
	}
	cases := []struct {
		name, path string
		status     int
	}{
		{"rate_limited", "/rl", 429},
		{"queue_full", "/queue", 503},
		{"breaker_open", "/breaker", 503},
	}
	handler := func(p *Proxy, path string, status int) func(b *testing.B) {
		return func(b *testing.B) {
			req := httptest.NewRequest("GET", "http://bench.local"+path, nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				p.ServeHTTP(w, req)
				if w.status != status {
					b.Fatalf("status %d, want %d", w.status, status)
				}
			}
		}
	}
	plain := saturated(Options{Log: slog.New(slog.DiscardHandler)})
	for _, c := range cases {
		b.Run(c.name, handler(plain, c.path, c.status))
	}
	logged := saturated(Options{Log: slog.New(slog.DiscardHandler), AccessLog: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	for _, c := range cases {
		b.Run("accesslog-"+c.name, handler(logged, c.path, c.status))
	}
	srv := httptest.NewServer(plain)
	defer srv.Close()
	b.Run("loopback-remote-rate_limited", remoteClient(b, srv.URL+"/rl", 429))
	// The floor under any refusal: a handler that only copies in the same
	// headers and body, prepared beforehand, and does nothing else.
	fw := httptest.NewRecorder()
	plain.ServeHTTP(fw, httptest.NewRequest("GET", "http://bench.local/rl", nil))
	floorHdr, floorBody := fw.Result().Header, fw.Body.Bytes()
	floor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range floorHdr {
			h[k] = v
		}
		w.WriteHeader(429)
		w.Write(floorBody)
	}))
	defer floor.Close()
	b.Run("loopback-remote-floor", remoteClient(b, floor.URL, 429))
	b.Run("loopback-rate_limited", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
		b.ReportAllocs()
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := client.Get(srv.URL + "/rl")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 429 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	})
}
