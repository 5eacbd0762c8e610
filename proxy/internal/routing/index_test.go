package routing

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// scanLookup is the first-match rule as a plain scan: the routing table's
// definition, against which the index is checked.
func scanLookup(ms []matcher, host, p, method string) int {
	for i := range ms {
		if ms[i].match(host, p, method) {
			return i
		}
	}
	return -1
}

// Pools from which random tables and requests are drawn. They overlap on
// purpose: hosts under several wildcards, prefixes that are prefixes of each
// other at and off segment boundaries, with and without trailing slashes,
// exact paths equal to prefixes, empty segments.
var (
	propHosts = []string{"", "example.com", "a.example.com", "b.a.example.com", "x.y.example.com",
		"api.test", "example.org", "a.b", "b"}
	propWild = []string{"*.example.com", "*.a.example.com", "*.y.example.com", "*.test", "*.b", "*.com"}
	propSegs = []string{"", "a", "b", "ab", "users", "users7", "v1"}
	methods  = []string{"GET", "POST", "PUT", "DELETE", "HEAD"}
)

func randPath(r *rand.Rand) string {
	var b strings.Builder
	for n := r.IntN(4); n >= 0; n-- {
		b.WriteByte('/')
		if n > 0 || r.IntN(3) > 0 {
			b.WriteString(propSegs[r.IntN(len(propSegs))])
		}
	}
	return b.String()
}

func randRule(r *rand.Rand) Rule {
	var m Rule
	switch r.IntN(4) {
	case 0:
		m.Host = propHosts[1+r.IntN(len(propHosts)-1)]
	case 1:
		m.Host = propWild[r.IntN(len(propWild))]
	}
	switch r.IntN(4) {
	case 0:
		m.Path = randPath(r)
	case 1, 2:
		m.PathPrefix = randPath(r)
	}
	if m.Host == "" && m.Path == "" && m.PathPrefix == "" {
		m.PathPrefix = "/"
	}
	if r.IntN(3) == 0 {
		for _, mm := range methods {
			if r.IntN(2) == 0 {
				m.Methods = append(m.Methods, mm)
			}
		}
	}
	return m
}

// TestRouteIndexMatchesScan checks the index against the scan on random
// tables and requests: same route (by position) or both none.
func TestRouteIndexMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for table := 0; table < 400; table++ {
		n := 1 + r.IntN(40)
		rules := make([]Rule, n)
		for i := range rules {
			rules[i] = randRule(r)
			// A few rules a validated config cannot hold, built in code:
			// they must still route exactly (the index's fallback).
			switch r.IntN(40) {
			case 0:
				rules[i].Host = "*example.com" // wildcard without its dot
			case 1:
				rules[i].Path, rules[i].PathPrefix = "/a", "/a" // both conditions
			case 2:
				rules[i].Path, rules[i].PathPrefix = "", "users" // prefix without its leading slash
			}
		}
		// Buckets as the proxy builds them, all as tries, all flat.
		ixs := []*Index{NewIndex(rules), build(rules, 0), build(rules, len(rules))}
		for q := 0; q < 300; q++ {
			host := propHosts[r.IntN(len(propHosts))]
			if r.IntN(5) == 0 {
				host = propSegs[r.IntN(len(propSegs))] + "." + host
			}
			p := randPath(r)
			if r.IntN(10) == 0 {
				p = strings.TrimPrefix(p, "/") // not a path a server hands over, but exact all the same
			}
			method := methods[r.IntN(len(methods))]
			checkAgainstScan(t, table, ixs, host, p, method)
		}
	}
}

// checkAgainstScan fails t unless every form of the index finds what a
// first-match scan of its rules finds.
func checkAgainstScan(t *testing.T, table int, ixs []*Index, host, p, method string) {
	t.Helper()
	want := scanLookup(ixs[0].rules, host, p, method)
	for form, ix := range ixs {
		if got := ix.Lookup(host, p, method); got != want {
			t.Fatalf("table %d, form %d: Lookup(%q, %q, %q) = %d, scan = %d\nrules:\n%s",
				table, form, host, p, method, got, want, dumpRules(ix.rules))
		}
	}
}

