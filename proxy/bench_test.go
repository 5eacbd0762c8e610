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
	"strings"
	"testing"

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

// discardWriter is the cheapest possible client side: it keeps headers and
// drops the body.
type discardWriter struct {
	h      http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(s int)           { d.status = s }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkProxy measures one proxied GET of a 128-byte body through a route
// with a bulkhead and rate limit configured but never triggered.
//   - handler: ServeHTTP called directly; allocs/op are the proxy's own
//     (routing, rewrite, transport), since the upstream is another process.
//   - loopback: a real client over a real listener, as a user would see it.
func BenchmarkProxy(b *testing.B) {
	up := startHelperUpstream(b)
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - name: r
    match: {path_prefix: /}
    upstream: u
    rate_limit: {rps: 1000000000, burst: 1000000000}
    bulkhead: {max_concurrent: 100000}
`, up)))
	if err != nil {
		b.Fatal(err)
	}
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
	ocfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
server: {max_inflight: 1000000, memory_limit: 1TiB}
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - name: r
    match: {path_prefix: /}
    upstream: u
    rate_limit: {rps: 1000000000, burst: 1000000000}
    bulkhead: {max_concurrent: 100000}
`, up)))
	if err != nil {
		b.Fatal(err)
	}
	limited, err := New(ocfg, Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer limited.Close()
	b.Run("handler-overload", handler(limited))

	// The same route with its limit global: shared through a real Redis,
	// spent from leases.
	redis := testutil.StartRedis(b, testutil.RedisOptions{})
	gcfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
redis: {addrs: [%q], timeout: 100ms}
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - name: r
    match: {path_prefix: /}
    upstream: u
    rate_limit: {rps: 1000000000, burst: 1000000000, scope: global}
    bulkhead: {max_concurrent: 100000}
`, redis.Addr, up)))
	if err != nil {
		b.Fatal(err)
	}
	global, err := New(gcfg, Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer global.Close()
	b.Run("handler-global", handler(global))
	b.Run("loopback", func(b *testing.B) {
		srv := httptest.NewServer(p)
		defer srv.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
		b.ReportAllocs()
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
