package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"sluice/admission"
	"sluice/proxy/internal/direct"
	"sluice/proxy/internal/fault"
	"sluice/proxy/internal/h1"
)

// StatusClientClosed is nginx's 499: the client went away before the
// response; it is logged and counted, never written.
const StatusClientClosed = 499

// reqState travels with a proxied request through httputil.ReverseProxy's
// callbacks. It is pooled: one per request would be garbage on the hot path.
type reqState struct {
	sw         statusWriter // what was written to the client
	start      time.Time
	route      *Route // nil when no route matched
	target     *Target
	clientCtx  context.Context // the client's own context, before the route deadline
	rctx       routeCtx        // the client's context with the route deadline
	reason     admission.Reason
	queueWait  time.Duration
	span       trace.Span // nil when tracing is off
	prop       propagation.TextMapPropagator
	retryAfter int64          // Retry-After seconds of a refusal
	aborted    bool           // the response broke off after it had begun
	direct     direct.Request // the request being forwarded by forwardDirect
	faults     fault.Kinds    // the faults injected into the request

	err      error // the forwarding error, if any
	status   int   // the status chosen for err, or 499 when the client left while queued
	upstream int   // the upstream's response status, 0 if none
}

// recordStatus notes the upstream's status for the breaker and reporting.
func recordStatus(res *http.Response) error {
	if st := stateFrom(res.Request.Context()); st != nil {
		st.upstream = res.StatusCode
	}
	return nil
}

type stateKey struct{}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// rewrite turns the client's request into the upstream request. Rewrite (not
// Director) is used so ReverseProxy strips the client's Forwarded and
// X-Forwarded-* headers first; they are re-added below deliberately.
func rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	if st.route.strip != "" {
		direct.StripPrefix(pr.Out.URL, st.route.strip)
	}
	pr.SetURL(st.target.URL)
	pr.Out.Host = pr.In.Host // the upstream sees the host the client asked for

	setForwardingHeaders(pr.Out, pr.In)
	if st.span != nil {
		injectTrace(st, pr.Out)
	}
}

// Header values shared by every request: a value slice is never changed in
// place (Header.Add appends to a full slice, which copies it).
var (
	hdrProtoHTTP  = []string{"http"}
	hdrProtoHTTPS = []string{"https"}
)

// setForwardingHeaders sets X-Forwarded-For, X-Forwarded-Host and
// X-Forwarded-Proto exactly as httputil.ProxyRequest.SetXForwarded does,
// and appends this hop to the RFC 7239 Forwarded header. It costs two
// allocations where SetXForwarded and a strings.Builder took about ten (a
// fifth of the proxy's own per-request garbage): the three values that vary
// share one backing array, each sliced to capacity 1 so that an append to
// one copies instead of overwriting the next, and Forwarded is built in a
// stack buffer.
//
// X-Forwarded-For is a chain: what earlier proxies said is kept and this
// hop's client appended (nginx's $proxy_add_x_forwarded_for). Nothing in
// sluice trusts the chain; the rate-limit key uses the socket address.
func setForwardingHeaders(out, in *http.Request) {
	vals := make([]string, 3)
	h := out.Header
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		vals[0] = ip
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			vals[0] = strings.Join(prior, ", ") + ", " + ip
		}
		h["X-Forwarded-For"] = vals[0:1:1]
	} else {
		delete(h, "X-Forwarded-For") // as SetXForwarded: no address, no chain
	}
	vals[1] = in.Host
	h["X-Forwarded-Host"] = vals[1:2:2]
	if in.TLS == nil {
		h["X-Forwarded-Proto"] = hdrProtoHTTP
	} else {
		h["X-Forwarded-Proto"] = hdrProtoHTTPS
	}
	var buf [256]byte
	vals[2] = string(direct.AppendForwarded(buf[:0], in))
	h["Forwarded"] = vals[2:3:3]
}

// errorHandler answers a request ReverseProxy could not forward.
func errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	answerForwardError(w, r, stateFrom(r.Context()), r.Context(), err)
}

