package proxy

import (
	"bufio"
	"context"
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

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"sluice/admission"
	"sluice/config"
	"sluice/internal/otlptest"
	"sluice/telemetry"
)

// startObservedProxy is startProxy with extra options (tracing, access log).
func startObservedProxy(t *testing.T, yaml string, o Options) *testProxy {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	o.Log = slog.New(slog.NewJSONHandler(logs, nil))
	p, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	return &testProxy{Proxy: p, URL: srv.URL, logs: logs}
}

// TestTracingEndToEnd exports through a real OTLP/HTTP receiver and checks:
// one server span per request with the attributes docs/SPEC.md lists, the client's trace
// continued, the same trace id handed to the upstream in traceparent, and a
// refusal carried as a span event.
func TestTracingEndToEnd(t *testing.T) {
	rcv := otlptest.NewHTTP(t)
	tp, err := telemetry.New(context.Background(), config.Tracing{
		Exporter: "otlp", Protocol: "http/protobuf", Endpoint: rcv.Endpoint(), SampleRatio: 1, ServiceName: "sluice-test",
	}, "v0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown(context.Background())

	var mu sync.Mutex
	var upstreamTP []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamTP = append(upstreamTP, r.Header.Get("Traceparent"))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	p := startObservedProxy(t, fmt.Sprintf(`
upstreams: [{name: users, targets: ["%s"]}]
routes:
  - {name: users-api, match: {path_prefix: /users}, upstream: users, rate_limit: {rps: 0.01, burst: 1}}
`, up.URL), Options{Tracer: tp.Tracer(), Propagator: tp.Propagator()})

	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("GET", p.URL+"/users/7", nil)
	req.Header.Set("Traceparent", "00-"+clientTrace+"-00f067aa0ba902b7-01")
	if resp, _ := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	if resp, _ := get(t, p.URL+"/users/8"); resp.StatusCode != 429 {
		t.Fatalf("second request: %d, want 429", resp.StatusCode)
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans exported, want one per request (2): %+v", len(spans), spans)
	}
	ok, rej := spans[0], spans[1]
	if ok.Kind != "server" || ok.Name != "GET users-api" || ok.TraceID != clientTrace || ok.ParentSpanID != "00f067aa0ba902b7" {
		t.Errorf("admitted span: kind %q name %q trace %s parent %s", ok.Kind, ok.Name, ok.TraceID, ok.ParentSpanID)
	}
	wantAttrs := map[string]any{
		"sluice.route": "users-api", "sluice.upstream": "users", "sluice.admission": "admitted",
		"http.response.status_code": int64(200),
	}
	for k, v := range wantAttrs {
		if ok.Attributes[k] != v {
			t.Errorf("admitted span %s = %v (%T), want %v", k, ok.Attributes[k], ok.Attributes[k], v)
		}
	}
	if _, has := ok.Attributes["sluice.queue_wait_ms"]; !has {
		t.Error("admitted span lacks sluice.queue_wait_ms")
	}
	if ok.Resource["service.name"] != "sluice-test" {
		t.Errorf("resource %v", ok.Resource)
	}
	mu.Lock()
	gotTP := upstreamTP
	mu.Unlock()
	if len(gotTP) != 1 || !strings.HasPrefix(gotTP[0], "00-"+clientTrace+"-"+ok.SpanID+"-") {
		t.Errorf("upstream saw traceparent %q, want trace %s with parent span %s (sluice's)", gotTP, clientTrace, ok.SpanID)
	}

	if rej.Attributes["sluice.admission"] != "rate_limited" || rej.StatusCode == "error" {
		t.Errorf("refused span: admission %v status %v", rej.Attributes["sluice.admission"], rej.StatusCode)
	}
	if len(rej.Events) != 1 || rej.Events[0].Name != "sluice.reject" ||
		rej.Events[0].Attributes["sluice.reject.reason"] != "rate_limited" || rej.Events[0].Attributes["sluice.reject.retry_after_s"] == nil {
		t.Errorf("refused span events %+v", rej.Events)
	}
	if rej.TraceID == clientTrace {
		t.Error("a request without traceparent joined another trace")
	}
}

// TestAccessLog checks one JSON line per request with the fields operators
// need, for admitted, refused and unrouted requests.
func TestAccessLog(t *testing.T) {
	up := echoUpstream(t, "u")
	buf := &syncBuffer{}
	p := startObservedProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - {name: r, match: {path_prefix: /r}, upstream: u, rate_limit: {rps: 0.01, burst: 1}, bulkhead: {max_concurrent: 5}}
`, up.URL), Options{AccessLog: slog.New(slog.NewJSONHandler(buf, nil))})
	get(t, p.URL+"/r/1")
	get(t, p.URL+"/r/2")
	get(t, p.URL+"/none")

	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d access lines for 3 requests:\n%s", len(lines), buf.String())
	}
	checks := []map[string]any{
		{"msg": "request", "route": "r", "status": 200.0, "path": "/r/1", "upstream": "u", "queue_wait_ms": 0.0},
		{"route": "r", "status": 429.0, "reason": "rate_limited"},
		{"status": 404.0, "path": "/none"},
	}
	for i, want := range checks {
		for k, v := range want {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, lines[i][k], v, lines[i])
			}
		}
		if _, ok := lines[i]["duration_ms"]; !ok {
			t.Errorf("line %d lacks duration_ms", i)
		}
	}
	if lines[0]["target"] == nil || lines[1]["target"] != nil {
		t.Errorf("target only on forwarded requests: %v / %v", lines[0]["target"], lines[1]["target"])
	}
	if _, ok := lines[2]["route"]; ok {
		t.Error("unrouted request logged with a route")
	}
}

// gather collects the proxy's metrics into name → label string → value.
func gather(t *testing.T, p *Proxy) map[string]map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		m := map[string]float64{}
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, lp := range mt.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			key := strings.Join(labels, ",")
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				m[key] = mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				m[key] = mt.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				m[key] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
		out[mf.GetName()] = m
	}
	return out
}

// TestMetricsAddUp drives load with refusals of several kinds and checks
// the exported counters against the client's own tally, exactly.
func TestMetricsAddUp(t *testing.T) {
	up := newCountingUpstream(t, 5*time.Millisecond)
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - name: r
    match: {path_prefix: /}
    upstream: u
    rate_limit: {rps: 300, burst: 40}
    bulkhead: {max_concurrent: 4}
    queue: {max_depth: 4, max_wait: 5s}
`, up.URL))
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	for c := 0; c < 32; c++ {
		wg.Go(func() {
			for i := 0; i < 15; i++ {
				resp, err := client.Get(p.URL + "/x")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	m := gather(t, p.Proxy)
	sent := 32 * 15.0
	var requests float64
	for k, v := range m["sluice_requests_total"] {
		requests += v
		var code int
		fmt.Sscanf(k[strings.Index(k, "code=")+5:], "%d", &code)
		if int(v) != codes[code] {
			t.Errorf("sluice_requests_total{%s} = %v, clients saw %d", k, v, codes[code])
		}
	}
	admitted := m["sluice_admission_admitted_total"]["route=r"]
	var rejected float64
	for _, v := range m["sluice_admission_rejected_total"] {
		rejected += v
	}
	if requests != sent || admitted+rejected != sent || admitted != float64(codes[200]) {
		t.Errorf("requests %v, admitted %v + rejected %v, want %v sent with %d admitted", requests, admitted, rejected, sent, codes[200])
	}
	// Every reason for the route, and overloaded for route "" (the door).
	if got, want := len(m["sluice_admission_rejected_total"]), len(admission.Rejections)+1; got != want {
		t.Errorf("rejected series %v, want %d: all reasons and route=\"\" overloaded", m["sluice_admission_rejected_total"], want)
	}
	if got := m["sluice_request_duration_seconds"]["route=r"]; got != sent {
		t.Errorf("duration histogram count %v, want %v", got, sent)
	}
	if got := m["sluice_upstream_requests_total"]["code=200,upstream=u"]; got != float64(codes[200]) {
		t.Errorf("upstream 200s %v, want %d", got, codes[200])
	}
	if m["sluice_bulkhead_capacity"]["route=r"] != 4 || m["sluice_queue_capacity"]["route=r"] != 4 ||
		m["sluice_inflight"]["route=r"] != 0 || m["sluice_queue_depth"]["route=r"] != 0 {
		t.Errorf("gauges: %v %v %v %v", m["sluice_bulkhead_capacity"], m["sluice_queue_capacity"], m["sluice_inflight"], m["sluice_queue_depth"])
	}
	t.Logf("codes %v, rejected %v", codes, m["sluice_admission_rejected_total"])
}
