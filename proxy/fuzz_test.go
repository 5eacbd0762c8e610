package proxy

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzForwarded: the Forwarded header sluice appends parses under RFC 7239
// (each parameter a token or a quoted-string) and carries the Host back
// unchanged, whatever client address and Host arrive.
func FuzzForwarded(f *testing.F) {
	for _, s := range [][2]string{{"192.0.2.1:5555", "api.example.com"}, {"[2001:db8::1]:80", "h:8443"}, {"weird", `a"b\c`}, {"10.0.0.1:1", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, remote, host string) {
		for i := 0; i < len(host); i++ {
			if host[i] < 0x21 || host[i] > 0x7e {
				return // net/http refuses such a Host before any handler runs
			}
		}
		out := httptest.NewRequest("GET", "/", nil)
		in := httptest.NewRequest("GET", "/", nil)
		in.RemoteAddr, in.Host = remote, host
		setForwarded(out, in)
		pairs, ok := parseForwardedElement(out.Header.Get("Forwarded"))
		if !ok {
			t.Fatalf("Forwarded %q does not parse (remote %q, host %q)", out.Header.Get("Forwarded"), remote, host)
		}
		if host != "" && pairs["host"] != host {
			t.Fatalf("Forwarded host %q, want %q (header %q)", pairs["host"], host, out.Header.Get("Forwarded"))
		}
		if pairs["proto"] != "http" {
			t.Fatalf("proto %q", pairs["proto"])
		}
	})
}

// parseForwardedElement parses one forwarded-element (RFC 7239 §4):
// pairs of token "=" ( token / quoted-string ) separated by ";".
func parseForwardedElement(s string) (map[string]string, bool) {
	pairs := map[string]string{}
	for len(s) > 0 {
		i := 0
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		if i == 0 || i == len(s) || s[i] != '=' {
			return nil, false
		}
		name := strings.ToLower(s[:i])
		s = s[i+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			j := 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j == len(s) {
				return nil, false // unterminated
			}
			val, s = b.String(), s[j+1:]
		} else {
			j := 0
			for j < len(s) && isTokenChar(s[j]) {
				j++
			}
			if j == 0 {
				return nil, false
			}
			val, s = s[:j], s[j:]
		}
		pairs[name] = val
		if s == "" {
			break
		}
		if s[0] != ';' {
			return nil, false
		}
		s = s[1:]
	}
	return pairs, true
}
