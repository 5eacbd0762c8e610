package server

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"sluice/internal/testutil"
)

// TestFramingConflictRefused: sluice guards both proxy listeners (package
// framing has the guard's own tests). On the plain listener and on HTTP/1
// over TLS, a request with both Content-Length and Transfer-Encoding is
// answered 400 problem+json and its connection closed; the request before
// it is proxied, the one smuggled behind it never reaches the upstream,
// and the refusal is counted in sluice_http_framing_rejected_total.
func TestFramingConflictRefused(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
	}))
	defer up.Close()
	_, certFile, keyFile := testutil.StaticPair(t)
	s := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
tls: {listen: "127.0.0.1:0", cert_file: %q, key_file: %q, redirect_http: false}
upstreams: [{name: u, targets: [%q]}]
routes: [{name: all, match: {path_prefix: /}, upstream: u}]
`, certFile, keyFile, up.URL))
	raw := "GET /one HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	dials := map[string]func() (net.Conn, error){
		"plain": func() (net.Conn, error) { return net.Dial("tcp", s.ProxyAddr()) },
		"tls h1": func() (net.Conn, error) {
			return tls.Dial("tcp", s.TLSAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		},
	}
	for _, name := range []string{"plain", "tls h1"} {
		c, err := dials[name]()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, resp := range testutil.RawExchange(t, c, raw) {
			got = append(got, fmt.Sprintf("%d %s close=%v", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Close))
		}
		c.Close()
		if want := "[200  close=false 400 application/problem+json close=true]"; fmt.Sprint(got) != want {
			t.Errorf("%s: responses %v, want %s", name, got, want)
		}
	}
	mu.Lock()
	if got := strings.Join(paths, ","); got != "/one,/one" {
		t.Errorf("upstream saw %v, want only /one from each connection", got)
	}
	mu.Unlock()
	_, body := get(t, http.DefaultClient, "http://"+s.AdminAddr()+"/metrics")
	if !strings.Contains(body, "sluice_http_framing_rejected_total 2\n") {
		t.Errorf("/metrics has no sluice_http_framing_rejected_total 2:\n%s", grepLines(body, "framing"))
	}
}
