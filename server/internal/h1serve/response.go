package h1serve

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"sluice/internal/httpsyntax"
)

// bufferBeforeChunking is how much body a response holds before it sends
// its head: a handler that writes no more than this and returns gets a
// Content-Length, as under net/http (the same size).
const bufferBeforeChunking = 2048

// response is the http.ResponseWriter of one request. It follows
// net/http's response for the requests this package serves (HTTP/1.1, no
// request body): the same bytes for the same handler calls, Date apart
// (TestResponsesMatchNetHTTP).
type response struct {
	c      *conn
	req    *http.Request
	header http.Header
	snap   http.Header   // the header map at WriteHeader, until the head is written
	w      *bufio.Writer // bufferBeforeChunking, in front of cw
	cw     chunkWriter

	wroteHeader     bool
	status          int
	contentLength   int64 // from the handler's Content-Length; -1: none
	written         int64
	handlerDone     bool
	closeAfterReply bool
	hijacked        bool
	trailers        []string // declared in the Trailer header
	clenBuf         [20]byte
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ http.Hijacker       = (*response)(nil)
)

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.hijacked {
		w.c.srv.logf("http: response.WriteHeader on hijacked connection")
		return
	}
	if w.wroteHeader {
		w.c.srv.logf("http: superfluous response.WriteHeader call")
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		bw := w.c.bw
		writeStatusLine(bw, code)
		writeFields(bw, w.header, excludedHeadersNoBody)
		bw.WriteString("\r\n")
		bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.header
	cl := get(h, "Content-Length")
	if cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		}
	}
	// The head goes out with the header map as it is now. When nothing
	// the body does can change it — a length is set and either no body is
	// allowed or nothing will be sniffed — it is written now; otherwise
	// the map is copied (net/http clones it here). The copy is shallow:
	// Header's methods replace or extend a value slice, never change it.
	if !bodyAllowedForStatus(code) || w.contentLength != -1 && (has(h, "Content-Type") || get(h, "Content-Encoding") != "" || get(h, "Transfer-Encoding") != "") {
		w.cw.writeHeader(nil)
	} else {
		w.snap = make(http.Header, len(h))
		for k, v := range h {
			w.snap[k] = v
		}
	}
	if cl != "" && w.contentLength == -1 {
		w.c.srv.logf("http: invalid Content-Length of %q", cl)
		h.Del("Content-Length")
	}
}

func (w *response) Write(p []byte) (int, error) { return w.write(len(p), p, "") }

func (w *response) WriteString(s string) (int, error) { return w.write(len(s), nil, s) }

// write writes p, or s when p is nil, as net/http's response.write.
func (w *response) write(n int, p []byte, s string) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if n == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(n)
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if p != nil {
		return w.w.Write(p)
	}
	return w.w.WriteString(s)
}

func (w *response) Flush() { w.FlushError() }

// FlushError sends what is buffered, head first, as http.ResponseController's
// Flush expects.
func (w *response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	err := w.w.Flush()
	if e2 := w.cw.flush(); err == nil {
		err = e2
	}
	return err
}

// Hijack hands the connection to the handler with what is buffered of it.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		w.w.Flush() // as net/http: what the handler wrote goes first
		w.cw.flush()
	}
	w.hijacked = true
	c := w.c
	c.stopWatch()
	br := bufio.NewReader(&prefixConn{Conn: c.nc, pending: c.unread()})
	return c.nc, bufio.NewReadWriter(br, bufio.NewWriter(c.nc)), nil
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error  { return w.c.nc.SetReadDeadline(t) }
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.nc.SetWriteDeadline(t) }

// finish completes the response after the handler returned.
func (w *response) finish() {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.w.Flush()
	w.cw.close()
	if err := w.c.bw.Flush(); err != nil {
		w.c.fail(err)
	}
}

// reusable reports whether the connection can serve another request.
func (w *response) reusable() bool {
	if w.closeAfterReply || w.c.werr != nil {
		return false
	}
	if w.req.Method != "HEAD" && w.contentLength != -1 && bodyAllowedForStatus(w.status) && w.contentLength != w.written {
		return false
	}
	return true
}

func (w *response) declareTrailer(k string) {
	k = http.CanonicalHeaderKey(k)
	if !httpguts.ValidTrailerHeader(k) {
		return // not allowed as a trailer
	}
	w.trailers = append(w.trailers, k)
}

