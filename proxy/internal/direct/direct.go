package direct

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"sync"

	"sluice/internal/httpsyntax"
	"sluice/proxy/internal/h1"
)

// Eligible reports whether a request to target is one the direct path
// forwards: what h1.Transport carries itself (HTTP/1.1 or later from the
// client, no body, no upgrade, an http:// target) to a target whose URL
// adds no path or query. The caller adds its own conditions (a traced
// request is not eligible: its span's context is injected into an
// outgoing request).
func Eligible(r *http.Request, target *url.URL) bool {
	return target.Scheme == "http" && (target.Path == "" || target.Path == "/") && target.RawPath == "" && target.RawQuery == "" && !target.ForceQuery &&
		r.ProtoAtLeast(1, 1) && (r.Body == nil || r.Body == http.NoBody) && r.ContentLength == 0 &&
		len(r.Trailer) == 0 && len(r.Header["Upgrade"]) == 0 && r.URL.Opaque == ""
}

// Request is one directly forwarded request as an h1.Exchange: the
// client's request, the route's prefix to strip, the target, and the
// client's response writer for interim responses. The zero value is
// empty; a caller may keep one in pooled per-request state.
type Request struct {
	R      *http.Request
	W      http.ResponseWriter
	Strip  string   // prefix removed from the path; "" for none
	Target *url.URL // the upstream target (scheme and host)
}

var _ h1.HeaderExchange = (*Request)(nil)

// ResponseHeader is the client's response header: the transport reads
// the common response's fields straight into it (WriteResponse then has
// nothing to copy).
func (x *Request) ResponseHeader() http.Header { return x.W.Header() }

// WriteHead writes the upstream request head: what h1.Transport would
// write for the request that httputil.ReverseProxy and the proxy's rewrite
// build from x.R.
func (x *Request) WriteHead(w *bufio.Writer) error {
	r := x.R
	u := *r.URL
	if x.Strip != "" {
		StripPrefix(&u, x.Strip)
	}
	u.RawQuery = CleanQueryParams(u.RawQuery)
	uri := u.RequestURI()
	host := r.Host
	if host == "" {
		host = x.Target.Host
	}
	if !httpsyntax.Token(r.Method) || strings.ContainsAny(uri, " \r\n") || strings.ContainsAny(host, " \r\n") {
		return fmt.Errorf("direct: invalid request line %q %q host %q", r.Method, uri, host)
	}
	conn := r.Header["Connection"]
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	if ua := r.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" && !ContainsToken(conn, "User-Agent") {
		h1.WriteHeaderLine(w, "User-Agent", ua[0])
	}
	switch r.Method {
	case "POST", "PUT", "PATCH":
		w.WriteString("Content-Length: 0\r\n")
	}
	for k, vs := range r.Header {
		if dropFromRequest(k) || len(conn) > 0 && ContainsToken(conn, k) {
			continue
		}
		for _, v := range vs {
			h1.WriteHeaderLine(w, k, v)
		}
	}
	if ContainsToken(r.Header["Te"], "trailers") {
		w.WriteString("Te: trailers\r\n")
	}
	// setForwardingHeaders, written out.
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		w.WriteString("X-Forwarded-For: ")
		for _, prior := range r.Header["X-Forwarded-For"] {
			h1.WriteHeaderValue(w, prior)
			w.WriteString(", ")
		}
		h1.WriteHeaderValue(w, ip)
		w.WriteString("\r\n")
	}
	h1.WriteHeaderLine(w, "X-Forwarded-Host", r.Host)
	if r.TLS == nil {
		w.WriteString("X-Forwarded-Proto: http\r\n")
	} else {
		w.WriteString("X-Forwarded-Proto: https\r\n")
	}
	w.WriteString("Forwarded: ")
	fwd := AppendForwarded(w.AvailableBuffer(), r) // built in place: no copy, no allocation
	if bytes.ContainsAny(fwd, "\r\n") {
		h1.WriteHeaderValue(w, string(fwd))
	} else {
		w.Write(fwd)
	}
	_, err := w.WriteString("\r\n\r\n")
	return err
}

// Interim passes a 1xx response on to the client, as ReverseProxy does.
func (x *Request) Interim(code int, h http.Header) error {
	dst := x.W.Header()
	CopyHeader(dst, h)
	x.W.WriteHeader(code)
	clear(dst) // WriteHeader does not clear it after a 1xx
	return nil
}

