package otlptest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// exportVia records a parent and a child span through a synchronous
// processor, so both have reached the receiver when this returns.
func exportVia(t *testing.T, exp sdktrace.SpanExporter) (parent, child trace.SpanContext) {
	t.Helper()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "svc"), attribute.Int("shard", 3))),
	)
	defer func() {
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	tr := tp.Tracer("scope")
	ctx, p := tr.Start(t.Context(), "parent", trace.WithSpanKind(trace.SpanKindServer))
	_, c := tr.Start(ctx, "child", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("s", "v"),
		attribute.Int64("i", -7),
		attribute.Float64("f", 1.5),
		attribute.Bool("b", true),
		attribute.StringSlice("ss", []string{"x", "y"}),
	))
	c.AddEvent("ev", trace.WithAttributes(attribute.Int("n", 1)))
	c.SetStatus(codes.Ok, "")
	c.End()
	p.End()
	return p.SpanContext(), c.SpanContext()
}

func checkReceived(t *testing.T, got []Span, parent, child trace.SpanContext) {
	t.Helper()
	want := []Span{{
		TraceID:      child.TraceID().String(),
		SpanID:       child.SpanID().String(),
		ParentSpanID: parent.SpanID().String(),
		Name:         "child",
		Kind:         "client",
		Scope:        "scope",
		Attributes:   map[string]any{"s": "v", "i": int64(-7), "f": 1.5, "b": true, "ss": []any{"x", "y"}},
		Events:       []Event{{Name: "ev", Attributes: map[string]any{"n": int64(1)}}},
		Resource:     map[string]any{"service.name": "svc", "shard": int64(3)},
		StatusCode:   "ok",
	}, {
		TraceID:    parent.TraceID().String(),
		SpanID:     parent.SpanID().String(),
		Name:       "parent",
		Kind:       "server",
		Scope:      "scope",
		Attributes: map[string]any{},
		Resource:   map[string]any{"service.name": "svc", "shard": int64(3)},
		StatusCode: "unset",
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("received\n%+v\nwant\n%+v", got, want)
	}
}

func TestHTTPReceiver(t *testing.T) {
	for _, gzip := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[gzip], func(t *testing.T) {
			r := NewHTTP(t)
			if !strings.HasPrefix(r.Endpoint(), "127.0.0.1:") {
				t.Errorf("Endpoint() = %q, want 127.0.0.1:PORT", r.Endpoint())
			}
			opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(r.Endpoint()), otlptracehttp.WithInsecure()}
			if gzip {
				opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
			}
			exp, err := otlptracehttp.New(t.Context(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			parent, child := exportVia(t, exp)
			checkReceived(t, r.Spans(), parent, child)
		})
	}
}

func TestGRPCReceiver(t *testing.T) {
	for _, gzip := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[gzip], func(t *testing.T) {
			r := NewGRPC(t)
			if !strings.HasPrefix(r.Endpoint(), "127.0.0.1:") {
				t.Errorf("Endpoint() = %q, want 127.0.0.1:PORT", r.Endpoint())
			}
			opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(r.Endpoint()), otlptracegrpc.WithInsecure()}
			if gzip {
				opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
			}
			exp, err := otlptracegrpc.New(t.Context(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			parent, child := exportVia(t, exp)
			checkReceived(t, r.Spans(), parent, child)
		})
	}
}

func TestHTTPReceiverRejects(t *testing.T) {
	r := NewHTTP(t)
	url := "http://" + r.Endpoint()
	for _, tc := range []struct {
		name, method, path, contentType, encoding string
		body                                      string
		want                                      int
	}{
		{"GET", http.MethodGet, "/v1/traces", "", "", "", http.StatusMethodNotAllowed},
		{"other path", http.MethodPost, "/v1/metrics", "application/x-protobuf", "", "", http.StatusNotFound},
		{"JSON", http.MethodPost, "/v1/traces", "application/json", "", "{}", http.StatusUnsupportedMediaType},
		{"unknown encoding", http.MethodPost, "/v1/traces", "application/x-protobuf", "br", "", http.StatusUnsupportedMediaType},
		{"bad gzip", http.MethodPost, "/v1/traces", "application/x-protobuf", "gzip", "not gzip", http.StatusBadRequest},
		{"bad protobuf", http.MethodPost, "/v1/traces", "application/x-protobuf", "", "\xff\xff\xff", http.StatusBadRequest},
		{"empty request", http.MethodPost, "/v1/traces", "application/x-protobuf", "", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, url+tc.path, bytes.NewBufferString(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if got := r.Spans(); len(got) != 0 {
		t.Errorf("recorded %d spans from rejected requests", len(got))
	}
}

// TestWaitForSpans: spans exported by a batch processor in the background
// are waited for, not polled for with sleeps.
func TestWaitForSpans(t *testing.T) {
	r := NewGRPC(t)
	exp, err := otlptracegrpc.New(t.Context(), otlptracegrpc.WithEndpoint(r.Endpoint()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	for _, name := range []string{"a", "b"} {
		_, s := tp.Tracer("scope").Start(t.Context(), name)
		s.End()
	}
	go func() { _ = tp.ForceFlush(context.Background()) }()
	got := r.WaitForSpans(t, 2, 30*time.Second)
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" {
		t.Errorf("WaitForSpans = %+v, want a and b", got)
	}
}

// fatalTB records a Fatalf and stops its goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func TestWaitForSpansTimeout(t *testing.T) {
	r := NewHTTP(t)
	exp, err := otlptracehttp.New(t.Context(), otlptracehttp.WithEndpoint(r.Endpoint()), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	exportVia(t, exp)

	ftb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.WaitForSpans(ftb, 3, time.Millisecond)
		t.Error("WaitForSpans returned with 2 of 3 spans")
	}()
	<-done
	ftb.mu.Lock()
	defer ftb.mu.Unlock()
	if want := `got 2: ["child" "parent"]`; !strings.Contains(ftb.msg, want) {
		t.Errorf("failure message %q, want it to contain %q", ftb.msg, want)
	}
}
