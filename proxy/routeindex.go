package proxy

import (
	"math"
	"strings"
)

// routeIndex finds the first route, in config order, that matches a request
// without trying every route. Routes are filed by their host condition: an
// exact host in a map, a wildcard under its suffix (".example.com") in
// another, host-less routes on their own. Within each of those buckets a
// pathIndex files them again by path condition: none, or exact path or
// prefix, both in one trie of path segments. A request visits only the buckets its
// host can be in and the trie nodes on its own path, and every route it
// meets there matches its host and path by construction; only the methods
// are left to check.
//
// First match is kept by comparing positions, not by visiting in order:
// every candidate list is sorted by route position, each bucket answers the
// lowest position that matches, and the lowest of those wins — the route a
// linear scan would have stopped at. A bucket or subtree whose lowest route
// comes after the best found so far is skipped. The cost so depends on the
// shape of the request (its host's dots, its path's segments), not on how
// many routes there are: see BenchmarkRouting.
type routeIndex struct {
	routes []*Route
	// Buckets are held by value: one pointer fewer to chase, and so one
	// cache miss fewer per request in a table too big for the cache.
	exact map[string]pathIndex // by lower-case host
	wild  map[string]pathIndex // by wildcard suffix, ".example.com" for *.example.com
	// wildLen[n] says some wildcard suffix is n bytes long, so that a host
	// with many dots is looked up only at the suffixes that can exist.
	wildLen []bool
	any     *pathIndex // routes without a host condition; nil if none
	// other holds the positions of routes the buckets cannot represent
	// (possible only in configs built in code, not validated: a wildcard
	// without its dot, a path or prefix that does not start with "/", both
	// path and path_prefix set). They are tried with the full matcher.
	other []int32
}

// none is the "no match yet" position: after every route.
const none = math.MaxInt32

// candidate is one route in a candidate list: its position and methods.
type candidate struct {
	pos     int32
	methods []string // empty: any method
}

// pathIndex files the routes of one host bucket by their path condition.
type pathIndex struct {
	min   int32       // lowest position in the bucket
	all   []candidate // routes without a path condition
	paths *pathNode   // path and path_prefix routes; nil if none
}

// pathNode is the trie node of the path s made of the segments from the root
// to it ("" at the root, "/api/v1" two levels down). An exact path s sits in
// exact. A prefix without a trailing slash ("/api") sits in boundary: it
// matches s itself and anything below s/ (SPEC: segment boundary). One with
// a trailing slash ("/api/", or "/" at the root) sits in below: it matches
// only below s/.
type pathNode struct {
	min int32 // lowest position in this subtree
	// tail is the rest of the node's path after the segment its parent
	// files it under ("/v1/items" for the node "/api/v1/items" filed under
	// "api"), when the nodes in between held no route and were merged away:
	// a tenant's "/api/v1/items" costs one step, not three.
	tail     string
	exact    []candidate
	boundary []candidate
	below    []candidate
	kids     []pathChild          // few children: a linear scan beats hashing
	kidMap   map[string]*pathNode // many children (then kids is nil)
}

type pathChild struct {
	seg  string
	node *pathNode
}

// mapKidsAt is the child count from which a node looks children up in a
// map rather than comparing each segment.
const mapKidsAt = 8

func newRouteIndex(routes []*Route) *routeIndex {
	ix := &routeIndex{routes: routes}
	exact, wild := map[string]*pathIndex{}, map[string]*pathIndex{}
	for i, rt := range routes {
		pos := int32(i)
		m := &rt.m
		if !indexable(m) {
			ix.other = append(ix.other, pos)
			continue
		}
		var pi *pathIndex
		switch {
		case m.host != "":
			pi = bucket(exact, m.host)
		case m.suffix != "":
			pi = bucket(wild, m.suffix)
			for len(ix.wildLen) <= len(m.suffix) {
				ix.wildLen = append(ix.wildLen, false)
			}
			ix.wildLen[len(m.suffix)] = true
		default:
			if ix.any == nil {
				ix.any = &pathIndex{min: none}
			}
			pi = ix.any
		}
		pi.add(pos, m)
	}
	ix.exact, ix.wild = sealBuckets(exact), sealBuckets(wild)
	ix.any.compact()
	return ix
}

// sealBuckets compacts the buckets and copies them into a map by value;
// nil when there are none, so that lookup skips the map altogether.
func sealBuckets(m map[string]*pathIndex) map[string]pathIndex {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]pathIndex, len(m))
	for k, pi := range m {
		pi.compact()
		out[k] = *pi
	}
	return out
}

// indexable reports whether the buckets represent m exactly. A validated
// config always is; see routeIndex.other.
func indexable(m *matcher) bool {
	if m.suffix != "" && m.suffix[0] != '.' {
		return false
	}
	if m.path != "" && m.prefix != "" {
		return false
	}
	return (m.prefix == "" || m.prefix[0] == '/') && (m.path == "" || m.path[0] == '/')
}

func bucket(m map[string]*pathIndex, key string) *pathIndex {
	pi := m[key]
	if pi == nil {
		pi = &pathIndex{min: none}
		m[key] = pi
	}
	return pi
}

