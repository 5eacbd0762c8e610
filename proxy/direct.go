package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Direct forwarding: the common request is forwarded by serveRoute itself,
// not by httputil.ReverseProxy.
//
// ReverseProxy first builds the outgoing request: it clones the client's
// request with its header map and URL, deletes hop-by-hop and forwarding
// headers from the copy, lets Rewrite set new ones, and wraps the context
// twice (the request state, a trace hook for 1xx responses). Then it copies
// the response header into the client's map one value at a time. That was
// about a third of the garbage of a proxied request and a share of its CPU
// (docs/BENCHMARKS.md). For a request h1Transport would carry anyway, the
// outgoing head is written straight from the client's request onto the
// upstream connection, leaving out what ReverseProxy would have removed;
// the response's header slices move into the client's header map.
//
// The upstream sees the same request either way, and the client the same
// response: TestDirectMatchesReverseProxy sends one set of requests through
// both and compares what each side received. Everything else — request
// bodies, upgrades, https targets, targets with a path or query of their
// own, traced requests, HTTP/1.0 clients — goes through ReverseProxy.

// direct reports whether serveRoute forwards r itself: what h1Transport
// carries (HTTP/1.1 or later from the client, no body, no upgrade, an
// http:// target), to a target whose URL adds no path or query, and not
// traced (the span's context is injected into an outgoing request).
func (p *Proxy) direct(r *http.Request, st *reqState) bool {
	u := st.target.URL
	return !p.noDirect && st.span == nil &&
		u.Scheme == "http" && (u.Path == "" || u.Path == "/") && u.RawPath == "" && u.RawQuery == "" && !u.ForceQuery &&
		r.ProtoAtLeast(1, 1) && (r.Body == nil || r.Body == http.NoBody) && r.ContentLength == 0 &&
		len(r.Trailer) == 0 && len(r.Header["Upgrade"]) == 0 && r.URL.Opaque == ""
}

// directExchange is one directly forwarded request: the client's request,
// the route's prefix to strip, the target, and the client's response writer
// for interim responses. It lives in the pooled reqState.
type directExchange struct {
	r      *http.Request
	w      http.ResponseWriter
	strip  string
	target *url.URL
}

var _ h1Exchange = (*directExchange)(nil)

// hopHeaders are removed from a forwarded request and response (RFC 9110
// §7.6.1), as ReverseProxy removes them, with those the Connection header
// names.
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// dropFromRequest reports whether header k of the client's request is left
// out of the upstream head: hop-by-hop, the client's forwarding headers
// (sluice writes its own), or written apart (Host, User-Agent) or never
// (framing).
func dropFromRequest(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"Host", "User-Agent", "Content-Length":
		return true
	}
	return false
}

// writeHead writes the upstream request head: what writeRequestHead would
// write for the request ReverseProxy and rewrite build from x.r.
func (x *directExchange) writeHead(w *bufio.Writer) error {
	r := x.r
	u := *r.URL
	if x.strip != "" {
		stripPrefix(&u, x.strip)
	}
	u.RawQuery = cleanQueryParams(u.RawQuery)
	uri := u.RequestURI()
	host := r.Host
	if host == "" {
		host = x.target.Host
	}
	if !validToken(r.Method) || strings.ContainsAny(uri, " \r\n") || strings.ContainsAny(host, " \r\n") {
		return fmt.Errorf("proxy: invalid request line %q %q host %q", r.Method, uri, host)
	}
	conn := r.Header["Connection"]
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	if ua := r.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" && !containsToken(conn, "User-Agent") {
		writeHeaderLine(w, "User-Agent", ua[0])
	}
	switch r.Method {
	case "POST", "PUT", "PATCH":
		w.WriteString("Content-Length: 0\r\n")
	}
	for k, vs := range r.Header {
		if dropFromRequest(k) || len(conn) > 0 && containsToken(conn, k) {
			continue
		}
		for _, v := range vs {
			writeHeaderLine(w, k, v)
		}
	}
	if containsToken(r.Header["Te"], "trailers") {
		w.WriteString("Te: trailers\r\n")
	}
	// setForwardingHeaders, written out.
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		w.WriteString("X-Forwarded-For: ")
		for _, prior := range r.Header["X-Forwarded-For"] {
			writeHeaderValue(w, prior)
			w.WriteString(", ")
		}
		writeHeaderValue(w, ip)
		w.WriteString("\r\n")
	}
	writeHeaderLine(w, "X-Forwarded-Host", r.Host)
	if r.TLS == nil {
		w.WriteString("X-Forwarded-Proto: http\r\n")
	} else {
		w.WriteString("X-Forwarded-Proto: https\r\n")
	}
	var buf [256]byte
	w.WriteString("Forwarded: ")
	fwd := appendForwarded(buf[:0], r)
	if bytes.ContainsAny(fwd, "\r\n") {
		writeHeaderValue(w, string(fwd))
	} else {
		w.Write(fwd)
	}
	_, err := w.WriteString("\r\n\r\n")
	return err
}

