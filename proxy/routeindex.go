package proxy

import (
	"maps"
	"math"
	"slices"
	"strings"
)

// routeIndex finds the first route, in config order, that matches a request
// without trying every route. Routes are filed by their host condition: an
// exact host in a map, a wildcard under its suffix (".example.com") in
// another, host-less routes on their own. Within each of those buckets a
// pathIndex files them by path condition: a small bucket as a flat list, a
// bigger one in a trie of path segments holding exact paths and prefixes.
// A request visits only the buckets its host can be in and, in a trie, the
// nodes on its own path; every route it meets there matches its host by
// construction.
//
// First match is kept by comparing positions, not by visiting in order:
// every candidate list is sorted by route position, each bucket answers the
// lowest position that matches, and the lowest of those wins — the route a
// linear scan would have stopped at. A bucket or subtree whose lowest route
// comes after the best found so far is skipped. The work so depends on the
// shape of the request (its host's dots, its path's segments), not on how
// many routes there are; what a big table adds is cache misses, which the
// packing into slabs keeps few. See BenchmarkRouting.
type routeIndex struct {
	routes []*Route
	// Buckets are held by value: one pointer fewer to chase, and so one
	// cache miss fewer per request in a table too big for the cache.
	exact map[string]pathIndex // by lower-case host
	wild  map[string]pathIndex // by wildcard suffix, ".example.com" for *.example.com
	// wildLen[n] says some wildcard suffix is n bytes long, so that a host
	// with many dots is looked up only at the suffixes that can exist.
	wildLen  []bool
	hostless *pathIndex // routes without a host condition; nil if none
	// other holds the positions of routes the buckets cannot represent
	// (possible only in configs built in code, not validated: a wildcard
	// without its dot, a path or prefix that does not start with "/", both
	// path and path_prefix set). They are tried with the full matcher.
	other []int32
}

// none is the "no match yet" position: after every route.
const none = math.MaxInt32

// candidate is one route filed in a bucket or trie node: its position, how
// its path condition relates to the node, and its methods.
type candidate struct {
	pos     int32
	kind    uint8
	methods []string // empty: any method
}

// Kinds of candidate, as bits so that a walk asks for several at once.
const (
	kindAny      uint8 = 1 << iota // no path condition (pathNode.pathless of the root)
	kindExact                      // path: the request path is the node's
	kindBoundary                   // path_prefix "/api": the node's path itself, or below it ("/api/...")
	kindBelow                      // path_prefix "/api/": only below the node's path ("/api/...")
)

// pathIndex files the routes of one host bucket by their path condition.
// A bucket of few routes (a tenant's host, typically) is a flat list tried
// in order: at that size comparing a handful of strings costs less than
// the cache misses of walking trie nodes. A bigger bucket keeps the trie.
type pathIndex struct {
	min   int32      // lowest position in the bucket
	n     int32      // routes in the bucket
	flat  []flatCand // every route of a small bucket, by position; nil for a trie
	paths *pathNode  // the trie of a bigger bucket; nil for a flat one
}

// flatMax is the most routes a bucket holds as a flat list.
const flatMax = 8

// flatCand is a route of a flat bucket with its path condition: the exact
// path, or the prefix as configured (with its trailing slash if any).
type flatCand struct {
	candidate
	s string
}

func (fc *flatCand) matchPath(p string) bool {
	switch fc.kind {
	case kindExact:
		return p == fc.s
	case kindBoundary:
		return hasPathPrefix(p, fc.s, false)
	case kindBelow:
		return strings.HasPrefix(p, fc.s)
	}
	return true // kindAny
}

// pathNode is the trie node of the path s made of the segments from the root
// to it ("" at the root, "/api/v1" two levels down). It holds the exact
// paths s, the prefixes s without a trailing slash ("/api": they match s
// and anything below s/, SPEC's segment boundary) and the prefixes s/ ("/api/",
// or "/" at the root: only below s/), in one list sorted by position.
type pathNode struct {
	min      int32       // lowest position in this subtree
	pathless []candidate // at the root only: routes without a path condition
	// tail is the rest of the node's path after the segment its parent
	// files it under ("/v1/items" for the node "/api/v1/items" filed under
	// "api"), when the nodes in between held no route and were merged away:
	// a tenant's "/api/v1/items" costs one step, not three.
	tail   string
	cands  []candidate
	kids   []pathChild          // few children: a linear scan beats hashing
	kidMap map[string]*pathNode // many children (then kids is nil)
}

