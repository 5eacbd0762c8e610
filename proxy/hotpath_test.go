package proxy

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"reflect"
	"strconv"
	"testing"
)

// TestForwardingHeadersLikeSetXForwarded: the hand-written X-Forwarded-*
// headers are exactly what httputil.ProxyRequest.SetXForwarded sets (after
// the client's chain is carried over, as rewrite did before), and the
// Forwarded hop is appended to the client's.
func TestForwardingHeadersLikeSetXForwarded(t *testing.T) {
	tests := []struct {
		remote, host    string
		xff, fwd        []string
		tls             bool
		wantFwd         string
		wantNoXFFHeader bool
	}{
		{remote: "192.0.2.1:5555", host: "api.example.com", wantFwd: "for=192.0.2.1;host=api.example.com;proto=http"},
		{remote: "192.0.2.1:5555", host: "h:8443", xff: []string{"203.0.113.9", "198.51.100.2"}, fwd: []string{"for=203.0.113.9", "for=x"},
			tls: true, wantFwd: `for=203.0.113.9, for=x, for=192.0.2.1;host="h:8443";proto=https`},
		{remote: "[2001:db8::1]:80", host: "", wantFwd: `for="[2001:db8::1]";proto=http`},
		{remote: "[::ffff:192.0.2.7]:80", host: "h", wantFwd: "for=192.0.2.7;host=h;proto=http"},
		{remote: "not-an-address", host: `a"b`, xff: []string{"203.0.113.9"}, wantFwd: `for=unknown;host="a\"b";proto=http`, wantNoXFFHeader: true},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			in := httptest.NewRequest("GET", "/", nil)
			in.RemoteAddr, in.Host = tc.remote, tc.host
			if tc.xff != nil {
				in.Header["X-Forwarded-For"] = tc.xff
			}
			if tc.fwd != nil {
				in.Header["Forwarded"] = tc.fwd
			}
			if tc.tls {
				in.TLS = &tls.ConnectionState{}
			}

			ref := &httputil.ProxyRequest{In: in, Out: in.Clone(in.Context())}
			ref.Out.Header = http.Header{}
			if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
				ref.Out.Header["X-Forwarded-For"] = prior
			}
			ref.SetXForwarded()

			out := in.Clone(in.Context())
			out.Header = http.Header{}
			setForwardingHeaders(out, in)
			for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if got, want := out.Header[k], ref.Out.Header[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %q, SetXForwarded sets %q", k, got, want)
				}
				if v := out.Header[k]; v != nil && cap(v) != len(v) {
					t.Errorf("%s has spare capacity %d: an append would overwrite a neighbour", k, cap(v))
				}
			}
			if _, ok := out.Header["X-Forwarded-For"]; ok == tc.wantNoXFFHeader {
				t.Errorf("X-Forwarded-For present = %v", ok)
			}
			if got := out.Header.Get("Forwarded"); got != tc.wantFwd {
				t.Errorf("Forwarded = %q, want %q", got, tc.wantFwd)
			}
		})
	}
}

// TestForwardingHeadersAllocations: the headers cost two allocations (the
// shared value array and the Forwarded string), map growth aside.
func TestForwardingHeadersAllocations(t *testing.T) {
	in := httptest.NewRequest("GET", "/", nil)
	in.RemoteAddr, in.Host = "192.0.2.1:5555", "api.example.com"
	out := in.Clone(in.Context())
	out.Header = make(http.Header, 8)
	allocs := testing.AllocsPerRun(100, func() { setForwardingHeaders(out, in) })
	if allocs > 2 {
		t.Errorf("setForwardingHeaders: %v allocations, want at most 2", allocs)
	}
}

// TestRateLimitValueCache: cached values are the formatted ones whatever
// the order of (r, t) pairs, including pairs that share a slot, and a
// repeated pair costs nothing.
func TestRateLimitValueCache(t *testing.T) {
	var c rlCache
	name := []byte(`"api"`)
	for round := 0; round < 2; round++ {
		for r := 0; r < 70; r++ {
			for _, tt := range []int64{0, 1, 2, 17} {
				got := c.value(name, r, tt)
				want := fmt.Sprintf(`"api";r=%d;t=%d`, r, tt)
				if len(got) != 1 || cap(got) != 1 || got[0] != want {
					t.Fatalf("value(%d, %d) = %q (cap %d), want [%q]", r, tt, got, cap(got), want)
				}
			}
		}
	}
	c.value(name, 199, 1)
	if allocs := testing.AllocsPerRun(100, func() { c.value(name, 199, 1) }); allocs != 0 {
		t.Errorf("a repeated value costs %v allocations", allocs)
	}
}
