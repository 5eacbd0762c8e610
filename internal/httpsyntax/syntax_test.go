package httpsyntax

import (
	"testing"

	"golang.org/x/net/http/httpguts"
)

// TestAgainstHTTPGuts holds the byte classes to x/net's, which net/http
// uses: every byte is a token byte exactly when httpguts says so, and a
// value byte exactly when it is a valid field-value byte that is not
// obs-text.
func TestAgainstHTTPGuts(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if got, want := TokenByte(b), httpguts.IsTokenRune(rune(c)) && c < 0x80; got != want {
			t.Errorf("TokenByte(%#x) = %v, httpguts %v", c, got, want)
		}
		if got, want := ValueByte(b), httpguts.ValidHeaderFieldValue(string(b)) && c < 0x80; got != want {
			t.Errorf("ValueByte(%#x) = %v, want %v", c, got, want)
		}
	}
}

func TestHelpers(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"close", true}, {"Keep-Alive, CLOSE", true}, {" x ,\tclose\t", true},
		{"closed", false}, {"", false}, {"foo close", false}, {"clos", false},
	} {
		if got := HasElement(tc.v, "close"); got != tc.want {
			t.Errorf("HasElement(%q) = %v", tc.v, got)
		}
		if got := HasElement([]byte(tc.v), "close"); got != tc.want {
			t.Errorf("HasElement([]byte %q) = %v", tc.v, got)
		}
	}
	if TrimOWS(" \ta b\t ") != "a b" || string(TrimOWS([]byte("\t"))) != "" {
		t.Error("TrimOWS")
	}
	if !Token("GET") || Token("") || Token("G T") || !Value("a b\tc") || Value("a\x00") || Value("\x80") {
		t.Error("Token/Value")
	}
	if !EqualFold("Host:", "host:") || EqualFold("Hosts", "host:") {
		t.Error("EqualFold")
	}
}
