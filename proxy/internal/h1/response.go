package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"sluice/internal/httpsyntax"
)

// response is a response head read by readCommonResponse together with
// its body, in one allocation.
type response struct {
	http.Response
	body body
	vals [8]string // the header's values, if no more
}

// maxCommonLines is the most field lines readCommonResponse takes; a head
// with more is left to http.ReadResponse.
const maxCommonLines = 64

// headLine is where one field line's name and value lie in the head.
type headLine struct {
	k0, k1, v0, v1 int32
	conn           bool // a Connection field
}

// readCommonResponse reads the common response head from br and returns
// it as http.ReadResponse would, or returns nil having consumed nothing,
// for http.ReadResponse to read the same bytes. The common head is all in
// br's buffer once filled: "HTTP/1.1", a final status from 200 to 599,
// field lines of a token name and visible ASCII, space and tab, ended by
// CRLF and never folded, and a body framed by a single Content-Length of
// digits, or no body at all (a HEAD request, a 204 or 304). Anything else —
// interim responses, Transfer-Encoding, a body delimited by the close, a
// repeated Content-Length, obs-text, a bare LF, a head longer than the
// buffer — is left to http.ReadResponse.
//
// http.ReadResponse costs about ten allocations for a small head: the
// status line, each value, the map, the value slices, the transfer reader,
// the limit reader, its body. Here there are four: the response with its
// body and the array every value slice shares (as textproto shares one),
// unless there are more than eight values; the head as one string (names
// and values are substrings of it; a name is copied only if it is neither
// canonical nor one textproto knows); the map and its table.
//
// The response's Body is http.NoBody, or its body reading the length from
// br: that one needs its connection (body.pc) set before it is read.
//
// With dst not nil the fields go into dst instead of a map of the
// response's own, as a proxy forwards them: the hop-by-hop ones and those
// a Connection field names are left out (direct.RemoveHopByHopHeaders),
// and a field dst has already gets the response's values appended. Header
// is then dst, and the map and its table are not allocated.
func readCommonResponse(br *bufio.Reader, req *http.Request, dst http.Header) *response {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlfcrlf)
	for end < 0 {
		if len(buf) >= br.Size() {
			return nil
		}
		from := max(len(buf)-3, 0)
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return nil // http.ReadResponse reads on, and meets the error itself
		}
		buf, _ = br.Peek(br.Buffered())
		if i := bytes.Index(buf[from:], crlfcrlf); i >= 0 {
			end = from + i
		}
	}
	if end+4 > 1<<31-1 {
		return nil
	}
	head := buf[:end+2] // through the last line's CRLF

	// The status line: "HTTP/1.1 DDD reason", the reason optional.
	const proto = "HTTP/1.1 "
	if len(head) < len(proto)+3+2 || string(head[:len(proto)]) != proto {
		return nil
	}
	d0, d1, d2 := head[9], head[10], head[11]
	if d0 < '2' || d0 > '5' || d1 < '0' || d1 > '9' || d2 < '0' || d2 > '9' {
		return nil
	}
	code := int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
	i := 12
	if head[i] == ' ' {
		for i++; httpsyntax.ValueByte(head[i]); i++ {
		}
	}
	statusEnd := i
	if head[i] != '\r' || head[i+1] != '\n' {
		return nil
	}
	i += 2

	var lines [maxCommonLines]headLine
	n := 0
	length := int64(-1) // Content-Length; -1: none
	closing, cacheControl, pragmaSeen, noCache := false, false, false, false
	for i < len(head) {
		if n == len(lines) {
			return nil
		}
		k0 := i
		for httpsyntax.TokenByte(head[i]) {
			i++
		}
		if i == k0 || head[i] != ':' {
			return nil
		}
		k1 := i
		for i++; head[i] == ' ' || head[i] == '\t'; i++ {
		}
		v0 := i
		for httpsyntax.ValueByte(head[i]) {
			i++
		}
		v1 := i
		if head[i] != '\r' || head[i+1] != '\n' {
			return nil
		}
		i += 2
		for v1 > v0 && (head[v1-1] == ' ' || head[v1-1] == '\t') {
			v1--
		}
		l := headLine{k0: int32(k0), k1: int32(k1), v0: int32(v0), v1: int32(v1)}
		k, v := head[k0:k1], head[v0:v1]
		switch {
		case httpsyntax.EqualFold(k, "content-length"):
			if length >= 0 {
				return nil // repeated: http.ReadResponse's to judge
			}
			if length = parseLength(v); length < 0 {
				return nil
			}
		case httpsyntax.EqualFold(k, "transfer-encoding"):
			return nil
		case httpsyntax.EqualFold(k, "connection"):
			l.conn = true
			closing = closing || httpsyntax.HasElement(v, "close")
		case httpsyntax.EqualFold(k, "pragma"):
			if !pragmaSeen {
				pragmaSeen, noCache = true, string(v) == "no-cache"
			}
		case httpsyntax.EqualFold(k, "cache-control"):
			cacheControl = true
		}
		lines[n] = l
		n++
	}

	// Framing, as http.ReadResponse's readTransfer decides it: a HEAD
	// response has no body and reports the length it declares; a 204 or
	// 304 has none and reports 0; any other has the length it declares.
	bodyLen := int64(0)
	switch {
	case req != nil && req.Method == "HEAD":
	case code == 204 || code == 304:
		length = 0
	case length < 0:
		return nil // delimited by the close of the connection
	default:
		bodyLen = length
	}

	s := string(head)
	r := &response{Response: http.Response{
		Status:        s[len(proto):statusEnd],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		ContentLength: length,
		Close:         closing,
		Request:       req,
	}}
	h := dst
	if h == nil {
		h = make(http.Header, n)
	}
	named := lines[:n] // the Connection fields that name hop-by-hop ones
	if closing {
		named = nil // gone with the close, as http.ReadResponse drops them
	}
	strs := r.vals[:]
	if n > len(r.vals) {
		strs = make([]string, n)
	}
	for _, l := range lines[:n] {
		if l.conn && closing {
			continue // http.ReadResponse deletes a Connection field that says close
		}
		key := textproto.CanonicalMIMEHeaderKey(s[l.k0:l.k1])
		if dst != nil && hopByHop(key, s, named) {
			continue
		}
		value := s[l.v0:l.v1]
		if vv := h[key]; vv != nil {
			h[key] = append(vv, value)
		} else {
			// Capacity 1: an append to one value slice never writes over the next.
			vv, strs = strs[:1:1], strs[1:]
			vv[0] = value
			h[key] = vv
		}
	}
	if noCache && !cacheControl && (dst == nil || !hopByHop("Cache-Control", s, named)) {
		// HTTP/1.0's Pragma: no-cache, as http.ReadResponse reads it.
		h["Cache-Control"] = append(h["Cache-Control"], "no-cache")
	}
	r.Header = h
	if bodyLen == 0 {
		r.Body = http.NoBody
	} else {
		r.body.lr = lengthReader{br: br, n: bodyLen}
		r.Body = &r.body
	}
	br.Discard(end + 4)
	return r
}

