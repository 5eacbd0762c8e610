package h1serve

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"sluice/internal/testutil"
)

// FuzzParseHead checks parseHead against http.ReadRequest, on the seeds
// of the proxy's FuzzDirectHead and more: whatever parseHead accepts,
// net/http parses into the same request, ending at the same byte; and a
// head cut short is never accepted.
func FuzzParseHead(f *testing.F) {
	f.Add("GET", "/api/a%2Fb?x=1;y=2", "Connection: X-A, keep-alive\nX-A: 1\nTe: trailers, gzip\nX-Forwarded-For: 10.0.0.1\nForwarded: for=10.0.0.1")
	f.Add("POST", "/p?%zz", "User-Agent: \nKeep-Alive: 5\nProxy-Connection: x")
	f.Add("DELETE", "/api", "Connection: User-Agent\nUser-Agent: u\nCookie: a=1\nCookie: b=2")
	f.Add("OPTIONS", "/x?", "Host: other.example:81\nUpgrade: h2c")
	f.Add("GET", "/", "")
	f.Add("GET", "/a/../b?q=%41", "accept: */*\nx-lower-case: v\nConnection: close")
	f.Add("HEAD", "/", "Host: [::1]:8080\nX-Empty:\nX-Tab: \ta b\t")
	f.Add("GET", "//double/slash", "Host: a\nHost: b")
	f.Add("GET", "/", "Content-Length: 0")
	f.Add("GET", "/", "Transfer-Encoding: chunked")
	f.Add("GET", "/", "Pragma: no-cache")
	f.Add("GET", "/", "X-Obs: a\n folded")
	f.Add("GET", "/\xff", "")
	f.Add("GET", "/", "Bad Name: v")
	f.Add("GET", "/", "X: \x7f")
	f.Add("GET", "/", "Host: a b")
	f.Add("GET", "*", "")
	f.Add("CONNECT", "a:443", "")
	f.Add("get", "/", "")
	f.Add("GET", "/a!b*(c)'d", "")
	f.Add("GET", "/p?", "")
	f.Add("GET", "/p?a?b=%zz&c", "")
	f.Add("GET", "/$&+,:;=@-_.~", "")
	f.Add("GET", "/%7e%2F", "")
	f.Fuzz(func(t *testing.T, method, target, lines string) {
		raw := testutil.RequestHead(method, target, lines)
		h, n, ok := parseHead([]byte(raw+"NEXT"), nil)
		for cut := 0; cut < len(raw); cut += 1 + cut/4 {
			if _, m, ok := parseHead([]byte(raw[:cut]), nil); ok && m > 0 {
				t.Fatalf("a head cut at %d of %d was accepted: %q", cut, len(raw), raw[:cut])
			}
		}
		if !ok || n == 0 {
			return // net/http's
		}
		br := bufio.NewReader(strings.NewReader(raw + "NEXT"))
		r, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("parseHead accepted what net/http refuses (%v): %q", err, raw)
		}
		if rest, _ := io.ReadAll(br); string(rest) != "NEXT" || n != len(raw) {
			t.Fatalf("parseHead ends at %d, net/http at %d (%q): %q", n, len(raw)+4-len(rest), rest, raw)
		}
		type fields struct {
			Method, RequestURI, Host string
			URL                      url.URL
			Header                   http.Header
			Close                    bool
		}
		got := fields{h.method, h.target, h.host, *h.url, h.header, h.close}
		want := fields{r.Method, r.RequestURI, r.Host, *r.URL, r.Header, r.Close}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("for %q\n got  %+v\n want %+v", raw, got, want)
		}
		if r.ContentLength != 0 || r.Body != http.NoBody || r.ProtoMajor != 1 || r.ProtoMinor != 1 || len(r.TransferEncoding) > 0 || r.Trailer != nil {
			t.Fatalf("net/http reads a body or another protocol in an accepted head: %q", raw)
		}
	})
}

// TestParseHeadHandsOff pins heads that are net/http's, whatever net/http
// then makes of them.
func TestParseHeadHandsOff(t *testing.T) {
	for _, raw := range []string{
		"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		if _, _, ok := parseHead([]byte(raw), nil); ok {
			t.Errorf("parseHead takes %q", raw)
		}
	}
	// Incomplete, and nothing yet shows it is net/http's: read on.
	for _, raw := range []string{"", "GET", "GET / HTTP/1.1\r\nHost: a\r\n", "GET / HTTP/1.1\r"} {
		if _, n, ok := parseHead([]byte(raw), nil); !ok || n != 0 {
			t.Errorf("parseHead(%q) = %d, %v; want 0, true", raw, n, ok)
		}
	}
}

func BenchmarkParseHead(b *testing.B) {
	raw := []byte("GET /api/items?page=2 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Request-Id: 7b1c\r\n\r\n")
	b.ReportAllocs()
	var u url.URL
	for b.Loop() {
		if _, n, ok := parseHead(raw, &u); !ok || n != len(raw) {
			b.Fatal("not parsed")
		}
	}
}
