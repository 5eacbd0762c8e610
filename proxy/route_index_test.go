package proxy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"sluice/config"
)

// scanLookup is the first-match rule as a plain scan: the routing table's
// definition, against which the index is checked.
func scanLookup(routes []*Route, host, p, method string) *Route {
	for _, rt := range routes {
		if rt.m.match(host, p, method) {
			return rt
		}
	}
	return nil
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

func randMatch(r *rand.Rand) config.Match {
	var m config.Match
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
		routes := make([]*Route, n)
		for i := range routes {
			m := randMatch(r)
			// A few matchers a validated config cannot produce, built in
			// code: they must still route exactly (the index's fallback).
			mt := newMatcher(m)
			switch r.IntN(40) {
			case 0:
				mt.suffix = "example.com" // wildcard without its dot
			case 1:
				mt.path, mt.prefix, mt.anyBelow = "/a", "/a", false // both conditions
			case 2:
				mt.prefix = "users" // prefix without its leading slash
			}
			routes[i] = &Route{name: fmt.Sprintf("r%d", i), m: mt}
		}
		// Buckets as the proxy builds them, all as tries, all flat.
		ixs := []*routeIndex{newRouteIndex(routes), buildRouteIndex(routes, 0), buildRouteIndex(routes, len(routes))}
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
			checkAgainstScan(t, table, ixs, routes, host, p, method)
		}
	}
}

// checkAgainstScan fails t unless every form of the index finds what a
// first-match scan of routes finds.
func checkAgainstScan(t *testing.T, table int, ixs []*routeIndex, routes []*Route, host, p, method string) {
	t.Helper()
	want := scanLookup(routes, host, p, method)
	for form, ix := range ixs {
		if got := ix.lookup(host, p, method); got != want {
			t.Fatalf("table %d, form %d: lookup(%q, %q, %q) = %s, scan = %s\nroutes:\n%s",
				table, form, host, p, method, routeName(got), routeName(want), dumpRoutes(routes))
		}
	}
}

// TestRouteIndexManyChildren covers trie nodes that switch to a map.
func TestRouteIndexManyChildren(t *testing.T) {
	var routes []*Route
	for i := range 3 * mapKidsAt {
		routes = append(routes, &Route{name: fmt.Sprint(i), m: newMatcher(config.Match{PathPrefix: fmt.Sprintf("/s%d/x", i)})})
	}
	routes = append(routes, &Route{name: "root", m: newMatcher(config.Match{PathPrefix: "/"})})
	ix := newRouteIndex(routes)
	for i := range 3 * mapKidsAt {
		p := fmt.Sprintf("/s%d/x/y", i)
		if got := ix.lookup("h", p, "GET"); got != routes[i] {
			t.Errorf("lookup %s = %s, want %d", p, routeName(got), i)
		}
	}
	if got := ix.lookup("h", "/s1/y", "GET"); got.name != "root" {
		t.Errorf("lookup /s1/y = %s, want root", routeName(got))
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
		routes := make([]*Route, n)
		for i := range routes {
			var m config.Match
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
			routes[i] = &Route{name: fmt.Sprintf("r%d", i), m: newMatcher(m)}
		}
		ixs := []*routeIndex{newRouteIndex(routes), buildRouteIndex(routes, 0)}
		for q := 0; q < 300; q++ {
			host := propHosts[r.IntN(len(propHosts))]
			if r.IntN(3) == 0 {
				host = segs[1+r.IntN(len(segs)-1)] + "." + host
			}
			p := path() + path()[:r.IntN(2)]
			method := ms[r.IntN(len(ms))]
			checkAgainstScan(t, table, ixs, routes, host, p, method)
		}
	}
}

// TestRouteIndexEmpty: a table without routes matches nothing.
func TestRouteIndexEmpty(t *testing.T) {
	if got := newRouteIndex(nil).lookup("h", "/", "GET"); got != nil {
		t.Errorf("empty index matched %s", got.name)
	}
}

func routeName(rt *Route) string {
	if rt == nil {
		return "none"
	}
	return rt.name
}

func dumpRoutes(routes []*Route) string {
	var b strings.Builder
	for _, rt := range routes {
		fmt.Fprintf(&b, "  %s: %+v\n", rt.name, rt.m)
	}
	return b.String()
}

// TestRouteIndexSegmentHash: the walk's one-pass segment scan finds the
// segment's end as IndexByte does and hashes it as the build did, for
// segments of every length around the 8-byte words it reads, at the end
// of the path and not, empty ones included.
func TestRouteIndexSegmentHash(t *testing.T) {
	ix := newRouteIndex(nil)
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
