// Package otlptest runs real OTLP trace receivers for tests: an OTLP/HTTP
// endpoint and an OTLP/gRPC TraceService on loopback, decoding the
// ExportTraceServiceRequest protobuf exactly as a collector would, so tests
// exercise the exporters' wire format rather than an in-memory stand-in.
package otlptest

import (
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

// Span is one received span, flattened from its ResourceSpans and
// ScopeSpans. Treat it as read-only: Spans hands out the receiver's copy.
type Span struct {
	TraceID      string // lower-case hex, 32 digits
	SpanID       string // lower-case hex, 16 digits
	ParentSpanID string // lower-case hex; "" for a root span
	Name         string
	Kind         string // "unspecified", "internal", "server", "client", "producer" or "consumer"
	Scope        string // instrumentation scope name
	Attributes   map[string]any
	Events       []Event
	Resource     map[string]any
	StatusCode   string // "unset", "ok" or "error"
}

// Event is a span event.
type Event struct {
	Name       string
	Attributes map[string]any
}

// Attribute values are string, int64, float64, bool, []byte, []any (arrays)
// or map[string]any (key-value lists), or nil for an empty value.

// Receiver collects the spans exported to it. Its methods are safe for
// concurrent use.
type Receiver struct {
	endpoint string

	mu      sync.Mutex    // guards spans, arrived
	spans   []Span        // in order of arrival
	arrived chan struct{} // closed and replaced whenever spans grows
}

func newReceiver() *Receiver {
	return &Receiver{arrived: make(chan struct{})}
}

// Endpoint is the receiver's "127.0.0.1:PORT", usable as
// config.Tracing.Endpoint as it stands (a bare host:port is plaintext).
func (r *Receiver) Endpoint() string { return r.endpoint }

// Spans returns all spans received so far, in order of arrival.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// WaitForSpans waits until at least n spans have arrived and returns all
// received so far (possibly more than n). It fails the test if that takes
// longer than timeout, which bounds a broken test rather than measuring
// anything: a Provider's batch processor exports on its own only every 5s,
// so a test that can should ForceFlush or Shutdown the Provider first.
func (r *Receiver) WaitForSpans(t testing.TB, n int, timeout time.Duration) []Span {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		spans, arrived := append([]Span(nil), r.spans...), r.arrived
		r.mu.Unlock()
		if len(spans) >= n {
			return spans
		}
		select {
		case <-arrived:
		case <-timer.C:
			t.Fatalf("otlptest: waited %v for %d spans, got %d: %s", timeout, n, len(spans), names(spans))
			return nil
		}
	}
}

func names(spans []Span) string {
	s := make([]string, len(spans))
	for i, sp := range spans {
		s[i] = fmt.Sprintf("%q", sp.Name)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// record stores the spans of one export request. Both transports call it
// before answering, so once an exporter's flush returns its spans are here.
func (r *Receiver) record(req *coltracepb.ExportTraceServiceRequest) {
	var spans []Span
	for _, rs := range req.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			scope := ss.GetScope().GetName()
			for _, s := range ss.GetSpans() {
				sp := Span{
					TraceID:      hex.EncodeToString(s.GetTraceId()),
					SpanID:       hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Name:         s.GetName(),
					Kind:         strings.ToLower(strings.TrimPrefix(s.GetKind().String(), "SPAN_KIND_")),
					Scope:        scope,
					Attributes:   attrMap(s.GetAttributes()),
					Resource:     res,
					StatusCode:   strings.ToLower(strings.TrimPrefix(s.GetStatus().GetCode().String(), "STATUS_CODE_")),
				}
				for _, e := range s.GetEvents() {
					sp.Events = append(sp.Events, Event{Name: e.GetName(), Attributes: attrMap(e.GetAttributes())})
				}
				spans = append(spans, sp)
			}
		}
	}
	if len(spans) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = append(r.spans, spans...)
	close(r.arrived)
	r.arrived = make(chan struct{})
}

func attrMap(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = value(kv.GetValue())
	}
	return m
}

func value(v *commonpb.AnyValue) any {
	switch v := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return v.StringValue
	case *commonpb.AnyValue_IntValue:
		return v.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return v.DoubleValue
	case *commonpb.AnyValue_BoolValue:
		return v.BoolValue
	case *commonpb.AnyValue_BytesValue:
		return v.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		a := make([]any, len(v.ArrayValue.GetValues()))
		for i, e := range v.ArrayValue.GetValues() {
			a[i] = value(e)
		}
		return a
	case *commonpb.AnyValue_KvlistValue:
		return attrMap(v.KvlistValue.GetValues())
	default:
		return nil
	}
}