type pathChild struct {
	seg  string
	node *pathNode
}

// mapKidsAt is the child count from which a node looks children up in a
// map rather than comparing each segment.
const mapKidsAt = 8

func newRouteIndex(routes []*Route) *routeIndex { return buildRouteIndex(routes, flatMax) }

// buildRouteIndex builds the index with buckets of up to flatUpTo routes
// kept flat (tests vary it to cover both forms).
func buildRouteIndex(routes []*Route, flatUpTo int) *routeIndex {
	ix := &routeIndex{routes: routes}
	exact, wild := map[string]*pathIndex{}, map[string]*pathIndex{}
	var hostless *pathIndex
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
			if hostless == nil {
				hostless = &pathIndex{min: none}
			}
			pi = hostless
		}
		pi.add(pos, m)
	}
	// Pack the tries, bucket after bucket, into contiguous memory: a
	// request then touches a few neighbouring cache lines, not a dozen
	// scattered allocations (what keeps 10 000 routes near the cost of 10).
	var pk packer
	buckets := make([]*pathIndex, 0, len(exact)+len(wild)+1)
	for _, m := range []map[string]*pathIndex{exact, wild} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			buckets = append(buckets, m[k])
		}
	}
	if hostless != nil {
		buckets = append(buckets, hostless)
	}
	for _, pi := range buckets {
		if int(pi.n) <= flatUpTo {
			pi.paths = nil
		} else {
			pi.flat = nil
		}
		pk.countBucket(pi)
	}
	pk.alloc()
	for _, pi := range buckets {
		pk.packBucket(pi)
	}
	ix.exact, ix.wild, ix.hostless = byValue(exact), byValue(wild), hostless
	return ix
}

