// Package httpsyntax holds the HTTP/1.1 field syntax sluice's own parsers
// and writers accept (RFC 9110 §5.5, §5.6): tokens, plain field values,
// case-insensitive comparison and optional whitespace. The request loop
// (server/internal/h1serve), the upstream client (proxy/internal/h1) and
// the direct path (proxy/internal/direct) share these rules, so that what
// one takes for a token the others do too.
package httpsyntax

// tchar marks the bytes of an RFC 9110 token; vchar the bytes of a plain
// field value: visible ASCII, space and tab (no obs-text, no controls).
var tchar, vchar = func() (t, v [256]bool) {
	for c := 0; c < 256; c++ {
		v[c] = c == '\t' || ' ' <= c && c < 0x7f
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			t[c] = true
		}
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return
}()

// TokenByte reports whether c may appear in a token (tchar).
func TokenByte(c byte) bool { return tchar[c] }

// ValueByte reports whether c may appear in a plain field value.
func ValueByte(c byte) bool { return vchar[c] }

// Token reports whether s is a non-empty token: a method or a field name.
func Token[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return len(s) > 0
}

// Value reports whether s is a plain field value.
func Value[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if !vchar[s[i]] {
			return false
		}
	}
	return true
}

// EqualFold reports whether s is lower, ignoring ASCII case; lower must
// be in lower case.
func EqualFold[T ~string | ~[]byte](s T, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// TrimOWS removes the optional whitespace (spaces and tabs) around s.
func TrimOWS[T ~string | ~[]byte](s T) T {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// HasElement reports whether the comma-separated list v has token (in
// lower case) as one of its elements, ignoring ASCII case and optional
// whitespace, as net/http looks for "close" in a Connection field.
func HasElement[T ~string | ~[]byte](v T, token string) bool {
	for len(v) > 0 {
		e := v
		v = v[:0]
		for i := 0; i < len(e); i++ {
			if e[i] == ',' {
				e, v = e[:i], e[i+1:]
				break
			}
		}
		if EqualFold(TrimOWS(e), token) {
			return true
		}
	}
	return false
}
