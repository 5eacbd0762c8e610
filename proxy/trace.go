package proxy

import (
	"net"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"sluice/admission"
)

// startSpan opens the request's server span, continuing the client's trace
// when it sent a W3C traceparent. Called only when tracing is on.
func (p *Proxy) startSpan(st *reqState, r *http.Request) *http.Request {
	ctx := p.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	name := r.Method
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path),
		attribute.String("server.address", r.Host),
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, attribute.String("client.address", ip))
	}
	if rt := st.route; rt != nil {
		name += " " + rt.name
		attrs = append(attrs, attribute.String("sluice.route", rt.name), attribute.String("sluice.upstream", rt.up.name))
	}
	ctx, span := p.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	st.span, st.prop = span, p.prop
	return r.WithContext(ctx)
}

// injectTrace sends this span's context to the upstream in traceparent,
// replacing whatever the client sent: the upstream's parent is sluice.
func injectTrace(st *reqState, out *http.Request) {
	st.prop.Inject(out.Context(), propagation.HeaderCarrier(out.Header))
}

// endSpan records the admission outcome and the status, and ends the span.
// A refusal is also an event, so it shows on the timeline.
func endSpan(st *reqState, status int) {
	span := st.span
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if st.route != nil || st.reason != admission.Admitted { // refused at the door: no route, a reason
		span.SetAttributes(
			attribute.String("sluice.admission", st.reason.String()),
			attribute.Float64("sluice.queue_wait_ms", float64(st.queueWait.Microseconds())/1000),
		)
		if st.reason != admission.Admitted && st.reason != admission.ClientGone {
			span.AddEvent("sluice.reject", trace.WithAttributes(
				attribute.String("sluice.reject.reason", st.reason.String()),
				attribute.Int64("sluice.reject.retry_after_s", st.retryAfter),
			))
		}
	}
	if st.target != nil {
		span.SetAttributes(attribute.String("sluice.target", st.target.URL.Host))
	}
	if st.faults != 0 {
		span.SetAttributes(attribute.String("sluice.fault", st.faults.String()))
	}
	if status >= 500 && status != StatusClientClosed {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}
