package telemetry

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"sluice/config"
	"sluice/internal/otlptest"
)

func tracingConfig(exporter, endpoint, protocol string, ratio float64) config.Tracing {
	return config.Tracing{Exporter: exporter, Endpoint: endpoint, Protocol: protocol, SampleRatio: ratio, ServiceName: "sluice-test"}
}

func newProvider(t *testing.T, cfg config.Tracing, w *bytes.Buffer) *Provider {
	t.Helper()
	var p *Provider
	var err error
	if w == nil {
		p, err = New(t.Context(), cfg, "1.2.3", nil)
	} else {
		p, err = New(t.Context(), cfg, "1.2.3", w)
	}
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// A second Shutdown is a no-op, so tests that shut down themselves
	// (to flush) still get this as a safety net.
	t.Cleanup(func() {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown in cleanup: %v", err)
		}
	})
	return p
}

func shutdown(t *testing.T, p *Provider) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestNoneIsDisabled(t *testing.T) {
	for _, exporter := range []string{"none", ""} {
		t.Run("exporter="+exporter, func(t *testing.T) {
			p := newProvider(t, tracingConfig(exporter, "", "", 1), nil)
			if p.Enabled() {
				t.Error("Enabled() = true, want false")
			}
			_, span := p.Tracer().Start(t.Context(), "request")
			if span.IsRecording() {
				t.Error("span from a disabled provider is recording")
			}
			if span.SpanContext().IsValid() {
				t.Error("root span from a disabled provider has a valid span context")
			}
			span.End()
			if err := p.ForceFlush(t.Context()); err != nil {
				t.Errorf("ForceFlush: %v", err)
			}
			shutdown(t, p)
		})
	}
}

// TestNoneForwardsRemoteParent: with tracing off the caller's traceparent
// still reaches the upstream unchanged when the proxy extracts and injects.
func TestNoneForwardsRemoteParent(t *testing.T) {
	p := newProvider(t, tracingConfig("none", "", "", 1), nil)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := p.Propagator().Extract(t.Context(), propagation.HeaderCarrier{"Traceparent": {tp}})
	ctx, span := p.Tracer().Start(ctx, "request")
	defer span.End()
	out := http.Header{}
	p.Propagator().Inject(ctx, propagation.HeaderCarrier(out))
	if got := out.Get("traceparent"); got != tp {
		t.Errorf("injected traceparent = %q, want %q", got, tp)
	}
}

// exportOne records the span the OTLP tests expect and returns its ids.
func exportOne(t *testing.T, p *Provider) trace.SpanContext {
	t.Helper()
	if !p.Enabled() {
		t.Fatal("Enabled() = false, want true")
	}
	_, span := p.Tracer().Start(t.Context(), "GET /users", trace.WithSpanKind(trace.SpanKindServer))
	span.SetAttributes(
		attribute.String("sluice.route", "users-api"),
		attribute.Int64("sluice.queue_wait_ms", 12),
		attribute.Float64("ratio", 0.5),
		attribute.Bool("retried", false),
	)
	span.AddEvent("rejected", trace.WithAttributes(attribute.String("sluice.admission", "queue_full")))
	span.SetStatus(codes.Error, "rejected")
	span.End()
	return span.SpanContext()
}

func checkExported(t *testing.T, got []otlptest.Span, sc trace.SpanContext) {
	t.Helper()
	if len(got) != 1 {
		t.Fatalf("received %d spans, want 1: %+v", len(got), got)
	}
	s := got[0]
	if s.TraceID != sc.TraceID().String() || s.SpanID != sc.SpanID().String() || s.ParentSpanID != "" {
		t.Errorf("ids = %s/%s parent %q, want %s/%s root", s.TraceID, s.SpanID, s.ParentSpanID, sc.TraceID(), sc.SpanID())
	}
	if s.Name != "GET /users" || s.Kind != "server" || s.Scope != ScopeName || s.StatusCode != "error" {
		t.Errorf("name, kind, scope, status = %q, %q, %q, %q; want \"GET /users\", server, sluice, error", s.Name, s.Kind, s.Scope, s.StatusCode)
	}
	wantAttrs := map[string]any{"sluice.route": "users-api", "sluice.queue_wait_ms": int64(12), "ratio": 0.5, "retried": false}
	if !equalMaps(s.Attributes, wantAttrs) {
		t.Errorf("attributes = %v, want %v", s.Attributes, wantAttrs)
	}
	if len(s.Events) != 1 || s.Events[0].Name != "rejected" ||
		!equalMaps(s.Events[0].Attributes, map[string]any{"sluice.admission": "queue_full"}) {
		t.Errorf("events = %+v, want one \"rejected\" with sluice.admission=queue_full", s.Events)
	}
	if s.Resource["service.name"] != "sluice-test" || s.Resource["service.version"] != "1.2.3" {
		t.Errorf("resource = %v, want service.name sluice-test, service.version 1.2.3", s.Resource)
	}
}