// TestRouteIndexManyChildren covers trie nodes that switch to a map.
func TestRouteIndexManyChildren(t *testing.T) {
	var rules []Rule
	for i := range 3 * mapKidsAt {
		rules = append(rules, Rule{PathPrefix: fmt.Sprintf("/s%d/x", i)})
	}
	root := len(rules)
	rules = append(rules, Rule{PathPrefix: "/"})
	ix := NewIndex(rules)
	for i := range 3 * mapKidsAt {
		p := fmt.Sprintf("/s%d/x/y", i)
		if got := ix.Lookup("h", p, "GET"); got != i {
			t.Errorf("Lookup %s = %d, want %d", p, got, i)
		}
	}
	if got := ix.Lookup("h", "/s1/y", "GET"); got != root {
		t.Errorf("Lookup /s1/y = %d, want %d (the root prefix)", got, root)
	}
}

// TestRouteIndexManyChildrenScan checks the index against the scan on
// random tables whose paths are drawn from more segments than a node lists
// (mapKidsAt), so that roots and inner nodes file their children in the
// hash table, under hosts, wildcards and none, with tails, exact paths,
// both kinds of prefix and methods (an uncommon one among them).
func TestRouteIndexManyChildrenScan(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 13))
	segs := []string{"", "a", "b", "ab", "abcdefg", "abcdefgh", "abcdefghi", "s1", "s2", "s10",
		"users", "users7", "v1", "v2", "api", "static", "x.y", "0123456789abcdef"}
	path := func() string {
		var b strings.Builder
		for n := r.IntN(4); n >= 0; n-- {
			b.WriteByte('/')
			b.WriteString(segs[r.IntN(len(segs))])
		}
		return b.String()
	}
	ms := []string{"GET", "POST", "HEAD", "PURGE"}
	for table := 0; table < 200; table++ {
		n := 1 + r.IntN(120)
		rules := make([]Rule, n)
		for i := range rules {
			var m Rule
			switch r.IntN(3) {
			case 0:
				m.Host = propHosts[1+r.IntN(len(propHosts)-1)]
			case 1:
				m.Host = propWild[r.IntN(len(propWild))]
			}
			switch r.IntN(3) {
			case 0:
				m.Path = path()
			case 1:
				m.PathPrefix = path()
			}
			if m.Host == "" && m.Path == "" && m.PathPrefix == "" {
				m.PathPrefix = path()
			}
			if r.IntN(4) == 0 {
				m.Methods = []string{ms[r.IntN(len(ms))], ms[r.IntN(len(ms))]}
			}
			rules[i] = m
		}
		ixs := []*Index{NewIndex(rules), build(rules, 0)}
		for q := 0; q < 300; q++ {
			host := propHosts[r.IntN(len(propHosts))]
			if r.IntN(3) == 0 {
				host = segs[1+r.IntN(len(segs)-1)] + "." + host
			}
			p := path() + path()[:r.IntN(2)]
			method := ms[r.IntN(len(ms))]
			checkAgainstScan(t, table, ixs, host, p, method)
		}
	}
}

// TestRouteIndexEmpty: a table without routes matches nothing.
func TestRouteIndexEmpty(t *testing.T) {
	if got := NewIndex(nil).Lookup("h", "/", "GET"); got != -1 {
		t.Errorf("empty index matched %d", got)
	}
}

func dumpRules(ms []matcher) string {
	var b strings.Builder
	for i, m := range ms {
		fmt.Fprintf(&b, "  %d: %+v\n", i, m)
	}
	return b.String()
}

// TestRouteIndexSegmentHash: the walk's one-pass segment scan finds the
// segment's end as IndexByte does and hashes it as the build did, for
// segments of every length around the 8-byte words it reads, at the end
// of the path and not, empty ones included.
func TestRouteIndexSegmentHash(t *testing.T) {
	ix := NewIndex(nil)
	r := rand.New(rand.NewPCG(3, 5))
	const alphabet = "ab/\x00\xff/"
	for range 20000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		p := string(b)
		for i := 0; i <= len(p); i++ {
			want := strings.IndexByte(p[i:], '/')
			if want < 0 {
				want = len(p)
			} else {
				want += i
			}
			end, h := ix.segment(9, p, i)
			if end != want || h != ix.hash(9, p[i:end]) {
				t.Fatalf("segment(%q, %d) = %d, %#x; want %d, %#x", p, i, end, h, want, ix.hash(9, p[i:want]))
			}
		}
	}
}