func (w *response) finalTrailers() http.Header {
	var t http.Header
	for k, vv := range w.header {
		if kk, found := strings.CutPrefix(k, http.TrailerPrefix); found {
			if t == nil {
				t = make(http.Header)
			}
			t[kk] = vv
		}
	}
	for _, k := range w.trailers {
		if t == nil {
			t = make(http.Header)
		}
		for _, v := range w.header[k] {
			t.Add(k, v)
		}
	}
	return t
}

// chunkWriter writes the head before the first body bytes, and frames the
// body in chunks when it has no length, as net/http's chunkWriter.
type chunkWriter struct {
	res         *response
	wroteHeader bool
	chunking    bool
}

func (cw *chunkWriter) Write(p []byte) (n int, err error) {
	if !cw.wroteHeader {
		cw.writeHeader(p)
	}
	if cw.res.req.Method == "HEAD" {
		return len(p), nil // eaten
	}
	bw := cw.res.c.bw
	if cw.chunking {
		var hex [16]byte
		bw.Write(strconv.AppendUint(hex[:0], uint64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err = bw.Write(p)
	if cw.chunking && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		cw.res.c.fail(err)
	}
	return n, err
}

func (cw *chunkWriter) flush() error {
	if !cw.wroteHeader {
		cw.writeHeader(nil)
	}
	err := cw.res.c.bw.Flush()
	if err != nil {
		cw.res.c.fail(err)
	}
	return err
}

func (cw *chunkWriter) close() {
	if !cw.wroteHeader {
		cw.writeHeader(nil)
	}
	if cw.chunking {
		bw := cw.res.c.bw
		bw.WriteString("0\r\n")
		if t := cw.res.finalTrailers(); t != nil {
			t.Write(bw)
		}
		bw.WriteString("\r\n")
	}
}

var (
	excludedHeadersNoBody   = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}
	suppressedHeaders304    = []string{"Content-Type", "Content-Length", "Transfer-Encoding"}
	suppressedHeadersNoBody = []string{"Content-Length", "Transfer-Encoding"}
)

// writeHeader finalises the head and writes it to the connection's
// buffer; p is the body's first bytes (all of it when the handler is
// done), sniffed for a Content-Type when the handler set none. The rules
// are net/http's chunkWriter.writeHeader for an HTTP/1.1 request without
// a body, with keep-alives on until the server shuts down.
func (cw *chunkWriter) writeHeader(p []byte) {
	cw.wroteHeader = true
	w := cw.res
	header := w.snap
	if header == nil {
		header = w.header
	}
	w.snap = nil
	isHEAD := w.req.Method == "HEAD"
	keepAlives := !w.c.srv.shuttingDown()

	var exclude map[string]bool
	del := func(k string) {
		if _, ok := header[k]; !ok {
			return
		}
		if exclude == nil {
			exclude = make(map[string]bool)
		}
		exclude[k] = true
	}
	var contentType, connection, transferEncoding string
	var date, contentLength []byte

	trailers := false
	for k := range header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if exclude == nil {
				exclude = make(map[string]bool)
			}
			exclude[k] = true
			trailers = true
		}
	}
	for _, v := range header["Trailer"] {
		trailers = true
		foreachHeaderElement(v, w.declareTrailer)
	}

	te := get(header, "Transfer-Encoding")
	hasTE := te != ""
	if w.handlerDone && !trailers && !hasTE && bodyAllowedForStatus(w.status) && !has(header, "Content-Length") && (!isHEAD || len(p) > 0) {
		w.contentLength = int64(len(p))
		contentLength = strconv.AppendInt(w.clenBuf[:0], int64(len(p)), 10)
	}
	hasCL := w.contentLength != -1
	if w.req.Close {
		w.closeAfterReply = true
	}
	if get(header, "Connection") == "close" || !keepAlives {
		w.closeAfterReply = true
	}

	code := w.status
	if bodyAllowedForStatus(code) {
		_, haveType := header["Content-Type"]
		if get(header, "Content-Encoding") == "" && !haveType && !hasTE && len(p) > 0 {
			contentType = http.DetectContentType(p)
		}
	} else {
		suppressed := suppressedHeadersNoBody
		if code == http.StatusNotModified {
			suppressed = suppressedHeaders304
		}
		for _, k := range suppressed {
			del(k)
		}
	}
	if _, ok := header["Date"]; !ok {
		date = httpDate(time.Now())
	}
	if hasCL && hasTE && te != "identity" {
		w.c.srv.logf("http: WriteHeader called with both Transfer-Encoding of %q and a Content-Length of %d", te, w.contentLength)
		del("Content-Length")
		hasCL = false
	}
	switch {
	case isHEAD || !bodyAllowedForStatus(code) || code == http.StatusNoContent:
		del("Transfer-Encoding")
	case hasCL:
		del("Transfer-Encoding")
	case hasTE && te == "identity":
		cw.chunking = false
		w.closeAfterReply = true
		del("Transfer-Encoding")
	default:
		cw.chunking = true
		transferEncoding = "chunked"
		if hasTE && te == "chunked" {
			del("Transfer-Encoding")
		}
	}
	if cw.chunking {
		del("Content-Length")
	}
	if w.closeAfterReply && (!keepAlives || !hasToken(get(header, "Connection"), "close")) && !isProtocolSwitch(code, header) {
		del("Connection")
		connection = "close"
	}

	bw := w.c.bw
	writeStatusLine(bw, code)
	writeFields(bw, header, exclude)
	if date != nil {
		bw.WriteString("Date: ")
		bw.Write(date)
		bw.WriteString("\r\n")
	}
	if contentLength != nil {
		bw.WriteString("Content-Length: ")
		bw.Write(contentLength)
		bw.WriteString("\r\n")
	}
	for i, v := range [...]string{contentType, connection, transferEncoding} {
		if v != "" {
			bw.WriteString(extraHeaderKeys[i])
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
}

// dates holds the Date value of the current second, formatted once for
// every response in it.
var dates atomic.Pointer[dateValue]

type dateValue struct {
	sec int64
	b   []byte
}

// httpDate returns now's second in http.TimeFormat; the bytes are shared
// and must not be changed.
func httpDate(now time.Time) []byte {
	sec := now.Unix()
	if d := dates.Load(); d != nil && d.sec == sec {
		return d.b
	}
	d := &dateValue{sec: sec, b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	dates.Store(d)
	return d.b
}

var extraHeaderKeys = [...]string{"Content-Type", "Connection", "Transfer-Encoding"}

func isProtocolSwitch(code int, h http.Header) bool {
	return code == http.StatusSwitchingProtocols && get(h, "Upgrade") != "" && httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade")
}

// hasToken is net/http's test for a token in a response's Connection
// value: token, ASCII case-insensitive, between spaces, tabs or commas.
func hasToken(v, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if httpsyntax.EqualFold(v[sp:sp+len(token)], token) { // token is lower case
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

func has(h http.Header, k string) bool { _, ok := h[k]; return ok }

// get is h.Get(k) for a canonical k, without canonicalising it again.
func get(h http.Header, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// field is one header field of a response head: its name and values.
type field struct {
	k string
	v []string
}

// writeFields writes h's fields but those in exclude as http.Header's
// WriteSubset does — sorted by name, names that are no valid field name
// left out, CR and LF in values turned to spaces and the values trimmed —
// without its pooled sorter and its per-value replacer.
func writeFields(bw *bufio.Writer, h http.Header, exclude map[string]bool) {
	var buf [24]field
	fs := buf[:0]
	for k, v := range h {
		if !exclude[k] {
			fs = append(fs, field{k, v})
		}
	}
	slices.SortFunc(fs, func(a, b field) int { return strings.Compare(a.k, b.k) })
	for _, f := range fs {
		if !httpguts.ValidHeaderFieldName(f.k) {
			continue
		}
		for _, v := range f.v {
			if strings.ContainsAny(v, "\r\n") {
				v = newlineToSpace.Replace(v)
			}
			bw.WriteString(f.k)
			bw.WriteString(": ")
			bw.WriteString(textproto.TrimString(v))
			bw.WriteString("\r\n")
		}
	}
}

var newlineToSpace = strings.NewReplacer("\n", " ", "\r", " ")

func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199, status == 204, status == 304:
		return false
	}
	return true
}

func writeStatusLine(bw *bufio.Writer, code int) {
	bw.WriteString("HTTP/1.1 ")
	if text := http.StatusText(code); text != "" {
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
		bw.WriteByte(' ')
		bw.WriteString(text)
		bw.WriteString("\r\n")
	} else {
		fmt.Fprintf(bw, "%03d status code %d\r\n", code, code)
	}
}

func foreachHeaderElement(v string, fn func(string)) {
	v = textproto.TrimString(v)
	if v == "" {
		return
	}
	if !strings.Contains(v, ",") {
		fn(v)
		return
	}
	for f := range strings.SplitSeq(v, ",") {
		if f = textproto.TrimString(f); f != "" {
			fn(f)
		}
	}
}