func equalMaps(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if got, ok := a[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func TestOTLP(t *testing.T) {
	for _, tc := range []struct {
		protocol string
		receiver func(testing.TB) *otlptest.Receiver
		endpoint func(*otlptest.Receiver) string
	}{
		{"http/protobuf", otlptest.NewHTTP, (*otlptest.Receiver).Endpoint},
		{"http/protobuf", otlptest.NewHTTP, func(r *otlptest.Receiver) string { return "http://" + r.Endpoint() }},
		{"http/protobuf", otlptest.NewHTTP, func(r *otlptest.Receiver) string { return "http://" + r.Endpoint() + "/v1/traces" }},
		{"grpc", otlptest.NewGRPC, (*otlptest.Receiver).Endpoint},
		{"grpc", otlptest.NewGRPC, func(r *otlptest.Receiver) string { return "http://" + r.Endpoint() }},
		{"", otlptest.NewGRPC, (*otlptest.Receiver).Endpoint},
	} {
		r := tc.receiver(t)
		endpoint := tc.endpoint(r)
		t.Run(tc.protocol+"/"+endpoint, func(t *testing.T) {
			p := newProvider(t, tracingConfig("otlp", endpoint, tc.protocol, 1), nil)
			sc := exportOne(t, p)
			shutdown(t, p) // flushes: no waiting on the batch timeout
			checkExported(t, r.Spans(), sc)
		})
	}
}

func TestForceFlushExportsWithoutShutdown(t *testing.T) {
	r := otlptest.NewHTTP(t)
	p := newProvider(t, tracingConfig("otlp", r.Endpoint(), "http/protobuf", 1), nil)
	sc := exportOne(t, p)
	if err := p.ForceFlush(t.Context()); err != nil {
		t.Fatalf("ForceFlush: %v", err)
	}
	checkExported(t, r.Spans(), sc)
}

func TestStdout(t *testing.T) {
	var buf bytes.Buffer
	p := newProvider(t, tracingConfig("stdout", "", "", 1), &buf)
	if !p.Enabled() {
		t.Fatal("Enabled() = false, want true")
	}
	_, span := p.Tracer().Start(t.Context(), "stdout-span")
	span.End()
	shutdown(t, p) // the buffer is only read once the exporter has stopped
	out := buf.String()
	if !strings.HasPrefix(out, "{") || !strings.Contains(out, `"Name":"stdout-span"`) {
		t.Errorf("stdout output = %q, want a JSON line naming stdout-span", out)
	}
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
		t.Errorf("stdout output has %d line breaks inside, want one JSON line per span: %q", n, out)
	}
}

// TestSampleRatioZeroIsParentBased: ratio 0 drops new traces but honours a
// caller's sampled flag either way.
func TestSampleRatioZeroIsParentBased(t *testing.T) {
	r := otlptest.NewHTTP(t)
	p := newProvider(t, tracingConfig("otlp", r.Endpoint(), "http/protobuf", 0), nil)
	start := func(traceparent, name string) trace.Span {
		ctx := t.Context()
		if traceparent != "" {
			ctx = p.Propagator().Extract(ctx, propagation.HeaderCarrier{"Traceparent": {traceparent}})
		}
		_, span := p.Tracer().Start(ctx, name)
		span.End()
		return span
	}

	root := start("", "root")
	sampled := start("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "sampled-parent")
	unsampled := start("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", "unsampled-parent")
	for _, c := range []struct {
		span trace.Span
		want bool
	}{{root, false}, {sampled, true}, {unsampled, false}} {
		if got := c.span.SpanContext().IsSampled(); got != c.want {
			t.Errorf("span %s: sampled = %v, want %v", c.span.SpanContext().SpanID(), got, c.want)
		}
	}
	shutdown(t, p)

	got := r.Spans()
	if len(got) != 1 {
		t.Fatalf("received %d spans, want only the child of the sampled parent: %+v", len(got), got)
	}
	s := got[0]
	if s.Name != "sampled-parent" || s.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || s.ParentSpanID != "00f067aa0ba902b7" {
		t.Errorf("got %q trace %s parent %s, want sampled-parent in trace 4bf92f35... under 00f067aa0ba902b7", s.Name, s.TraceID, s.ParentSpanID)
	}
	if s.SpanID == "00f067aa0ba902b7" {
		t.Error("child reused its parent's span id")
	}
}

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$`)

func TestPropagatorRoundTrip(t *testing.T) {
	p := newProvider(t, tracingConfig("stdout", "", "", 1), &bytes.Buffer{})
	ctx, span := p.Tracer().Start(t.Context(), "request")
	defer span.End()

	h := http.Header{}
	p.Propagator().Inject(ctx, propagation.HeaderCarrier(h))
	tp := h.Get("traceparent")
	m := traceparentRE.FindStringSubmatch(tp)
	if m == nil {
		t.Fatalf("traceparent %q is not a valid version-00 header", tp)
	}
	sc := span.SpanContext()
	if m[1] != sc.TraceID().String() || m[2] != sc.SpanID().String() || !strings.HasSuffix(tp, "-01") {
		t.Errorf("traceparent = %q, want trace %s span %s sampled", tp, sc.TraceID(), sc.SpanID())
	}

	back := trace.SpanContextFromContext(p.Propagator().Extract(t.Context(), propagation.HeaderCarrier(h)))
	if !back.IsRemote() || back.TraceID() != sc.TraceID() || back.SpanID() != sc.SpanID() || !back.IsSampled() {
		t.Errorf("extracted %+v, want the remote, sampled form of %+v", back, sc)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config.Tracing
		want string
	}{
		{"unterminated IPv6 URL", tracingConfig("otlp", "https://[::1", "grpc", 1), "missing ']'"},
		{"unterminated IPv6 URL over http", tracingConfig("otlp", "https://[::1", "http/protobuf", 1), "missing ']'"},
		{"host without port", tracingConfig("otlp", "collector", "grpc", 1), "want host:port"},
		{"port only", tracingConfig("otlp", ":4317", "grpc", 1), "missing host"},
		{"bad port", tracingConfig("otlp", "collector:http", "grpc", 1), `invalid port "http"`},
		{"port out of range", tracingConfig("otlp", "http://collector:70000", "grpc", 1), "invalid port"},
		{"unknown scheme", tracingConfig("otlp", "grpc://collector:4317", "grpc", 1), "scheme must be http or https"},
		{"empty endpoint", tracingConfig("otlp", "", "grpc", 1), "empty endpoint"},
		{"url without host", tracingConfig("otlp", "http:///v1/traces", "http/protobuf", 1), "missing host"},
		{"path with grpc", tracingConfig("otlp", "http://collector:4317/v1/traces", "grpc", 1), "not supported with protocol grpc"},
		{"query", tracingConfig("otlp", "http://collector:4318/v1/traces?x=1", "http/protobuf", 1), "query"},
		{"unknown protocol", tracingConfig("otlp", "collector:4317", "http/json", 1), "unknown protocol"},
		{"unknown exporter", tracingConfig("jaeger", "collector:4317", "grpc", 1), "unknown exporter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(t.Context(), tc.cfg, "1.2.3", nil)
			if err == nil {
				_ = p.Shutdown(t.Context())
				t.Fatalf("New(%+v) succeeded, want an error containing %q", tc.cfg, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestHTTPSEndpointUsesTLS: an https:// endpoint must never fall back to
// plaintext. Pointed at a plaintext receiver, the client's TLS handshake is
// answered with a plain HTTP 400, which net/http reports as "server gave
// HTTP response to HTTPS client" (not retried), and nothing is delivered.
func TestHTTPSEndpointUsesTLS(t *testing.T) {
	r := otlptest.NewHTTP(t)
	p := newProvider(t, tracingConfig("otlp", "https://"+r.Endpoint(), "http/protobuf", 1), nil)
	exportOne(t, p)
	err := p.ForceFlush(t.Context())
	if err == nil || !strings.Contains(err.Error(), "HTTP response to HTTPS client") {
		t.Errorf("ForceFlush error = %v, want the TLS handshake to fail", err)
	}
	if got := r.Spans(); len(got) != 0 {
		t.Errorf("plaintext receiver got %d spans over an https endpoint", len(got))
	}
}
