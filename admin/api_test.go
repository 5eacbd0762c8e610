package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/clock"
	"sluice/config"
	"sluice/monitor"
	"sluice/proxy"
)

type fixture struct {
	proxyURL, adminURL string
	p                  *proxy.Proxy
	smp                *monitor.Sampler
	admin              *Server
	clk                *clock.Fake
	releaseOnce        func()
}

// newFixture runs a real proxy in front of a real upstream whose /slow path
// holds requests until released, and a real admin listener over it.
func newFixture(t *testing.T, token string) *fixture {
	t.Helper()
	release := make(chan struct{})
	var once sync.Once
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow") {
			<-release
		}
		if strings.HasSuffix(r.URL.Path, "/boom") {
			w.WriteHeader(http.StatusInternalServerError) // an upstream failure, for the errors API
			return
		}
		io.WriteString(w, "ok")
	}))
	releaseAll := func() { once.Do(func() { close(release) }) }
	t.Cleanup(func() { releaseAll(); up.Close() })
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
admin: {token_file: /secret/path}
upstreams:
  - {name: api, targets: ["%s"], breaker: {consecutive_failures: 3, open_timeout: 30s}}
routes:
  - name: fast
    match: {path_prefix: /fast}
    upstream: api
    rate_limit: {rps: 1, burst: 3}
  - name: slow
    match: {path_prefix: /slow}
    upstream: api
    bulkhead: {max_concurrent: 2}
    queue: {max_depth: 1, max_wait: 1m}
