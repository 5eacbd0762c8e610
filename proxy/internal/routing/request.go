package routing

import (
	"net/url"
	"path"
	"strings"
)

// RequestHost returns the host of a Host header, hostport, in the form
// rules compare: without port, lower-cased, with a trailing dot removed,
// an IPv6 literal without its brackets. It allocates only when the host
// has upper-case letters.
func RequestHost(hostport string) string {
	h := hostport
	if strings.HasPrefix(h, "[") { // [v6]:port or [v6]
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 && strings.IndexByte(h[i+1:], ':') < 0 {
		h = h[:i] // name:port or v4:port; a bare v6 address keeps its colons
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// NeedsClean reports whether u's path needs normalising before routing:
// dot segments in the decoded path (%2e%2e included), or empty or dot
// segments in the escaped one. Such a path is normalised before routing and
// forwarding, so that /public/../admin cannot be routed as /public and then
// served as /admin upstream.
func NeedsClean(u *url.URL) bool {
	if !strings.HasPrefix(u.Path, "/") || hasDotSegment(u.Path) {
		return true
	}
	if u.RawPath == "" {
		return strings.Contains(u.Path, "//")
	}
	e := u.EscapedPath()
	return strings.Contains(e, "//") || hasDotSegment(e)
}

func hasDotSegment(p string) bool {
	return strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
		strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")
}

// CleanURLPath normalises u's path in place (RFC 3986 §5.2.4 dot-segment
// removal plus merged slashes), keeping a trailing slash. Slashes are merged
// in the escaped form, so an encoded slash (%2F) stays inside its segment,
// as the client meant — as long as the decoded path has no dot segment.
// The decoded path must end up without one: an upstream that decodes
// %2e%2e or ..%2F would otherwise be walked out of the prefix the request
// was routed by. So when the escaped form still decodes to a dot segment,
// the decoded path is cleaned instead, and there %2F is a separator like
// "/" (/a/..%2Fb becomes /b). Either way the path routed is the path
// forwarded.
func CleanURLPath(u *url.URL) {
	esc := cleanSlashed(u.EscapedPath())
	if p, err := url.PathUnescape(esc); err == nil && !hasDotSegment(p) {
		u.Path, u.RawPath = p, esc
		if u.EscapedPath() != esc {
			u.RawPath = "" // not a valid encoding of p: let url escape it
		}
		return
	}
	u.Path, u.RawPath = cleanSlashed(u.Path), ""
}

// cleanSlashed is path.Clean of "/"+p, keeping a trailing slash.
func cleanSlashed(p string) string {
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}
