package h1serve

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"

	"sluice/internal/httpsyntax"
)

// maxHeaderLines bounds the header lines of a request this package parses;
// a longer block is handed to net/http.
const maxHeaderLines = 64

// head is a parsed request head: the fields of the http.Request built from
// it. All strings are substrings of one copy of the head's bytes.
type head struct {
	method, target, host string
	url                  *url.URL
	header               http.Header
	close                bool
}

// parseHead parses the request head at the start of b into h, with its
// URL in u (a new one when u is nil). It returns the
// head's length and ok when b holds a complete head of the common kind
// (see the package documentation); 0 and ok when b holds no complete head
// yet; and !ok when the head is one for net/http, complete or not (it then
// reads the same bytes from the start).
//
// Whatever parseHead accepts, http.ReadRequest parses into the same
// request (FuzzParseHead): the rules below are a subset of net/http's, and
// where they are in doubt they hand off.
func parseHead(b []byte, u *url.URL) (h head, n int, ok bool) {
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		// No complete head: more to read, unless what is there already
		// shows it is not one of ours (a bare LF line ending, say).
		if bytes.IndexByte(b, '\n') >= 0 && !lineEndsWellUntil(b) {
			return h, 0, false
		}
		return h, 0, true
	}
	n = end + 4
	s := string(b[:end+2]) // the request line and header lines, each ending in CRLF

	// The request line: METHOD SP origin-form SP HTTP/1.1.
	line, rest, _ := cut(s)
	sp := strings.IndexByte(line, ' ')
	if sp < 0 || !plainMethod(line[:sp]) {
		return h, 0, false
	}
	h.method = line[:sp]
	line = line[sp+1:]
	sp = strings.IndexByte(line, ' ')
	if sp < 1 || line[sp+1:] != "HTTP/1.1" || !plainTarget(line[:sp]) {
		return h, 0, false
	}
	h.target = line[:sp]
	if u == nil {
		u = new(url.URL)
	}
	if !simpleURL(u, h.target) {
		parsed, err := url.ParseRequestURI(h.target)
		if err != nil {
			return h, 0, false
		}
		*u = *parsed
	}
	h.url = u

	// Header lines. The map's value slices share one backing array, as
	// net/textproto's do.
	lines := 0 // header lines but Host's, which stays out of the map
	for r := rest; r != ""; {
		if len(r) < 5 || !httpsyntax.EqualFold(r[:5], "host:") {
			lines++
		}
		i := strings.IndexByte(r, '\n')
		r = r[i+1:]
	}
	if lines > maxHeaderLines {
		return h, 0, false
	}
	h.header = make(http.Header, lines)
	strs := make([]string, lines)
	hosts := 0
	for rest != "" {
		line, rest, _ = cut(rest)
		colon := strings.IndexByte(line, ':')
		if colon < 1 {
			return h, 0, false
		}
		key, value := line[:colon], httpsyntax.TrimOWS(line[colon+1:])
		if !httpsyntax.Token(key) || !httpsyntax.Value(value) {
			return h, 0, false
		}
		key = textproto.CanonicalMIMEHeaderKey(key) // no copy when canonical already
		switch key {
		case "Host":
			hosts++
			h.host = value
			continue // net/http takes Host out of the map
		}
		if len(strs) == 0 {
			return h, 0, false // a Host spelt otherwise than counted: net/http's
		}
		switch key {
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Trailer", "Http2-Settings", "Pragma":
			return h, 0, false // framing, protocol switches and their kin: net/http's
		}
		strs[0] = value
		if vs, seen := h.header[key]; seen {
			h.header[key] = append(vs, value)
		} else {
			h.header[key] = strs[:1:1]
		}
		strs = strs[1:]
	}
	if hosts != 1 || !plainHost(h.host) {
		return h, 0, false
	}
	h.close = httpguts.HeaderValuesContainsToken(h.header["Connection"], "close")
	return h, n, true
}

var crlfcrlf = []byte("\r\n\r\n")

// lineEndsWellUntil reports whether every LF in b is preceded by a CR and
// no CR stands alone, up to the last LF.
func lineEndsWellUntil(b []byte) bool {
	last := bytes.LastIndexByte(b, '\n')
	for i := 0; i <= last; i++ {
		switch b[i] {
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return false
			}
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return false
			}
		}
	}
	return true
}

// cut splits s at its first CRLF; a line with a bare CR or LF in it is
// not found by the callers' token checks, so it need not be split out.
func cut(s string) (line, rest string, found bool) {
	i := strings.IndexByte(s, '\n')
	if i < 1 || s[i-1] != '\r' {
		return s, "", false
	}
	return s[:i-1], s[i+1:], true
}

// simpleURL sets u to what url.ParseRequestURI makes of target when its
// path needs no unescaping: unreserved characters and those a path keeps
// as they are, then an optional query taken raw. It reports false, u
// untouched, for any other target.
func simpleURL(u *url.URL, target string) bool {
	path, query, hasQuery := target, "", false
	if i := strings.IndexByte(target, '?'); i >= 0 {
		path, query, hasQuery = target[:i], target[i+1:], true
	}
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '~' || c == '/':
		case c == '$' || c == '&' || c == '+' || c == ',' || c == ':' || c == ';' || c == '=' || c == '@':
		default:
			return false
		}
	}
	*u = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
	return true
}

// plainMethod: the methods that carry no body in the common request.
func plainMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "DELETE", "OPTIONS":
		return true
	}
	return false
}

// plainTarget: an origin-form target of visible ASCII, without a fragment.
func plainTarget(t string) bool {
	if t == "" || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// plainHost: a reg-name or IPv4 host with an optional port, or a bracketed
// IPv6 literal; nothing net/http's host check could refuse.
func plainHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']':
		default:
			return false
		}
	}
	return true
}
