// Package telemetry builds the OpenTelemetry tracer provider behind sluice's
// per-request server spans.
//
// A Provider is passed explicitly to whatever records spans; nothing here sets
// the otel global provider or propagator, so several Providers (one per test,
// or the old and new one across a config reload) can live in one process.
package telemetry

import (
	"context"
	"fmt"
	"io"
	"os"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"sluice/config"
)

// ScopeName is the instrumentation scope of the spans sluice records.
const ScopeName = "sluice"

// Provider is sluice's tracer provider: either a disabled one, whose tracer
// records nothing, or an SDK provider exporting through a batch span
// processor. Its methods are safe for concurrent use.
type Provider struct {
	sdk    *sdktrace.TracerProvider // nil when disabled
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// New builds the provider cfg asks for.
//
// Exporter "none" (or "") returns a disabled Provider: Tracer is a no-op
// tracer and Enabled is false, so tracing off costs a few interface calls per
// request. "stdout" writes each span as a JSON line to w (os.Stdout if w is
// nil). "otlp" exports to cfg.Endpoint over cfg.Protocol, grpc (or "") or
// http/protobuf; a bare host:port or an http:// URL is plaintext, an https://
// URL uses TLS with the host's root CAs. For http/protobuf a URL without a
// path posts to /v1/traces, one with a path posts there as-is; for grpc a
// URL path is an error.
//
// Sampling is ParentBased(TraceIDRatioBased(cfg.SampleRatio)): a request that
// arrives with a traceparent follows the caller's sampled flag, a new trace
// is kept with probability cfg.SampleRatio. The resource is the SDK default
// (telemetry.sdk.*, OTEL_RESOURCE_ATTRIBUTES) overridden by service.name =
// cfg.ServiceName ("sluice" if empty) and service.version = version (omitted
// if empty).
//
// New does not connect: an unreachable collector shows up as export errors
// (reported to the otel global error handler) and dropped spans, never as a
// slow request. A malformed endpoint, exporter or protocol is returned as an
// error.
func New(ctx context.Context, cfg config.Tracing, version string, w io.Writer) (*Provider, error) {
	p := &Provider{
		prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	if cfg.Exporter == "" || cfg.Exporter == "none" {
		p.tracer = noop.NewTracerProvider().Tracer(ScopeName)
		return p, nil
	}

	exp, err := newExporter(ctx, cfg, w)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	res, err := newResource(cfg.ServiceName, version)
	if err != nil {
		// Only reachable through a broken OTEL_RESOURCE_ATTRIBUTES; the
		// exporter holds no connection yet, but release it all the same.
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	p.sdk = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	p.tracer = p.sdk.Tracer(ScopeName, trace.WithInstrumentationVersion(version))
	return p, nil
}

func newExporter(ctx context.Context, cfg config.Tracing, w io.Writer) (sdktrace.SpanExporter, error) {
	switch cfg.Exporter {
	case "stdout":
		if w == nil {
			w = os.Stdout
		}
		return stdouttrace.New(stdouttrace.WithWriter(w))
	case "otlp":
		ep, err := parseEndpoint(cfg.Endpoint)
		if err != nil {
			return nil, err
		}
		// WithEndpointURL, unlike WithEndpoint plus WithInsecure, sets the
		// transport security both ways, so an OTEL_EXPORTER_OTLP_INSECURE in
		// the environment cannot downgrade an https:// endpoint.
		switch cfg.Protocol {
		case "", "grpc":
			u, err := ep.grpcURL()
			if err != nil {
				return nil, err
			}
			return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(u))
		case "http/protobuf":
			return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(ep.httpURL()))
		default:
			return nil, fmt.Errorf("unknown protocol %q (want grpc or http/protobuf)", cfg.Protocol)
		}
	default:
		return nil, fmt.Errorf("unknown exporter %q (want none, stdout or otlp)", cfg.Exporter)
	}
}

func newResource(serviceName, version string) (*resource.Resource, error) {
	if serviceName == "" {
		serviceName = "sluice"
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(serviceName)}
	if version != "" {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	// Schemaless, so the merge cannot fail on a schema URL mismatch between
	// this semconv version and the one the SDK's default resource uses.
	return resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
}

// Enabled reports whether spans are exported. When false, Tracer's spans are
// non-recording and callers may skip building span attributes altogether.
func (p *Provider) Enabled() bool { return p.sdk != nil }

// Tracer returns the tracer with instrumentation scope "sluice".
func (p *Provider) Tracer() trace.Tracer { return p.tracer }

// Propagator returns the W3C Trace Context and Baggage propagator. It is the
// same whether or not tracing is enabled: with tracing off the no-op tracer
// hands an extracted remote parent through unchanged, so injecting it
// forwards the caller's traceparent as received.
func (p *Provider) Propagator() propagation.TextMapPropagator { return p.prop }

// ForceFlush exports every span ended so far without waiting for the batch
// timeout (5s by default), returning when the exporter has answered or ctx
// is done. It is a no-op when disabled.
func (p *Provider) ForceFlush(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	return p.sdk.ForceFlush(ctx)
}

// Shutdown flushes the spans ended so far and stops the exporter; spans ended
// afterwards are dropped. It waits for the collector at most until ctx is
// done, so give it a deadline: the exporters retry an unavailable collector
// for up to a minute. Calling it again is a no-op, as is calling it when
// disabled.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	return p.sdk.Shutdown(ctx)
}