// WriteResponse copies res, the upstream's answer to a directly forwarded
// request, to w as httputil.ReverseProxy would: hop-by-hop headers
// removed, the response's header slices moved into w's header map (res is
// not used again), announced trailers declared and copied after the body,
// streams flushed as they come. A res whose Header is w's already (read
// for a Request, a HeaderExchange) has had its fields forwarded there.
// log receives body read errors as ReverseProxy's ErrorLog would. A
// non-nil error means the response broke off after its head was written;
// res's body is closed either way.
func WriteResponse(w http.ResponseWriter, res *http.Response, log interface{ Printf(string, ...any) }) error {
	h := w.Header()
	if !sameHeader(res.Header, h) {
		RemoveHopByHopHeaders(res.Header)
		for k, vv := range res.Header {
			if old, ok := h[k]; ok {
				h[k] = append(old, vv...)
			} else {
				h[k] = vv // res is not used again: its slices can move
			}
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

	err := copyBody(w, res, log)
	res.Body.Close()
	if err != nil {
		return err
	}
	if len(res.Trailer) > 0 {
		// Force chunking: net/http would otherwise add a Content-Length
		// to a short body and leave the trailers out.
		http.NewResponseController(w).Flush()
	}
	if len(res.Trailer) == announced {
		CopyHeader(h, res.Trailer)
		return nil
	}
	for k, vv := range res.Trailer {
		k = http.TrailerPrefix + k
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	return nil
}

// sameHeader reports whether a and b are the same map.
func sameHeader(a, b http.Header) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
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
	buf := BufferPool{}.Get()
	defer BufferPool{}.Put(buf)
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

// RemoveHopByHopHeaders deletes the headers a Connection header names and
// the hop-by-hop ones, as ReverseProxy does with a response.
func RemoveHopByHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.Trim(sf, " \t"); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range h1.HopHeaders {
		delete(h, k)
	}
}

// CopyHeader adds every value of src to dst.
func CopyHeader(dst, src http.Header) {
	for k, vv := range src {
		for _, v := range vv {
			dst.Add(k, v)
		}
	}
}

// ContainsToken reports whether a comma-separated header has token
// (case-insensitively) as one of its elements: "trailers" in Te, or a
// header the Connection header names (RFC 9110 §7.6.1: hop-by-hop too).
func ContainsToken(values []string, token string) bool {
	for _, v := range values {
		for e := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(e, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// CleanQueryParams is ReverseProxy's: a query with a semicolon or a bad
// escape is re-encoded from what url.ParseQuery makes of it (Go's server
// no longer splits on semicolons, so neither may the upstream).
func CleanQueryParams(s string) string {
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

// AppendForwarded appends the client's Forwarded chain and this hop to b:
// the RFC 7239 Forwarded value both forwarding paths send.
func AppendForwarded(b []byte, in *http.Request) []byte {
	ip, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		ip = in.RemoteAddr
	}
	for _, prior := range in.Header["Forwarded"] {
		b = append(b, prior...)
		b = append(b, ", "...)
	}
	b = append(b, "for="...)
	switch addr, err := netip.ParseAddr(ip); {
	case err != nil:
		b = append(b, "unknown"...) // §6.2: the client is not known
	case addr.Is6() && !addr.Is4In6():
		// §6: IPv6 is bracketed and quoted. A zone (fe80::1%eth0) means
		// nothing beyond this host, and could carry a quote: dropped.
		b = append(b, `"[`...)
		b = addr.WithZone("").AppendTo(b)
		b = append(b, `]"`...)
	default:
		b = addr.Unmap().AppendTo(b)
	}
	if in.Host != "" {
		b = append(b, ";host="...)
		b = appendForwardedValue(b, in.Host)
	}
	b = append(b, ";proto="...)
	if in.TLS != nil {
		return append(b, "https"...)
	}
	return append(b, "http"...)
}

// appendForwardedValue appends v as a token, or as a quoted-string when it
// holds characters a token may not (such as the ':' of host:port).
func appendForwardedValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if !httpsyntax.TokenByte(v[i]) {
			b = append(b, '"')
			for j := 0; j < len(v); j++ {
				if v[j] == '"' || v[j] == '\\' {
					b = append(b, '\\')
				}
				b = append(b, v[j])
			}
			return append(b, '"')
		}
	}
	return append(b, v...)
}

// StripPrefix removes prefix from u's path, leaving at least "/".
func StripPrefix(u *url.URL, prefix string) {
	p := strings.TrimPrefix(u.Path, prefix)
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	u.Path = p
	if u.RawPath != "" {
		if rp, ok := strings.CutPrefix(u.RawPath, prefix); ok {
			if rp == "" || rp[0] != '/' {
				rp = "/" + rp
			}
			u.RawPath = rp
		} else {
			u.RawPath = ""
		}
	}
}

// BufferPool recycles 32 KiB body copy buffers, for the direct path and as
// httputil.ReverseProxy's BufferPool, which would otherwise allocate one
// per proxied body. The pool holds array
// pointers, which Put gets back from the slice without allocating (a
// pointer to the slice header would cost an allocation per request).
type BufferPool struct{}

const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

func (BufferPool) Get() []byte { return copyBufs.Get().(*[copyBufSize]byte)[:] }

func (BufferPool) Put(b []byte) {
	if len(b) == copyBufSize {
		copyBufs.Put((*[copyBufSize]byte)(b))
	}
}
