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
// detail of a 400, with nothing in it that JSON would escape. It says "the
// request's host", not "the Host header": an absolute-form target's
// authority or HTTP/2's :authority stands in for the header.
type hostError string

func (e hostError) Error() string { return string(e) }

const (
	errHostEmpty     hostError = "the request names no host: its Host is empty, which only HTTP/1.0 allows"
	errHostNoName    hostError = "the request's host has a port but no name"
	errHostByte      hostError = "the request's host has a character no host name has: only letters, digits and - . _ ~ are allowed"
	errHostLabel     hostError = "the request's host has an empty label: a leading dot or two dots in a row"
	errHostNumber    hostError = "the request's host ends in a number but is not a dotted-decimal IPv4 address"
	errHostBracket   hostError = "the request's host opens an IPv6 address with [ but does not close it"
	errHostIPv6      hostError = "the request's host has something other than an IPv6 address in brackets"
	errHostZone      hostError = "the request's host has an IPv6 zone, which names an interface of the client and nothing on the server"
	errHostAfterIPv6 hostError = "the request's host has something other than a port after its IPv6 address"
	errHostBareIPv6  hostError = "the request's host is an IPv6 address not in brackets"
	errHostPort      hostError = "the request's port is not a number from 0 to 65535"
)

// hostByte classes the bytes of a host name: notName for those a name may
// not have (it may have RFC 3986's unreserved characters), dot for ".".
var hostByte = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == '.':
			t[c] = dot
		case !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '~'):
			t[c] = notName
		}
	}
	return t
}()

const (
	dot     = 1
	notName = 2
)

// checkName checks a host name or IPv4 address (see CheckHost). It runs on
// every request: the bytes and the empty labels are checked in one pass
// without a branch on each byte, the last label after it.
func checkName(h string) error {
	name := strings.TrimSuffix(h, ".")
	var bad, empty uint8
	prev := uint8(dot) // the start of the name counts as a dot: a leading dot is an empty label
	for i := 0; i < len(name); i++ {
		c := hostByte[name[i]]
		bad |= c
		empty |= c & prev // a dot after a dot
		prev = c & dot
	}
	if bad&notName != 0 {
		return errHostByte
	}
	if empty != 0 || prev != 0 { // prev: "" or a second trailing dot
		return errHostLabel
	}
	if endsInNumber(name[strings.LastIndexByte(name, '.')+1:]) && !isIPv4(name) {
		return errHostNumber
	}
	return nil
}

// endsInNumber reports whether label, a host's last, is one the WHATWG URL
// standard's IPv4 parser reads as a number: decimal digits, or "0x" and
// hexadecimal digits.
func endsInNumber(label string) bool {
	hex := len(label) >= 2 && label[0] == '0' && label[1]|0x20 == 'x'
	if hex {
		label = label[2:]
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c-'0' > 9 && !(hex && (c|0x20)-'a' < 6) {
			return false
		}
	}
	return true
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