// HopHeaders are the fields a proxy removes from a forwarded request and
// response (RFC 9110 §7.6.1), as httputil.ReverseProxy removes them,
// besides those a Connection field names.
var HopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// hopByHop reports whether a response field named key is hop-by-hop
// (RFC 9110 §7.6.1): one of the fields a proxy never forwards, or one that
// a Connection field among lines of head s names, compared as
// RemoveHopByHopHeaders compares them (the names read are tokens, and a
// token's canonical form is its case-folding).
func hopByHop(key, s string, lines []headLine) bool {
	for _, h := range HopHeaders {
		if key == h {
			return true
		}
	}
	for _, l := range lines {
		if !l.conn {
			continue
		}
		for e := range strings.SplitSeq(s[l.v0:l.v1], ",") {
			if strings.EqualFold(httpsyntax.TrimOWS(e), key) { // both ASCII
				return true
			}
		}
	}
	return false
}

// lengthReader reads a body of n bytes from br, as http.ReadResponse's
// body does one with a Content-Length: io.EOF comes with its last bytes,
// and io.ErrUnexpectedEOF if br ends before them.
type lengthReader struct {
	br *bufio.Reader
	n  int64 // bytes still to read
}

func (r *lengthReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n, err := r.br.Read(p)
	r.n -= int64(n)
	switch {
	case r.n == 0:
		err = io.EOF
	case err == io.EOF:
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// parseLength returns the value of a Content-Length of digits alone, or
// -1 for any other (http.ReadResponse's to judge). 18 digits always fit
// an int64.
func parseLength(v []byte) int64 {
	if len(v) == 0 || len(v) > 18 {
		return -1
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
