package routing

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
)

func TestCheckHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		want error // nil: valid
	}{
		{"example.com", nil},
		{"example.com:8080", nil},
		{"Example.COM", nil},
		{"example.com.", nil}, // fully qualified
		{"example.com.:443", nil},
		{"xn--bcher-kva.example", nil},
		{"my_service", nil},
		{"a-b.c~d", nil},
		{"localhost", nil},
		{"a", nil},
		{"127.0.0.1", nil},
		{"127.0.0.1:80", nil},
		{"127.0.0.1.", nil},
		{"0.0.0.0", nil},
		{"1a.example", nil},      // a digit-first label that is not the last
		{"123.example.com", nil}, // a numeric label that is not the last
		{"0xdead.beef", nil},     // the last label is no number
		{"[::1]", nil},
		{"[::1]:80", nil},
		{"[2001:DB8::1]:65535", nil},
		{"[::ffff:192.0.2.1]", nil},
		{"example.com:", nil}, // empty port: the same as none
		{"example.com:0", nil},
		{"example.com:00080", nil},

		{"", errHostEmpty},
		{":80", errHostNoName},
		{":", errHostNoName},
		{"a b", errHostByte},
		{"a/b", errHostByte},
		{`a\b`, errHostByte},
		{"user@example.com", errHostByte},
		{"a\x00b", errHostByte},
		{"a\x7fb", errHostByte},
		{"a\tb", errHostByte},
		{"bücher.example", errHostByte},
		{"ex%41mple.com", errHostByte},
		{"a,b", errHostByte},
		{"a;b=c", errHostByte},
		{"a*b", errHostByte},
		{"a]", errHostByte},
		{"a[b", errHostByte},
		{"a..b", errHostLabel},
		{".example.com", errHostLabel},
		{"example.com..", errHostLabel},
		{".", errHostLabel},
		{"1.2.3", errHostNumber},
		{"1.2.3.4.5", errHostNumber},
		{"256.1.1.1", errHostNumber},
		{"01.2.3.4", errHostNumber},
		{"0177.0.0.1", errHostNumber},
		{"1.2.3.04", errHostNumber},
		{"1.2.3.1000", errHostNumber},
		{"1.2.3.", errHostNumber},
		{"1..2.3", errHostLabel},
		{"2130706433", errHostNumber},
		{"0x7f.1", errHostNumber},
		{"0x7f000001", errHostNumber},
		{"0x", errHostNumber},
		{"example.123", errHostNumber},
		{"[::1", errHostBracket},
		{"[", errHostBracket},
		{"[]", errHostIPv6},
		{"[::g]", errHostIPv6},
		{"[127.0.0.1]", errHostIPv6},
		{"[v1.fe]", errHostIPv6},
		{"[example.com]", errHostIPv6},
		{"[fe80::1%eth0]", errHostZone},
		{"[fe80::1%25eth0]", errHostZone},
		{"[::1]x", errHostAfterIPv6},
		{"[::1]]", errHostAfterIPv6},
		{"[::1]:80:80", errHostPort},
		{"::1", errHostBareIPv6},
		{"2001:db8::1", errHostBareIPv6},
		{"a:1:2", errHostBareIPv6},
		{"example.com:65536", errHostPort},
		{"example.com:99999", errHostPort},
		{"example.com:000080", errHostPort},
		{"example.com:-1", errHostPort},
		{"example.com:8o", errHostPort},
		{"example.com: 80", errHostPort},
		{"[::1]:http", errHostPort},
		{"a b:99999", errHostByte}, // the host's fault is named first
	} {
		if got := CheckHost(tc.host); got != tc.want {
			t.Errorf("CheckHost(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

// TestCheckHostCarried: every Host CheckHost accepts is one a URL carries
// unchanged and net/http's client sends, so that forwarding it upstream
// cannot fail on it; checked on random strings over an alphabet of the
// characters that make hosts, ports and the mistakes around them.
func TestCheckHostCarried(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 19))
	const alphabet = "ab0123456789.:[]-_~xX%@/ f"
	accepted := 0
	for range 200000 {
		b := make([]byte, 1+r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		h := string(b)
		if CheckHost(h) != nil {
			continue
		}
		accepted++
		u, err := url.Parse("http://" + h + "/")
		if err != nil || u.Host != h {
			t.Fatalf("CheckHost accepts %q, but url.Parse gives host %q, %v", h, u.Host, err)
		}
		req, err := http.NewRequest("GET", "http://upstream/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = h
		if err := req.Write(new(bytes.Buffer)); err != nil {
			t.Fatalf("CheckHost accepts %q, but net/http does not send it: %v", h, err)
		}
	}
	if accepted < 1000 {
		t.Fatalf("only %d random hosts accepted: the alphabet no longer makes valid ones", accepted)
	}
}

// TestCheckHostAllocs: the check runs on every request and allocates
// nothing for a valid host, of any form (nor for most invalid ones; an
// invalid IPv6 address costs netip's error).
func TestCheckHostAllocs(t *testing.T) {
	for _, h := range []string{"example.com:8080", "127.0.0.1", "[2001:db8::1]:443", "a..b", "[::1", "0177.0.0.1", "1.2.3.4.5"} {
		if n := testing.AllocsPerRun(100, func() { _ = CheckHost(h) }); n != 0 {
			t.Errorf("CheckHost(%q) allocates %v times", h, n)
		}
	}
}

// TestIsIPv4: the hand-written check agrees with netip.ParseAddr on random
// strings of digits and dots, and on addresses made of random numbers
// around 255 with and without leading zeros.
func TestIsIPv4(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 29))
	const alphabet = "0123456789...."
	valid := 0
	for range 200000 {
		var s string
		if r.IntN(2) == 0 {
			b := make([]byte, r.IntN(18))
			for i := range b {
				b[i] = alphabet[r.IntN(len(alphabet))]
			}
			s = string(b)
		} else {
			for i := range 3 + r.IntN(3) {
				if i > 0 {
					s += "."
				}
				if r.IntN(20) == 0 {
					s += "0"
				}
				s += strconv.Itoa(r.IntN(300))
			}
		}
		if isIPv4(s) {
			valid++
		}
		ip, err := netip.ParseAddr(s)
		if want := err == nil && ip.Is4(); isIPv4(s) != want {
			t.Fatalf("isIPv4(%q) = %v, netip says %v", s, !want, want)
		}
	}
	if valid < 10000 {
		t.Fatalf("only %d addresses valid: the generator no longer makes them", valid)
	}
}

// BenchmarkCheckHost is the check's cost on every request, for the forms
// of Host a proxy mostly sees.
func BenchmarkCheckHost(b *testing.B) {
	for _, h := range []string{"api.example.com", "t1234.tenants.example.com:8443", "10.1.2.3:8080", "[2001:db8::1]:443"} {
		b.Run(h, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if CheckHost(h) != nil {
					b.Fatal(h)
				}
			}
		})
	}
}
