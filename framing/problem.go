package framing

import (
	"bytes"
	"net/http"
	"strconv"
	"time"
)

// What Read has seen on a connection, for Write (guardedConn.seen).
const (
	seenPoison  = 1 << iota // the poison was handed to net/http
	seenUpgrade             // an Upgrade request: later writes may be another protocol
)

// net/http's own error answers (net/http server.go, conn.serve) are each
// one fmt.Fprintf to the connection, so one Write call, of one of two
// forms:
//
//	"HTTP/1.1 " + status + errorHeaders + status
//	"HTTP/1.1 501 Not Implemented" + errorHeaders + "Unsupported transfer encoding"
//
// where status is "<code> <StatusText(code)>" (400, 431), optionally
// followed by ": <text>" (a statusError: "505 HTTP Version Not Supported:
// unsupported protocol version", "400 Bad Request: invalid header name").
// No handler response has this form: net/http writes the Date header
// (chunkWriter.writeHeader) unless the handler set it to nil, and frames
// every body with Content-Length or chunking unless the connection closes
// after it. sluice's handler never removes Date (ReverseProxy copies the
// upstream's header values, never a nil one), and a handler that did
// would also have to send these exact bytes, net/http's own refusal.
const (
	errorStart    = "HTTP/1.1 "
	errorHeaders  = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	unsupportedTE = "Unsupported transfer encoding"
	// maxErrorWrite bounds the writes looked at: net/http's longest error
	// answer is well under it, and a response body is rarely this short.
	maxErrorWrite = 256
)

// Write sends p, except that one of net/http's own error answers is
// replaced by a problem+json response with the same status. The guard
// does not look at writes on a connection after an Upgrade request: once
// switched, its bytes are another protocol's.
func (c *guardedConn) Write(p []byte) (int, error) {
	if len(p) <= maxErrorWrite && bytes.HasPrefix(p, []byte(errorStart)) && c.seen.Load()&seenUpgrade == 0 {
		if code, text, ok := parseErrorAnswer(p); ok {
			if _, err := c.Conn.Write(c.problem(code, text)); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// parseErrorAnswer reports whether p is exactly one of net/http's error
// answers, and if so its status code and the text net/http gave after the
// status ("" if none).
func parseErrorAnswer(p []byte) (code int, text string, ok bool) {
	// The status line ends at the first CR; net/http's headers follow it.
	i := bytes.IndexByte(p, '\r')
	if i < 0 || !bytes.HasPrefix(p[i:], []byte(errorHeaders)) {
		return 0, "", false
	}
	status, body := p[len(errorStart):i], p[i+len(errorHeaders):]
	if len(status) < 5 || status[3] != ' ' {
		return 0, "", false
	}
	code, err := strconv.Atoi(string(status[:3]))
	if err != nil || code < 400 || code > 599 {
		return 0, "", false
	}
	reason, after, _ := bytes.Cut(status[4:], []byte(": "))
	if string(reason) != http.StatusText(code) {
		return 0, "", false
	}
	switch {
	case bytes.Equal(body, status):
	case code == http.StatusNotImplemented && len(after) == 0 && string(body) == unsupportedTE:
	default:
		return 0, "", false
	}
	return code, string(after), true
}

// problem is the application/problem+json response (RFC 9457) for code,
// shaped like the proxy's refusals (docs/SPEC.md): type, title, status,
// detail. The connection closes after it, as net/http closes it.
func (c *guardedConn) problem(code int, text string) []byte {
	detail := errorDetail(code, text, c.seen.Load()&seenPoison != 0)
	var body []byte
	body = append(body, `{"type":"about:blank","title":"`...)
	body = append(body, http.StatusText(code)...)
	body = append(body, `","status":`...)
	body = strconv.AppendInt(body, int64(code), 10)
	body = append(body, `,"detail":"`...)
	body = append(body, detail...) // constants without characters to escape
	body = append(body, "\"}\n"...)

	b := make([]byte, 0, 256+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\nContent-Type: application/problem+json\r\nCache-Control: no-store\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\nConnection: close\r\n\r\n"...)
	return append(b, body...)
}

// errorDetail says why net/http refused the request. text is what net/http
// said after the status (its constants: statusError, badRequestError); it
// is mapped to a sentence, never copied, so nothing net/http may add later
// reaches a client unreviewed.
func errorDetail(code int, text string, poisoned bool) string {
	switch code {
	case http.StatusBadRequest:
		// The poison is answered with net/http's plain 400. (A malformed
		// request line just before a refused request, read in the same
		// buffer, is answered with this detail too.)
		if poisoned && text == "" {
			return "The request has both Content-Length and Transfer-Encoding, which frame its body differently."
		}
		switch text {
		case "missing required Host header":
			return "The request has no Host header."
		case "malformed Host header":
			return "The request's Host header is malformed."
		case "invalid header name":
			return "The request has an invalid header name."
		case "invalid header value":
			return "The request has an invalid header value."
		}
		return "The request is not valid HTTP/1.1."
	case http.StatusRequestHeaderFieldsTooLarge:
		return "The request's header block is larger than this server accepts."
	case http.StatusNotImplemented:
		return "The request's Transfer-Encoding is not supported."
	case http.StatusHTTPVersionNotSupported:
		return "The request's HTTP version is not supported."
	}
	return http.StatusText(code) + "."
}
