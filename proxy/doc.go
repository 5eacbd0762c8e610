// Package proxy is sluice's HTTP glue: the http.Handler of the proxy
// listener. It matches a request to a route, admits it, forwards it to a
// target of the route's upstream, observes the outcome, and turns every
// refusal into its response in exactly one place (writeReject), from
// bodies and header values built once per route, reason and Retry-After
// (rejectCache), so that refusing under overload allocates nothing.
//
// # The request path
//
//	ServeHTTP
//	  ▼
//	door ── overload.Manager.Enter: heap over server.memory_limit, or
//	  │     server.max_inflight in flight ─────────── 503 overloaded, route ""
//	  │ CONNECT → 405; a target that is not a path, or a Host that is not
//	  │ a host → 400 (problem+json)
//	  ▼
//	match ── the first route in config order (proxy/internal/routing) ──► 404
//	  │ path cleaned of dot segments and doubled slashes first
//	  ▼
//	shed ── the saturation detector sheds the request's class ── 503 overloaded
//	  ▼
//	body limit ── a declared body over max_body_bytes ──────────────────► 413
//	  │ (the route deadline starts here: queue waits count against it)
//	  ▼
//	no healthy target? ─────────────────────────────────────────────────► 503
//	  ▼
//	admit ── admission.Controller: rate limit → breaker → bulkhead and
//	  │      queue → breaker ticket ──────────────────────────── 429 / 503
//	  ▼
//	forward ── direct path, or httputil.ReverseProxy ───── 502 / 504 / 499
//	  ▼
//	observe ── the breaker's outcome and the adaptive limit's sample
//	           (serveRoute); status counts, histograms, the access log line
//	           (or, for a refusal past its route's budget of lines, a count
//	           written once a second: refusallog.go) and the span (finish,
//	           deferred: once per request, whatever happened)
//
// Every request is answered exactly once, and accounted exactly once: finish
// runs deferred from ServeHTTP, so even a response that broke off midway
// (ReverseProxy panics with http.ErrAbortHandler) is counted and logged.
// Per-request state lives in a pooled reqState so that the admitted path
// and, above all, the refused path allocate next to nothing.
//
// # Two forwarding paths
//
// The common request is forwarded by the proxy itself (forwardDirect): no
// request body, HTTP/1.1 or later from the client, no upgrade, an http://
// target whose URL adds no path or query, and tracing off for it. Its
// upstream head is written straight from the client's request onto a pooled
// connection of the upstream's h1.Transport (proxy/internal/direct,
// proxy/internal/h1), and the response's headers move into the client's
// map. That skips ReverseProxy's request clone, header copies and context
// wrapping, about a third of a proxied request's garbage.
//
// Everything else goes through httputil.ReverseProxy, with rewrite,
// recordStatus and errorHandler: request bodies, upgrades (WebSocket),
// https targets, targets with a path or query, traced requests (the span's
// context is injected into the outgoing request), HTTP/1.0 clients. Its
// transport is the same h1.Transport, which hands what it does not carry
// itself to an http.Transport.
//
// Both paths apply one set of rewriting rules (prefix stripping, hop-by-hop
// headers, X-Forwarded-* and Forwarded, query cleaning) from
// proxy/internal/direct, and both map forwarding errors to a status in one
// function, upstreamStatus: connect failure 502, timeout or route deadline
// 504, client gone 499 (logged, nothing written). TestDirectMatchesReverseProxy
// and FuzzDirectHead check that the two paths cannot be told apart by the
// upstream or the client.
//
// # Reload
//
// The routing table (table: routes, upstreams, the route index) is
// immutable and swapped whole, so a request never sees half of two
// configs; requests already routed finish under the table they started
// with. compile carries live state over by name: an upstream whose config
// is unchanged keeps its connection pool, health checks and breaker; a
// route whose config is unchanged keeps its buckets, bulkhead, queue,
// counters and histograms, and is pointed at its upstream's new breaker if
// only the upstream changed.
//
// A route that a reload replaced may still hold requests, queued or in
// flight, under its old admission controller. Reload keeps such a
// controller as retired for as long as it is busy, so that Drain, when a
// graceful shutdown begins, refuses the requests still queued there with
// shutting_down like every other queued request. Upstreams that left the
// config stop their health checks and close their idle connections.
//
// # Contract
//
// The statuses, headers (Sluice-Reject, Retry-After, RateLimit,
// RateLimit-Policy), problem+json bodies and metric names written here are
// the user contract in docs/SPEC.md.
package proxy