// answerForwardError answers a request that could not be forwarded; reqCtx
// is its context under the route deadline. The status comes from
// upstreamStatus; the internal error never reaches the client.
func answerForwardError(w http.ResponseWriter, r *http.Request, st *reqState, reqCtx context.Context, err error) {
	st.err = err
	st.status = upstreamStatus(st.clientCtx, reqCtx, err)
	closeIfBodyUnread(w, r) // the transport may have stopped reading it midway
	switch st.status {
	case http.StatusRequestEntityTooLarge:
		writeProblem(w, http.StatusRequestEntityTooLarge, st.route, "the request body exceeds the route's max_body_bytes")
	case StatusClientClosed:
		// Nobody is listening; writing would only log a broken pipe.
	case http.StatusGatewayTimeout:
		writeProblem(w, http.StatusGatewayTimeout, st.route, "the upstream did not answer in time")
	default:
		writeProblem(w, http.StatusBadGateway, st.route, "the upstream could not be reached")
	}
}

// upstreamStatus is the one mapping from a forwarding error to a status:
// client gone → 499; body over max_body_bytes → 413; route deadline or
// upstream timeout → 504; connection
// refused, reset or any other transport failure → 502. A dial that times out
// is a connect error (502): the upstream was never reached.
func upstreamStatus(clientCtx, reqCtx context.Context, err error) int {
	// The route deadline first: when it passes while the client's body is
	// being read, serveRoute breaks that read, and net/http then cancels the
	// client's context too — but the deadline was the cause.
	if reqCtx.Err() == context.DeadlineExceeded && clientCtx.Err() != context.DeadlineExceeded {
		return http.StatusGatewayTimeout
	}
	if clientCtx.Err() != nil {
		return StatusClientClosed
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge // the client's fault, not the upstream's
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return http.StatusBadGateway
	}
	if h1.IsTimeout(err) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// failureKind classifies a finished request for the error rings, next to
// upstreamStatus so the two mappings agree: "" when the upstream did not
// fail (a success, a client that left, a body over max_body_bytes);
// refused for a dial that failed; timeout for a response header, dial or
// route deadline; reset for a connection broken before or during the
// response; 5xx for an upstream answer of 500 or above.
func failureKind(st *reqState) string {
	if st.clientCtx.Err() != nil && st.status != http.StatusGatewayTimeout {
		return "" // the client left: not the upstream's failure
	}
	if st.aborted {
		return "reset"
	}
	if st.err == nil {
		if st.upstream >= 500 {
			return "5xx"
		}
		return ""
	}
	switch st.status {
	case StatusClientClosed, http.StatusRequestEntityTooLarge:
		return ""
	case http.StatusGatewayTimeout:
		return "timeout"
	}
	var op *net.OpError
	if errors.As(st.err, &op) && op.Op == "dial" {
		return "refused"
	}
	return "reset"
}

// direct reports whether serveRoute forwards r itself (forwardDirect)
// rather than through httputil.ReverseProxy: the request and target are
// ones the direct path takes, and r is not traced (its span's context is
// injected into an outgoing request, which the direct path never builds).
func (p *Proxy) direct(r *http.Request, st *reqState) bool {
	return !p.noDirect && st.span == nil && direct.Eligible(r, st.target.URL)
}

// forwardDirect forwards r to st.target on the upstream's h1.Transport and
// copies the response back: ReverseProxy.ServeHTTP with rewrite,
// recordStatus and errorHandler, for the requests direct accepts. ctx is
// the request's context under the route deadline.
func (p *Proxy) forwardDirect(w http.ResponseWriter, r *http.Request, ctx context.Context, st *reqState) {
	up := st.route.up
	st.direct = direct.Request{R: r, W: w, Strip: st.route.strip, Target: st.target.URL}
	res, err := up.h1.Send(ctx, h1.CanonicalAddr(st.target.URL), r, &st.direct)
	st.direct = direct.Request{}
	if err != nil {
		answerForwardError(w, r, st, ctx, err)
		return
	}
	st.upstream = res.StatusCode
	if err := direct.WriteResponse(w, res, up.rp.ErrorLog); err != nil {
		if r.Context().Value(http.ServerContextKey) == nil {
			return // not under http.Server, which alone recovers the panic
		}
		panic(http.ErrAbortHandler) // as ReverseProxy: the response broke off
	}
}