// interim passes a 1xx response on to the client, as ReverseProxy does.
func (x *directExchange) interim(code int, h http.Header) error {
	dst := x.w.Header()
	copyHeader(dst, h)
	x.w.WriteHeader(code)
	clear(dst) // WriteHeader does not clear it after a 1xx
	return nil
}

// forwardDirect forwards r to st.target on h1Transport and copies the
// response back: ReverseProxy.ServeHTTP with rewrite, recordStatus and
// errorHandler, for the requests direct accepts. ctx is the request's
// context under the route deadline.
func (p *Proxy) forwardDirect(w http.ResponseWriter, r *http.Request, ctx context.Context, st *reqState) {
	up := st.route.up
	st.direct = directExchange{r: r, w: w, strip: st.route.strip, target: st.target.URL}
	res, err := up.h1.exchange(ctx, canonicalAddr(st.target.URL), r, &st.direct)
	st.direct = directExchange{}
	if err != nil {
		answerForwardError(w, r, st, ctx, err)
		return
	}
	st.upstream = res.StatusCode

	removeHopByHopHeaders(res.Header)
	h := w.Header()
	for k, vv := range res.Header {
		if old, ok := h[k]; ok {
			h[k] = append(old, vv...)
		} else {
			h[k] = vv // res is not used again: its slices can move
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)

	if err := copyBody(w, res, up.rp.ErrorLog); err != nil {
		res.Body.Close()
		if r.Context().Value(http.ServerContextKey) == nil {
			return // not under http.Server, which alone recovers the panic
		}
		panic(http.ErrAbortHandler) // as ReverseProxy: the response broke off
	}
	res.Body.Close()
	if len(res.Trailer) > 0 {
		// Force chunking: net/http would otherwise add a Content-Length
		// to a short body and leave the trailers out.
		http.NewResponseController(w).Flush()
	}
	if len(res.Trailer) == announced {
		copyHeader(h, res.Trailer)
		return
	}
	for k, vv := range res.Trailer {
		k = http.TrailerPrefix + k
		for _, v := range vv {
			h.Add(k, v)
		}
	}
}

// copyBody copies res's body to w with a pooled buffer, flushing after
// every write for streams (server-sent events, or no declared length), as
// ReverseProxy does.
func copyBody(w http.ResponseWriter, res *http.Response, log interface{ Printf(string, ...any) }) error {
	stream := res.ContentLength == -1 || isEventStream(res.Header["Content-Type"])
	var flush func() error
	if stream {
		flush = http.NewResponseController(w).Flush
		if err := flush(); err != nil { // the head goes out before the first byte of body
			return err
		}
	}
	buf := bufferPool{}.Get()
	defer bufferPool{}.Put(buf)
	for {
		nr, rerr := res.Body.Read(buf)
		if rerr != nil && rerr != io.EOF && rerr != context.Canceled {
			log.Printf("httputil: ReverseProxy read error during body copy: %v", rerr)
		}
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if stream {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct []string) bool {
	if len(ct) == 0 || len(ct[0]) < len("text/event-stream") || !strings.EqualFold(ct[0][:len("text/event-stream")], "text/event-stream") {
		return false // the common case, without parsing
	}
	base, _, _ := mime.ParseMediaType(ct[0])
	return base == "text/event-stream"
}

// removeHopByHopHeaders deletes the headers a Connection header names and
// the hop-by-hop ones, as ReverseProxy does with a response.
func removeHopByHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.Trim(sf, " \t"); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// copyHeader adds every value of src to dst.
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		for _, v := range vv {
			dst.Add(k, v)
		}
	}
}

// containsToken reports whether a comma-separated header has token
// (case-insensitively) as one of its elements: "trailers" in Te, or a
// header the Connection header names (RFC 9110 §7.6.1: hop-by-hop too).
func containsToken(values []string, token string) bool {
	for _, v := range values {
		for e := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(e, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// writeHeaderValue writes a field value with any CR or LF turned into a
// space, as writeHeaderLine does.
func writeHeaderValue(w *bufio.Writer, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	w.WriteString(v)
}

// cleanQueryParams is ReverseProxy's: a query with a semicolon or a bad
// escape is re-encoded from what url.ParseQuery makes of it (Go's server
// no longer splits on semicolons, so neither may the upstream).
func cleanQueryParams(s string) string {
	reencode := func(s string) string {
		v, _ := url.ParseQuery(s)
		return v.Encode()
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
