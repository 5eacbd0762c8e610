package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sluice/config"
	"sluice/proxy/internal/routing"
)

// rawRoundTrip writes one raw request to the proxy and reads its answer
// with the body (testutil.RawExchange drains bodies; this test reads the
// problem and the upstream's echo).
func rawRoundTrip(t *testing.T, proxyURL, raw string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: body: %v", raw, err)
	}
	return resp, body
}

// TestHostValidation sends requests with malformed and well-formed hosts
// over raw connections to a proxy whose one route takes any host, so that
// nothing but the Host check stands between a request and the upstream.
func TestHostValidation(t *testing.T) {
	up := echoUpstream(t, "up")
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: up, targets: ["%s"]}]
routes: [{name: all, match: {path_prefix: /}, upstream: up}]
`, up.URL))
	get := func(host string) string {
		return "GET /x HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"
	}

	// Refused by sluice: 400 problem+json whose detail says what is wrong.
	// host is the Host the handler sees, raw the request that carries it.
	for _, tc := range []struct{ host, raw string }{
		{"[::1", ""},
		{"[::1]x", ""},
		{"[127.0.0.1]", ""},
		{"[fe80::1%eth0]", ""},
		{"::1", ""},
		{"a..b", ""},
		{".example.com", ""},
		{"example.com:99999", ""},
		{"example.com:65536", ""},
		{"example.com:8o", ""},
		{":80", ""},
		{"a,b", ""},
		{"a;b=c", ""},
		{"ex%41mple.com", ""},
		{"0177.0.0.1", ""},
		{"1.2.3", ""},
		{"2130706433", ""},
		{"", get("")}, // an empty Host header in HTTP/1.1
		{"a..b", "GET /x HTTP/1.0\r\nHost: a..b\r\n\r\n"},
		// Absolute-form: the Host is the URL's authority, decoded.
		{"é.example", "GET http://%C3%A9.example/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		{"example.com:99999", "GET http://example.com:99999/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		{"[fe80::1%eth0]", "GET http://[fe80::1%25eth0]/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
	} {
		raw := tc.raw
		if raw == "" {
			raw = get(tc.host)
		}
		t.Run(fmt.Sprintf("sluice refuses %q", tc.host), func(t *testing.T) {
			resp, body := rawRoundTrip(t, p.URL, raw)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", resp.StatusCode, body)
			}
			pb := decodeProblem(t, resp, body)
			want := routing.CheckHost(tc.host)
			if want == nil {
				t.Fatalf("routing.CheckHost(%q) accepts it", tc.host)
			}
			if pb.Status != 400 || pb.Title != "Bad Request" || pb.Detail != want.Error() {
				t.Errorf("problem %+v, want detail %q", pb, want)
			}
		})
	}

	// Refused by net/http before any handler runs (its own 400, whose body
	// sluice does not write).
	for _, raw := range []string{
		get("a b"),
		get("a/b"),
		get(`a\b`),
		get("user@example.com"),
		get("a\x01b"),
		get("a\x7fb"),
		get("a\tb"),
		get("a{b"),
		get("é.example"),
		"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
		"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
		"GET http://[::1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET http://ex%41mple.com/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	} {
		t.Run(fmt.Sprintf("net/http refuses %q", raw), func(t *testing.T) {
			resp, body := rawRoundTrip(t, p.URL, raw)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", resp.StatusCode, body)
			}
		})
	}

	// Forwarded, with the Host as it came.
	for _, host := range []string{
		"example.com",
		"example.com:8080",
		"127.0.0.1",
		"[::1]:80",
		"[2001:db8::1]",
		"xn--bcher-kva.example",
		"API.Example.COM",
		"example.com.",
		"example.com:",
		"my_service:80",
	} {
		t.Run(fmt.Sprintf("forwards %q", host), func(t *testing.T) {
			resp, body := rawRoundTrip(t, p.URL, get(host))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200; body %s", resp.StatusCode, body)
			}
			if e := decodeEcho(t, body); e.Name != "up" || e.Host != host || e.Path != "/x" {
				t.Errorf("upstream %q saw host %q, path %q; want up, %q, /x", e.Name, e.Host, e.Path, host)
			}
		})
	}
	t.Run("forwards HTTP/1.0 without Host", func(t *testing.T) {
		resp, body := rawRoundTrip(t, p.URL, "GET /x HTTP/1.0\r\n\r\n")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200; body %s", resp.StatusCode, body)
		}
		if e := decodeEcho(t, body); e.Name != "up" || e.Path != "/x" {
			t.Errorf("upstream %q saw path %q", e.Name, e.Path)
		}
	})
}

// TestHostValidationHTTP2: in HTTP/2 the host is the :authority, which the
// HTTP/2 server hands over as the Host; it is checked the same.
func TestHostValidationHTTP2(t *testing.T) {
	up := echoUpstream(t, "up")
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`
upstreams: [{name: up, targets: ["%s"]}]
routes: [{name: all, match: {path_prefix: /}, upstream: up}]
`, up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(p)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	client := srv.Client()
	t.Cleanup(client.CloseIdleConnections)
	for _, tc := range []struct {
		host string
		want int
	}{
		{"[::1", http.StatusBadRequest},
		{"a..b", http.StatusBadRequest},
		{"example.com:99999", http.StatusBadRequest},
		{"example.com:8443", http.StatusOK},
		{"[::1]:443", http.StatusOK},
	} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%q: %v", tc.host, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("%q: answered in %s, want HTTP/2", tc.host, resp.Proto)
		}
		if resp.StatusCode != tc.want {
			t.Errorf("%q: status %d, want %d; body %s", tc.host, resp.StatusCode, tc.want, body)
			continue
		}
		if tc.want == http.StatusBadRequest {
			if pb := decodeProblem(t, resp, body); pb.Detail != routing.CheckHost(tc.host).Error() {
				t.Errorf("%q: detail %q", tc.host, pb.Detail)
			}
		} else if e := decodeEcho(t, body); e.Host != tc.host {
			t.Errorf("%q: upstream saw host %q", tc.host, e.Host)
		}
	}
}