// byValue copies the buckets into a map by value; nil when there are none,
// so that lookup skips the map altogether.
func byValue(m map[string]*pathIndex) map[string]pathIndex {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]pathIndex, len(m))
	for k, pi := range m {
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
	pi.n++
	c := candidate{pos: pos, kind: kindAny, methods: m.methods}
	if pi.paths == nil {
		pi.paths = &pathNode{min: none}
	}
	n := pi.paths
	n.min = min(n.min, pos)
	if m.path == "" && m.prefix == "" {
		n.pathless = append(n.pathless, c)
		pi.flat = append(pi.flat, flatCand{candidate: c})
		return
	}
	// The exact path "/api/" is the node "/api/" (segments "api" and ""),
	// the prefix "/api/" the node "/api" with a below route, the prefix "/"
	// the root.
	s := m.path
	switch {
	case m.path != "":
		c.kind = kindExact
	case m.anyBelow:
		c.kind = kindBelow
		s = strings.TrimSuffix(m.prefix, "/")
	default:
		c.kind = kindBoundary
		s = m.prefix
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
	n.cands = append(n.cands, c)
	fs := m.path
	if m.prefix != "" {
		fs = m.prefix
	}
	pi.flat = append(pi.flat, flatCand{candidate: c, s: fs})
}

// compact merges each chain of trie nodes that hold no route and have one
// child into the node at its end (see pathNode.tail).
func (n *pathNode) compact() {
	merge := func(c *pathNode) *pathNode {
		for len(c.cands) == 0 && len(c.kids) == 1 {
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

// packer copies tries into slabs in depth-first order, so that a node is
// followed by its first child and the strings of a path lie side by side.
// count sizes the slabs (and writes the strings, in the order pack reads
// them back); alloc makes them; pack copies. The slabs are allocated once
// at their full size, so pointers into them stay valid.
type packer struct {
	nNodes, nKids, nCands, nFlat int
	strs                         strings.Builder
	str                          string // strs, once written
	nodes                        []pathNode
	kids                         []pathChild
	cands                        []candidate
	flat                         []flatCand
}

func (pk *packer) countBucket(pi *pathIndex) {
	if pi.flat != nil {
		pk.nFlat += len(pi.flat)
		for _, fc := range pi.flat {
			pk.strs.WriteString(fc.s)
		}
		return
	}
	if pi.paths != nil {
		pi.paths.compact()
		pk.count(pi.paths)
	}
}

func (pk *packer) packBucket(pi *pathIndex) {
	if pi.flat != nil {
		f := len(pk.flat)
		for _, fc := range pi.flat {
			fc.s = pk.take(fc.s)
			pk.flat = append(pk.flat, fc)
		}
		pi.flat = pk.flat[f:len(pk.flat):len(pk.flat)]
		return
	}
	if pi.paths != nil {
		pi.paths = pk.pack(pi.paths)
	}
}

func (pk *packer) count(n *pathNode) {
	pk.nNodes++
	pk.nCands += len(n.cands)
	pk.nKids += len(n.kids)
	pk.strs.WriteString(n.tail)
	for _, k := range n.kids {
		pk.strs.WriteString(k.seg)
	}
	for _, k := range n.kids {
		pk.count(k.node)
	}
	for _, seg := range slices.Sorted(maps.Keys(n.kidMap)) {
		pk.count(n.kidMap[seg])
	}
}

func (pk *packer) alloc() {
	pk.str = pk.strs.String()
	pk.nodes = make([]pathNode, 0, pk.nNodes)
	pk.kids = make([]pathChild, 0, pk.nKids)
	pk.cands = make([]candidate, 0, pk.nCands)
	pk.flat = make([]flatCand, 0, pk.nFlat)
}

// take returns the next len(s) bytes of the string slab, which hold s.
func (pk *packer) take(s string) string {
	t := pk.str[:len(s)]
	pk.str = pk.str[len(s):]
	return t
}

func (pk *packer) pack(n *pathNode) *pathNode {
	pk.nodes = append(pk.nodes, pathNode{min: n.min, pathless: n.pathless})
	dst := &pk.nodes[len(pk.nodes)-1]
	dst.tail = pk.take(n.tail)
	c := len(pk.cands)
	pk.cands = append(pk.cands, n.cands...)
	dst.cands = pk.cands[c:len(pk.cands):len(pk.cands)]
	k := len(pk.kids)
	for _, kid := range n.kids {
		pk.kids = append(pk.kids, pathChild{seg: pk.take(kid.seg), node: kid.node})
	}
	dst.kids = pk.kids[k:len(pk.kids):len(pk.kids)]
	for i := range dst.kids {
		dst.kids[i].node = pk.pack(dst.kids[i].node)
	}
	if n.kidMap != nil {
		dst.kidMap = make(map[string]*pathNode, len(n.kidMap))
		for _, seg := range slices.Sorted(maps.Keys(n.kidMap)) {
			dst.kidMap[seg] = pk.pack(n.kidMap[seg])
		}
	}
	return dst
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
	if ix.hostless != nil {
		best = ix.hostless.first(p, method, best)
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
	if pi.flat != nil {
		for i := range pi.flat {
			fc := &pi.flat[i]
			if fc.pos >= best {
				return best
			}
			if fc.matchPath(p) && methodAllowed(fc.methods, method) {
				return fc.pos
			}
		}
		return best
	}
	best = firstOf(pi.paths.pathless, kindAny, method, best)
	best = pi.paths.walk(p, method, best)
	return best
}

// walk follows p down the trie. At the node for s, where p starts with s:
// if p is s, the exact and boundary routes match; if p goes on with "/",
// the boundary and below routes match and the walk goes on to the next
// segment; if p goes on with another byte, s is no segment prefix of p and
// nothing at or under the node matches.
func (n *pathNode) walk(p, method string, best int32) int32 {
	pos := 0
	for n.min < best {
		if pos == len(p) {
			return firstOf(n.cands, kindExact|kindBoundary, method, best)
		}
		if p[pos] != '/' {
			return best
		}
		best = firstOf(n.cands, kindBoundary|kindBelow, method, best)
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
// position) of one of kinds that allows method, if lower than best; else
// best.
func firstOf(cs []candidate, kinds uint8, method string, best int32) int32 {
	for i := range cs {
		c := &cs[i]
		if c.pos >= best {
			return best
		}
		if c.kind&kinds != 0 && methodAllowed(c.methods, method) {
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