`, up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	smp := monitor.NewSampler(50*time.Millisecond, 10, fc, slog.New(slog.DiscardHandler))
	p, err := proxy.New(cfg, proxy.Options{Log: slog.New(slog.DiscardHandler), Sampler: smp, Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(p)
	a := New(Options{Proxy: p, Config: func() *config.Config { return cfg }, Token: token,
		Version: "test", Started: fc.Now().Add(-time.Minute), Clock: fc})
	as := httptest.NewServer(a)
	t.Cleanup(func() { as.Close(); ps.Close(); p.Close() })
	f := &fixture{proxyURL: ps.URL, adminURL: as.URL, p: p, smp: smp, admin: a, clk: fc, releaseOnce: releaseAll}
	return f
}

// send makes one request to the admin listener, with the bearer token
// if given, and checks that any answer but 200 is a problem body.
func (f *fixture) send(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, f.adminURL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s %s: %d with Content-Type %q, want a problem", method, path, resp.StatusCode, ct)
		}
	}
	return resp.StatusCode, b
}

func (f *fixture) getJSON(t *testing.T, path, token string, v any) int {
	t.Helper()
	code, body := f.send(t, "GET", path, token, "")
	if v != nil && code == 200 {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, body)
		}
	}
	return code
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestRoutesAPIAddsUp(t *testing.T) {
	f := newFixture(t, "")
	f.admin.Tick()
	// fast: burst 3 at 1 rps: 3 admitted then 2 rate_limited.
	for i := 0; i < 5; i++ {
		status(t, f.proxyURL+"/fast")
	}
	status(t, f.proxyURL+"/nowhere") // 404, no route
	f.clk.Advance(time.Second)
	f.admin.Tick()

	var d routeDetail
	if code := f.getJSON(t, "/api/v1/routes/fast", "", &d); code != 200 {
		t.Fatalf("route detail: %d", code)
	}
	if d.AdmittedTotal != 3 || d.RejectedTotal["rate_limited"] != 2 {
		t.Errorf("admitted %d, rate_limited %d; want 3 and 2", d.AdmittedTotal, d.RejectedTotal["rate_limited"])
	}
	var rejected uint64
	for _, n := range d.RejectedTotal {
		rejected += n
	}
	if d.AdmittedTotal+rejected != 5 || d.RequestsByCode["200"] != 3 || d.RequestsByCode["429"] != 2 {
		t.Errorf("counts do not add up to the 5 sent: %+v codes %v", d.RejectedTotal, d.RequestsByCode)
	}
	if d.AdmittedPerSec != 3 || d.RejectedPerSec != 2 || d.RejectedPerSecByReason["rate_limited"] != 2 {
		t.Errorf("rates over the 1 s tick: admitted %v rejected %v by reason %v", d.AdmittedPerSec, d.RejectedPerSec, d.RejectedPerSecByReason)
	}
	if d.LatencyMs.Count != 3 {
		t.Errorf("latency quantiles %+v, want 3 admitted observations", d.LatencyMs)
	}
	if d.RateLimit == nil || d.RateLimit.RPS != 1 || d.RateLimit.Burst != 3 || d.RateLimit.Key != "none" {
		t.Errorf("rate_limit %+v", d.RateLimit)
	}
	if d.Breaker == nil || d.Breaker.State != "closed" {
		t.Errorf("breaker %+v", d.Breaker)
	}

	var o overview
	f.getJSON(t, "/api/v1/overview", "", &o)
	if o.Routes != 2 || o.Upstreams != 1 || o.RequestsTotal != 6 || o.AdmittedTotal != 3 || o.RejectedTotal != 2 {
		t.Errorf("overview %+v, want 2 routes, 1 upstream, 6 requests (one unrouted), 3 admitted, 2 rejected", o)
	}
	if o.UptimeMs != 61000 || o.Version != "test" {
		t.Errorf("uptime %d version %q", o.UptimeMs, o.Version)
	}

	var rs []routeSummary
	f.getJSON(t, "/api/v1/routes", "", &rs)
	if len(rs) != 2 || rs[0].Name != "fast" || rs[1].Name != "slow" || rs[1].MaxConcurrent != 2 || rs[1].QueueCapacity != 1 {
		t.Errorf("routes %+v", rs)
	}
}

// TestRatesAcrossReload reloads a config that changes the fast route, which
// gives it a new admission controller whose counters start from zero: its
// rates count the new admissions and never read the drop as a wrap-around.
func TestRatesAcrossReload(t *testing.T) {
	f := newFixture(t, "")
	for i := 0; i < 3; i++ {
		status(t, f.proxyURL+"/fast")
	}
	f.admin.Tick()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
upstreams:
  - {name: api, targets: ["%s"], breaker: {consecutive_failures: 3, open_timeout: 30s}}
routes:
  - name: fast
    match: {path_prefix: /fast}
    upstream: api
    rate_limit: {rps: 2, burst: 3}
`, f.p.Upstreams()[0].Targets()[0].URL)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.p.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	status(t, f.proxyURL+"/fast")
	f.clk.Advance(time.Second)
	f.admin.Tick()

	var d routeDetail
	if code := f.getJSON(t, "/api/v1/routes/fast", "", &d); code != 200 {
		t.Fatalf("route detail: %d", code)
	}
	if d.AdmittedTotal != 1 || d.AdmittedPerSec != 1 || d.RejectedPerSec != 0 {
		t.Errorf("after the reload: admitted %d at %v/s, rejected %v/s; want 1 at 1/s and 0/s",
			d.AdmittedTotal, d.AdmittedPerSec, d.RejectedPerSec)
	}
}

