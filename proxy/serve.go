package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"sluice/admission"
	"sluice/breaker"
	"sluice/overload"
	"sluice/proxy/internal/routing"
)

// ServeHTTP routes and forwards one request, and accounts for it once
// whatever happens: metrics, access log and span are all finished in
// finish, deferred so that an aborted body copy is accounted too.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := statePool.Get().(*reqState)
	*st = reqState{clientCtx: r.Context(), start: p.clk.Now()}
	st.sw.ResponseWriter = w
	defer p.finish(st, r)

	// The overload manager's door, before any other work: over the memory
	// limit or at max_inflight the request is refused here, as cheaply as
	// sluice can answer (an atomic load, and a compare-and-swap with
	// max_inflight set).
	if p.ovl.Enter() != overload.Admitted {
		p.refuseAtDoor(st, r)
		return
	}
	defer p.ovl.Exit()

	// RFC 9112 §6.1: after a request with both Transfer-Encoding and
	// Content-Length the server MUST close the connection, since a front
	// proxy that framed it by Content-Length would read the rest of the
	// stream as a different request (smuggling). net/http strips the
	// Content-Length before any handler sees it, so sluice closes after
	// every chunked HTTP/1.x request: a smuggled follow-up is never read.
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		st.sw.Header()["Connection"] = hdrClose
	}
	// A reverse proxy is not a forward proxy: CONNECT would ask sluice to
	// open a tunnel to a host of the client's choosing.
	if r.Method == http.MethodConnect {
		st.sw.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		writeProblem(&st.sw, http.StatusMethodNotAllowed, nil, "CONNECT is not supported: sluice is a reverse proxy")
		return
	}
	// Absolute-form targets ("GET http://other/x") are routed by their
	// authority like any Host, and forwarded only to the route's configured
	// targets; anything else that is not a path (asterisk-form) is refused.
	if !strings.HasPrefix(r.URL.Path, "/") {
		writeProblem(&st.sw, http.StatusBadRequest, nil, "the request target must be a path")
		return
	}
	// A Host that names no host (routing.CheckHost has the grammar) is
	// refused before routing: a host-less route would otherwise forward
	// it upstream as it came. The HTTP/1 server refuses some itself, with
	// its own 400, before any handler runs: a byte no host[:port] has
	// (space, control bytes, "/", "\", "@", non-ASCII), two Host headers,
	// none in HTTP/1.1. An empty Host passes only in HTTP/1.0, where Host
	// is optional (RFC 9112 §3.2 requires it from HTTP/1.1 on; HTTP/2's
	// :authority arrives here as the Host and is checked the same).
	if err := routing.CheckHost(r.Host); err != nil && (r.Host != "" || r.ProtoAtLeast(1, 1)) {
		writeProblem(&st.sw, http.StatusBadRequest, nil, err.Error())
		return
	}
	if routing.NeedsClean(r.URL) {
		routing.CleanURLPath(r.URL)
	}
	rt := p.tab.Load().lookup(routing.RequestHost(r.Host), r.URL.Path, r.Method)
	st.route = rt
	if p.tracer != nil {
		r = p.startSpan(st, r)
	}
	if rt == nil {
		writeProblem(&st.sw, http.StatusNotFound, nil, "no route matches the request")
		return
	}
	// The saturation detector sheds by the request's priority class, which
	// only its route can tell.
	if p.shed(st, r, rt) {
		return
	}
	if rt.maxBody > 0 {
		// A declared body over the limit is refused before it costs a token
		// or a slot; an undeclared (chunked) one is cut when it passes the
		// limit, and errorHandler answers 413.
		if r.ContentLength > rt.maxBody {
			closeIfBodyUnread(&st.sw, r)
			writeProblem(&st.sw, http.StatusRequestEntityTooLarge, rt, "the request body exceeds the route's max_body_bytes")
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(&st.sw, r.Body, rt.maxBody)
		}
	}
	p.serveRoute(st, r, rt)
}

