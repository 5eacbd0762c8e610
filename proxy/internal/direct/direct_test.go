package direct

import (
	"net/http/httptest"
	"strings"
	"testing"

	"sluice/internal/httpsyntax"
)

func TestForwardedIPv6(t *testing.T) {
	in := httptest.NewRequest("GET", "/", nil)
	in.RemoteAddr = "[2001:db8::1]:5555"
	in.Host = "h"
	if got, want := string(AppendForwarded(nil, in)), `for="[2001:db8::1]";host=h;proto=http`; got != want {
		t.Errorf("Forwarded = %q, want %q", got, want)
	}
}

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
		in := httptest.NewRequest("GET", "/", nil)
		in.RemoteAddr, in.Host = remote, host
		fwd := string(AppendForwarded(nil, in))
		pairs, ok := parseForwardedElement(fwd)
		if !ok {
			t.Fatalf("Forwarded %q does not parse (remote %q, host %q)", fwd, remote, host)
		}
		if host != "" && pairs["host"] != host {
			t.Fatalf("Forwarded host %q, want %q (header %q)", pairs["host"], host, fwd)
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
		for i < len(s) && httpsyntax.TokenByte(s[i]) {
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
			for j < len(s) && httpsyntax.TokenByte(s[j]) {
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

func TestBufferPool(t *testing.T) {
	var p BufferPool
	b := p.Get()
	if len(b) != copyBufSize {
		t.Fatalf("Get: %d bytes, want %d", len(b), copyBufSize)
	}
	p.Put(b)
	p.Put(make([]byte, 10)) // not one of ours: dropped, not a panic
	if b := p.Get(); len(b) != copyBufSize {
		t.Fatalf("Get after Put: %d bytes", len(b))
	}
}