// TestBackpressureAPI saturates the slow route (2 in flight, 1 queued),
// samples on the fake clock, and reads the fields docs/SPEC.md names.
func TestBackpressureAPI(t *testing.T) {
	f := newFixture(t, "")
	done := make(chan int, 3)
	for i := 0; i < 3; i++ {
		go func() { done <- status(t, f.proxyURL+"/slow") }()
	}
	slow := f.p.Routes()[1].Admission()
	deadline := time.Now().Add(10 * time.Second)
	for slow.Inflight() != 2 || slow.QueueDepth() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("slow route never saturated: inflight %d depth %d", slow.Inflight(), slow.QueueDepth())
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		f.clk.Advance(50 * time.Millisecond)
		f.smp.Sample()
	}
	var raw map[string]any
	if code := f.getJSON(t, "/api/v1/routes/slow/backpressure", "", &raw); code != 200 {
		t.Fatal(code)
	}
	for _, k := range []string{"level", "ratio", "samples", "sample_interval_ms", "end_timestamp", "queue_usage", "bulkhead_usage"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("backpressure lacks %q: %v", k, raw)
		}
	}
	var bp monitor.Backpressure
	f.getJSON(t, "/api/v1/routes/slow/backpressure", "", &bp)
	want := monitor.Backpressure{Level: "high", Ratio: 1, Samples: 10, SampleIntervalMs: 50,
		EndTimestamp: f.clk.Now().UnixMilli(), QueueUsage: 1, BulkheadUsage: 1}
	if bp != want {
		t.Errorf("saturated route: %+v\nwant %+v", bp, want)
	}
	f.getJSON(t, "/api/v1/routes/fast/backpressure", "", &bp)
	if bp.Level != "ok" || bp.Ratio != 0 {
		t.Errorf("idle route: %+v, want ok", bp)
	}
	var o overview
	f.getJSON(t, "/api/v1/overview", "", &o)
	if o.RoutesByLevel["high"] != 1 || o.RoutesByLevel["ok"] != 1 {
		t.Errorf("routes by level %v", o.RoutesByLevel)
	}
	f.releaseOnce()
	for i := 0; i < 3; i++ {
		if c := <-done; c != 200 {
			t.Errorf("slow request: %d", c)
		}
	}
}

func TestUpstreamsAndConfigAPI(t *testing.T) {
	f := newFixture(t, "")
	var us []upstreamInfo
	f.getJSON(t, "/api/v1/upstreams", "", &us)
	if len(us) != 1 || us[0].Name != "api" || us[0].HealthyTargets != 1 || len(us[0].Targets) != 1 ||
		us[0].Breaker == nil || us[0].Breaker.State != "closed" || us[0].Breaker.OpenUntil != 0 {
		t.Errorf("upstreams %+v", us)
	}
	var u upstreamInfo
	if code := f.getJSON(t, "/api/v1/upstreams/api", "", &u); code != 200 || u.Balance != "round_robin" {
		t.Errorf("upstream api: %d %+v", code, u)
	}
	var cfg map[string]any
	f.getJSON(t, "/api/v1/config", "", &cfg)
	if tf := cfg["admin"].(map[string]any)["token_file"]; tf != "(redacted)" {
		t.Errorf("config shows token_file %v", tf)
	}
	for _, path := range []string{"/api/v1/routes/nope", "/api/v1/routes/nope/backpressure", "/api/v1/upstreams/nope", "/api/v2/x"} {
		if code := f.getJSON(t, path, "", nil); code != 404 {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
}

func TestTokenProtectsAPIAndDashboard(t *testing.T) {
	f := newFixture(t, "s3cret")
	// The dashboard at / answers 401 with an HTML login page instead of a
	// problem body: TestDashboardLogin covers it.
	for _, path := range []string{"/api/v1/overview", "/api/v1/routes", "/api/v1/config"} {
		if code := f.getJSON(t, path, "", nil); code != 401 {
			t.Errorf("%s without token: %d, want 401", path, code)
		}
		if code := f.getJSON(t, path, "wrong", nil); code != 401 {
			t.Errorf("%s with a wrong token: %d, want 401", path, code)
		}
		if code := f.getJSON(t, path, "s3cret", nil); code != 200 {
			t.Errorf("%s with the token: %d, want 200", path, code)
		}
	}
	resp, _ := http.Get(f.adminURL + "/api/v1/overview")
	resp.Body.Close()
	if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
		t.Errorf("WWW-Authenticate %q", got)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code := status(t, f.adminURL+path); code != 200 {
			t.Errorf("%s must stay open: %d", path, code)
		}
	}
}
