// Package direct forwards the common request without httputil.ReverseProxy.
//
// ReverseProxy first builds the outgoing request: it clones the client's
// request with its header map and URL, deletes hop-by-hop and forwarding
// headers from the copy, lets Rewrite set new ones, and wraps the context
// twice (the request state, a trace hook for 1xx responses). Then it copies
// the response header into the client's map one value at a time. That was
// about a third of the garbage of a proxied request and a share of its CPU
// (docs/BENCHMARKS.md). For a request h1.Transport carries anyway
// (Eligible), Request writes the outgoing head straight from the client's
// request onto the upstream connection, leaving out what ReverseProxy would
// have removed, and WriteResponse moves the response's header slices into
// the client's header map.
//
// The upstream sees the same request either way, and the client the same
// response: the proxy's TestDirectMatchesReverseProxy sends one set of
// requests through both paths and compares what each side received, and
// FuzzDirectHead compares the heads for any request the server can parse.
// Everything else — request bodies, upgrades, https targets, targets with a
// path or query of their own, traced requests, HTTP/1.0 clients — goes
// through ReverseProxy.
//
// The rewriting rules both paths apply live here too (StripPrefix,
// AppendForwarded, CleanQueryParams, the hop-by-hop header list), so that
// the two cannot drift apart.
package direct