func (p *Proxy) serveRoute(st *reqState, r *http.Request, rt *Route) {
	w := &st.sw
	// The deadline starts before admission so that the wait in the queue
	// counts against it (docs/SPEC.md: timeout is the whole-request
	// deadline, queue wait included).
	var deadline time.Time
	if rt.timeout > 0 {
		if p.wall {
			deadline = st.start.Add(rt.timeout) // a clock read saved
		} else {
			deadline = time.Now().Add(rt.timeout)
		}
	}
	st.rctx = routeCtx{client: r.Context(), deadline: deadline}
	defer st.rctx.release()
	ctx := context.Context(&st.rctx)

	// No healthy target: refuse before taking a token or a queue place.
	if !rt.up.anyHealthy() {
		closeIfBodyUnread(w, r)
		rt.adm.Refuse(admission.NoHealthyUpstream)
		st.reason = admission.NoHealthyUpstream
		retryAfter := rt.up.noHealthyRetryAfter()
		st.retryAfter = retryAfterSeconds(retryAfter)
		writeReject(w, rt, admission.NoHealthyUpstream, retryAfter)
		return
	}
	// On the wall clock the bulkhead's timer, read on the same clock as
	// the route deadline, ends a wait at the deadline, so the wait can do
	// without a deadline context (waitCtx); on an injected clock it cannot.
	wctx := ctx
	if p.wall {
		wctx = waitCtx{&st.rctx}
	}
	d := rt.adm.AdmitAt(wctx, r, st.start)
	st.reason, st.queueWait = d.Reason, d.QueueWait
	if d.Bulkheaded {
		rt.qwaitHist.Observe(d.QueueWait.Seconds())
		rt.qwaitWin.Observe(st.start, d.QueueWait)
		if h := rt.classWait[d.Class]; h != nil {
			h.Observe(d.QueueWait.Seconds())
			rt.classWaitWin[d.Class].Observe(st.start, d.QueueWait)
		}
	}
	if d.HasRateLimit {
		rt.setRateLimitHeaders(w.Header(), &d)
	}
	switch d.Reason {
	case admission.Admitted:
	case admission.ClientGone:
		st.status = StatusClientClosed // the client left while queued: nothing to write
		return
	default:
		st.retryAfter = retryAfterSeconds(d.RetryAfter)
		closeIfBodyUnread(w, r)
		writeReject(w, rt, d.Reason, d.RetryAfter)
		return
	}
	if s := rt.fault.active(st.start); s != nil && p.injectFault(st, r, ctx, rt, s, &d) {
		return
	}

	tg := rt.up.pick()
	st.target = tg
	tg.inflight.Add(1)
	finished := false
	defer func() {
		// Reached with finished unset only when ReverseProxy aborts a broken
		// body copy with a panic (http.ErrAbortHandler): the slot and the
		// target's count must still be given back, and the breaker is told
		// nothing it cannot know.
		if !finished {
			st.aborted = true
			tg.inflight.Add(-1)
			d.Finish(breaker.Ignored)
			recordFailure(rt, tg, st)
		}
	}()

	if rt.timeout > 0 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		// The transport cannot give up on a request while its writer is
		// blocked reading the client's body (it waits for that goroutine),
		// so a client that stalls its body would outlive the deadline. A
		// read deadline of now unblocks that read when the deadline passes.
		stop := context.AfterFunc(st.rctx.real(), func() {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		})
		defer stop()
	}
	if p.direct(r, st) {
		p.forwardDirect(w, r, ctx, st)
	} else {
		rt.up.rp.ServeHTTP(w, r.WithContext(context.WithValue(st.rctx.real(), stateKey{}, st)))
	}

	finished = true
	tg.inflight.Add(-1)
	d.FinishSample(rt.up.outcome(st), adaptiveSample(st))
	switch {
	case st.upstream != 0:
		rt.up.codes.inc(st.upstream)
	case st.err != nil && st.status != StatusClientClosed:
		rt.up.codes.inc(st.status) // 502 or 504: the upstream gave no answer
	}
	if st.err != nil || st.upstream >= 500 {
		recordFailure(rt, tg, st)
	}
	if st.err != nil {
		p.log.LogAttrs(ctx, logLevel(st.status), "upstream request failed",
			slog.String("route", rt.name), slog.String("upstream", rt.up.name),
			slog.String("target", tg.URL.Host), slog.Int("status", st.status),
			slog.String("error", st.err.Error()))
	}
}

// adaptiveSample classifies a finished request for an adaptive limit: an
// upstream timeout or an overload answer (503, 429) is a drop.
func adaptiveSample(st *reqState) admission.Sample {
	switch {
	case st.status == StatusClientClosed:
		return admission.SampleSkip
	case st.status == http.StatusGatewayTimeout, st.upstream == http.StatusServiceUnavailable, st.upstream == http.StatusTooManyRequests:
		return admission.SampleDropped
	}
	return admission.SampleOK
}

// outcome classifies a finished request for the upstream's breaker: the
// client's own departure never counts against the upstream.
func (u *Upstream) outcome(st *reqState) breaker.Outcome {
	if u.br == nil || st.status == StatusClientClosed {
		return breaker.Ignored
	}
	return u.br.Classify(st.upstream, st.err)
}

func logLevel(status int) slog.Level {
	if status == StatusClientClosed {
		return slog.LevelInfo // the client's choice, not a fault
	}
	return slog.LevelWarn
}