// add files route pos; positions arrive in increasing order, so every list
// stays sorted by appending.
func (pi *pathIndex) add(pos int32, m *matcher) {
	pi.min = min(pi.min, pos)
	c := candidate{pos: pos, methods: m.methods}
	if m.path == "" && m.prefix == "" {
		pi.all = append(pi.all, c)
		return
	}
	if pi.paths == nil {
		pi.paths = &pathNode{min: none}
	}
	n := pi.paths
	n.min = min(n.min, pos)
	// The exact path "/api/" is the node "/api/" (segments "api" and ""),
	// the prefix "/api/" the node "/api" with a below route, the prefix "/"
	// the root.
	s := m.path
	if m.prefix != "" {
		s = strings.TrimSuffix(m.prefix, "/")
	}
	for s != "" {
		s = s[1:] // drop the "/" before the next segment
		seg := s
		if i := strings.IndexByte(s, '/'); i >= 0 {
			seg, s = s[:i], s[i:]
		} else {
			s = ""
		}
		n = n.child(seg, true)
		n.min = min(n.min, pos)
	}
	switch {
	case m.path != "":
		n.exact = append(n.exact, c)
	case m.anyBelow:
		n.below = append(n.below, c)
	default:
		n.boundary = append(n.boundary, c)
	}
}

// compact merges each chain of trie nodes that hold no route and have one
// child into the node at its end (see pathNode.tail).
func (pi *pathIndex) compact() {
	if pi != nil && pi.paths != nil {
		pi.paths.compact()
	}
}

func (n *pathNode) compact() {
	merge := func(c *pathNode) *pathNode {
		for len(c.exact)+len(c.boundary)+len(c.below) == 0 && len(c.kids) == 1 {
			k := c.kids[0]
			k.node.tail = c.tail + "/" + k.seg + k.node.tail
			c = k.node
		}
		c.compact()
		return c
	}
	for i := range n.kids {
		n.kids[i].node = merge(n.kids[i].node)
	}
	for seg, c := range n.kidMap {
		n.kidMap[seg] = merge(c)
	}
}

// child returns the child of n for seg, creating it if create is set.
func (n *pathNode) child(seg string, create bool) *pathNode {
	if n.kidMap != nil {
		c := n.kidMap[seg]
		if c == nil && create {
			c = &pathNode{min: none}
			n.kidMap[seg] = c
		}
		return c
	}
	for i := range n.kids {
		if n.kids[i].seg == seg {
			return n.kids[i].node
		}
	}
	if !create {
		return nil
	}
	c := &pathNode{min: none}
	n.kids = append(n.kids, pathChild{seg, c})
	if len(n.kids) >= mapKidsAt {
		n.kidMap = make(map[string]*pathNode, len(n.kids))
		for _, k := range n.kids {
			n.kidMap[k.seg] = k.node
		}
		n.kids = nil
	}
	return c
}

// lookup returns the first route that matches host (lower-case, no port),
// the path p and method, or nil.
func (ix *routeIndex) lookup(host, p, method string) *Route {
	best := int32(none)
	if ix.exact != nil {
		if pi, ok := ix.exact[host]; ok {
			best = pi.first(p, method, best)
		}
	}
	if ix.wild != nil {
		// A wildcard matches a host that ends in its suffix and is longer
		// than it: every dot after the host's first byte starts a suffix
		// that may be filed.
		for i := len(host) - 1; i > 0; i-- {
			if host[i] != '.' {
				continue
			}
			if n := len(host) - i; n < len(ix.wildLen) && ix.wildLen[n] {
				if pi, ok := ix.wild[host[i:]]; ok {
					best = pi.first(p, method, best)
				}
			}
		}
	}
	if ix.any != nil {
		best = ix.any.first(p, method, best)
	}
	for _, pos := range ix.other {
		if pos >= best {
			break
		}
		if ix.routes[pos].m.match(host, p, method) {
			best = pos
			break
		}
	}
	if best == none {
		return nil
	}
	return ix.routes[best]
}

// first returns the lowest position in pi that matches p and method, if
// lower than best; else best.
func (pi *pathIndex) first(p, method string, best int32) int32 {
	if pi.min >= best {
		return best
	}
	best = firstOf(pi.all, method, best)
	if pi.paths != nil {
		best = pi.paths.walk(p, method, best)
	}
	return best
}

// walk follows p down the trie. At the node for s, where p starts with s:
// if p is s, the exact and boundary routes match; if p goes on with "/", the boundary
// and below routes match and the walk goes on to the next segment; if p
// goes on with another byte, s is no segment prefix of p and nothing at or
// under the node matches.
func (n *pathNode) walk(p, method string, best int32) int32 {
	pos := 0
	for n.min < best {
		if pos == len(p) {
			best = firstOf(n.exact, method, best)
			return firstOf(n.boundary, method, best)
		}
		if p[pos] != '/' {
			return best
		}
		best = firstOf(n.boundary, method, best)
		best = firstOf(n.below, method, best)
		end := strings.IndexByte(p[pos+1:], '/')
		if end < 0 {
			end = len(p)
		} else {
			end += pos + 1
		}
		if n = n.child(p[pos+1:end], false); n == nil {
			return best
		}
		if n.tail != "" {
			// The merged nodes held no route: p must only go through them.
			if !strings.HasPrefix(p[end:], n.tail) {
				return best
			}
			end += len(n.tail)
		}
		pos = end
	}
	return best
}

// firstOf returns the position of the first candidate in cs (sorted by
// position) that allows method, if lower than best; else best.
func firstOf(cs []candidate, method string, best int32) int32 {
	for i := range cs {
		c := &cs[i]
		if c.pos >= best {
			return best
		}
		if methodAllowed(c.methods, method) {
			return c.pos
		}
	}
	return best
}

func methodAllowed(methods []string, method string) bool {
	if len(methods) == 0 {
		return true
	}
	for _, m := range methods {
		if m == method {
			return true
		}
	}
	return false
}
