package routing

import (
	"net/netip"
	"strings"
)

// CheckHost returns nil if hostport, a request's Host (the :authority in
// HTTP/2), names a host a route can be meant for, or an error saying why
// not, whose message is written for the client. The grammar is uri-host
// [ ":" port ] (RFC 9110 §7.2), with RFC 3986 §3.2.2's uri-host narrowed
// to what names a server:
//
//   - A name is labels of unreserved characters (letters, digits and
//     "-" "." "_" "~", RFC 3986 §2.3) separated by single dots, with at
//     most one trailing dot (a fully qualified name). Percent-encoding and
//     sub-delims are refused although RFC 3986 allows them in a reg-name:
//     no DNS name has them (an internationalised one travels as its
//     A-label, "xn--..."), and both would let two spellings of one name
//     route differently, or an upstream decode a name to one sluice did
//     not route by. Spaces, "/", "\", "@", control and non-ASCII bytes are
//     refused, as nginx and Envoy refuse them.
//   - A name whose last label is a number ("1.2.3", "0x7f", "2130706433")
//     must be a dotted-decimal IPv4 address without leading zeros: the
//     WHATWG URL standard reads such a name as an IPv4 address, and
//     inet_aton reads "0177.0.0.1" as 127.0.0.1, so an upstream could take
//     it for an address sluice did not route by. No top-level domain is
//     all digits (RFC 3696 §2), so no real name is refused.
//   - An IPv6 address is in brackets ("[::1]") and has no zone: a zone
//     (RFC 6874) names an interface of the client's own machine and means
//     nothing to a server. IPvFuture ("[v1.x]") is refused; nothing sends
//     it.
//   - A port is at most 5 digits and at most 65535. An empty one
//     ("example.com:") is allowed: RFC 3986 §3.2.3 allows it and §6.2.3
//     makes it the same as none, and RequestHost drops it.
//
// The empty string is refused: an HTTP request names its host, except in
// HTTP/1.0, where a caller lets a missing Host pass.
func CheckHost(hostport string) error {
	if hostport == "" {
		return errHostEmpty
	}
	if hostport[0] == '[' {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return errHostBracket
		}
		a := hostport[1:end]
		if strings.IndexByte(a, '%') >= 0 {
			return errHostZone
		}
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is6() {
			return errHostIPv6
		}
		switch rest := hostport[end+1:]; {
		case rest == "":
			return nil
		case rest[0] != ':':
			return errHostAfterIPv6
		default:
			return checkPort(rest[1:])
		}
	}
	host, port, hasPort := strings.Cut(hostport, ":")
	if hasPort && strings.IndexByte(port, ':') >= 0 {
		return errHostBareIPv6
	}
	if host == "" {
		return errHostNoName
	}
	if err := checkName(host); err != nil {
		return err
	}
	if hasPort {
		return checkPort(port)
	}
	return nil
}

// hostError is why CheckHost refuses a Host: a constant sentence for the
// detail of a 400, with nothing in it that JSON would escape.
type hostError string

func (e hostError) Error() string { return string(e) }

const (
	errHostEmpty     hostError = "the request names no host: its Host header is missing or empty"
	errHostNoName    hostError = "the Host header has a port but no host"
	errHostByte      hostError = "the Host header has a character no host name has: only letters, digits and - . _ ~ are allowed"
	errHostLabel     hostError = "the Host header has an empty label: a leading dot or two dots in a row"
	errHostNumber    hostError = "the Host header ends in a number but is not a dotted-decimal IPv4 address"
	errHostBracket   hostError = "the Host header opens an IPv6 address with [ but does not close it"
	errHostIPv6      hostError = "the Host header has something other than an IPv6 address in brackets"
	errHostZone      hostError = "the Host header has an IPv6 zone, which names an interface of the client and nothing on the server"
	errHostAfterIPv6 hostError = "the Host header has something other than a port after its IPv6 address"
	errHostBareIPv6  hostError = "the Host header has an IPv6 address that is not in brackets"
	errHostPort      hostError = "the Host header's port is not a number from 0 to 65535"
)

// nameByte says which bytes a label of a host name may have: RFC 3986's
// unreserved characters other than the dot that separates labels.
var nameByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '~'
	}
	return t
}()

// checkName checks a host name or IPv4 address (see CheckHost).
func checkName(h string) error {
	name := strings.TrimSuffix(h, ".")
	last := 0 // where the last label starts
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' {
			if i == last {
				return errHostLabel
			}
			last = i + 1
		} else if !nameByte[c] {
			return errHostByte
		}
	}
	if last == len(name) {
		return errHostLabel
	}
	if endsInNumber(name[last:]) && !isIPv4(name) {
		return errHostNumber
	}
	return nil
}

// isIPv4 reports whether s is a dotted-decimal IPv4 address without
// leading zeros, as netip.ParseAddr reads one, without the allocation of
// its error.
func isIPv4(s string) bool {
	for part := 0; part < 4; part++ {
		if part > 0 {
			if s == "" || s[0] != '.' {
				return false
			}
			s = s[1:]
		}
		n, i := 0, 0
		for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
			if i == 1 && s[0] == '0' || i == 3 {
				return false // a leading zero, or a fourth digit
			}
			n = n*10 + int(s[i]-'0')
		}
		if i == 0 || n > 255 {
			return false
		}
		s = s[i:]
	}
	return s == ""
}

// endsInNumber reports whether label, a host's last, is one the WHATWG URL
// standard's IPv4 parser reads as a number: decimal digits, or "0x" and
// hexadecimal digits.
func endsInNumber(label string) bool {
	digits := "0123456789"
	if len(label) >= 2 && label[0] == '0' && label[1]|0x20 == 'x' {
		label, digits = label[2:], "0123456789abcdefABCDEF"
		if label == "" {
			return true
		}
	}
	for i := 0; i < len(label); i++ {
		if strings.IndexByte(digits, label[i]) < 0 {
			return false
		}
	}
	return true
}

// checkPort checks the digits after a host's ":".
func checkPort(p string) error {
	if len(p) > 5 {
		return errHostPort
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return errHostPort
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return errHostPort
	}
	return nil
}
