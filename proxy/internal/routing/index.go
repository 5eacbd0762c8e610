package routing

import (
	"encoding/binary"
	"maps"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
)

// Index finds the first route, in config order, that matches a request,
// without trying every route: it is built from the routes' rules in that
// order, and Lookup answers a position in it. Routes are filed by their
// host condition: an exact host, a wildcard under its suffix
// (".example.com"), host-less routes on their own. Within each of those
// buckets they are filed by path condition: a small bucket as a flat
// list, a bigger one in a trie of path segments holding exact paths and
// prefixes. A request visits only the buckets its host can be in and, in
// a trie, the nodes on its own path; every route it meets there matches
// its host by construction.
//
// First match is kept by comparing positions, not by visiting in order:
// every candidate list is sorted by route position, each bucket answers the
// lowest position that matches, and the lowest of those wins — the route a
// linear scan would have stopped at. A bucket or subtree whose lowest route
// comes after the best found so far is skipped. The work so depends on the
// shape of the request (its host's dots, its path's segments), not on how
// many routes there are; what a big table adds is cache misses, and the
// layout is made to keep them few.
//
// The layout: every bucket and trie node is a record in one string, blob,
// holding all a request reads there — its key, its path strings, its
// candidates with their methods as a bit mask, its short child list — so
// that a visit reads one record, a line or two, rather than a cache line
// for each field, string and slice. Records are found by key in slots, one
// open-addressing hash table of 8-byte entries (a hash tag and a record
// offset) for the exact hosts, the wildcard suffixes and the children of
// trie nodes with many: finding a record reads a slot line, then the
// record. Built from Go maps and structs, the same lookup chased a map's
// group, its slot, the key's bytes, the bucket, its strings and each
// candidate's []string of methods.
//
// BenchmarkRouting (medians, a 2-core AMD EPYC VM with 1 MB of L2 a core):
// 31 ns at 10 routes, 38 ns at 1 000, 48 ns at 10 000 (1.45× to 1.6× over
// runs), and 34 ns at 10 000 with the traffic on 10 of them; with Go maps
// it was 45, 71, 100 and 50 ns. The records of 10 000 routes take 435 kB,
// their slots 256 kB.
// A big table costs no more work than a small one (10 routes' traffic costs
// the same in both); what the 10 000 still pay is latency: the slot, then
// the record, one after the other, and in the benchmark the request's own
// strings, which a proxy has just parsed but 10 000 distinct requests keep
// out of cache. Records aligned to cache lines (47 % more memory) did not
// measurably help.
type Index struct {
	rules []matcher // as given, by position
	blob  blob      // the records; offset 0 is no record
	slots []slot    // filed records by (parent, key); len a power of 2, at most half full
	shift uint8     // 64 - log2(len(slots)): a hash's top bits pick its first slot
	seed  uint64    // of the hash, random for each index
	// exact says some exact host is filed, so that lookup skips hashing
	// the host when none is.
	exact bool
	// wildLen[n] says some wildcard suffix is n bytes long, so that a host
	// with many dots is looked up only at the suffixes that can exist, and
	// wildMin is the shortest: lookup looks for dots only where a filed
	// suffix can start, 4 of "eu.w1234.example.net"'s 20 bytes for
	// suffixes of 15 to 18 bytes, not all of them (comparing every byte,
	// with its mispredicted branches, was a third of a lookup).
	wildLen  []bool
	wildMin  int
	hostless int // the record of the routes without a host condition; 0 if none
	// hostlessBare says the host-less bucket is a trie whose root holds no
	// route and files its children in slots, as in a big table of
	// host-less service prefixes: lookup then probes for the request's
	// first segment without walking the root.
	hostlessBare bool
	// other holds the positions of routes the records cannot represent
	// (possible only in rules built in code, not validated: a wildcard
	// without its dot, a path or prefix that does not start with "/", both
	// path and path_prefix set; or strings and lists too long for the
	// records' 16-bit lengths). They are tried with the full matcher.
	other []int32
}

// none is the "no match yet" position: after every route.
const none = math.MaxInt32

// The parents under which host buckets are filed in slots; a trie node's
// children are filed under the node's offset, never below blobStart.
const (
	exactHosts uint32 = 1 // key: the lower-case host
	wildHosts  uint32 = 2 // key: the wildcard's suffix, ".example.com" for *.example.com
	blobStart         = 8 // offset of the first record
)

// slot is an entry of the hash table: the low 32 bits of the key's hash,
// so that a probe rejects other keys without reading their records, and
// the offset of the record, which holds the key to confirm it; ref 0 is an
// empty slot. Eight to a cache line: at most half full, a lookup almost
// always finds its key or an empty slot in the line it starts in.
type slot struct {
	tag, ref uint32
}

// candidate is one route filed in a bucket or trie node: its position, how
// its path condition relates to the node, and its methods.
type candidate struct {
	pos     int32
	kind    uint8
	methods uint16 // methodBit of each method allowed; mAny for any
}

// Kinds of candidate, as bits so that a walk asks for several at once.
const (
	kindAny      uint8 = 1 << iota // no path condition (in the root only)
	kindExact                      // path: the request path is the node's
	kindBoundary                   // path_prefix "/api": the node's path itself, or below it ("/api/...")
	kindBelow                      // path_prefix "/api/": only below the node's path ("/api/...")
)

// Methods as bits: a route's list is a mask, and a request's method one
// bit, found once per request, so that trying a candidate costs an AND
// rather than comparing strings behind another pointer. Methods outside
// the common ones share mOther, on which the route's own list decides.
const (
	mOther uint16 = 1 << 15
	mAny   uint16 = 0xffff // no method condition; no list of methods gives it
)

func methodBit(m string) uint16 {
	switch m {
	case "GET":
		return 1 << 0
	case "HEAD":
		return 1 << 1
	case "POST":
		return 1 << 2
	case "PUT":
		return 1 << 3
	case "DELETE":
		return 1 << 4
	case "PATCH":
		return 1 << 5
	case "OPTIONS":
		return 1 << 6
	case "CONNECT":
		return 1 << 7
	case "TRACE":
		return 1 << 8
	}
	return mOther
}

func methodMask(methods []string) uint16 {
	if len(methods) == 0 {
		return mAny
	}
	var mask uint16
	for _, m := range methods {
		mask |= methodBit(m)
	}
	return mask
}

// pathIndex files the routes of one host bucket by their path condition
// while the index is built. A bucket of few routes (a tenant's host,
// typically) becomes a flat list tried in order: at that size comparing a
// handful of strings costs less than walking trie nodes. A bigger bucket
// keeps the trie.
type pathIndex struct {
	min   int32      // lowest position in the bucket
	n     int32      // routes in the bucket
	flat  []flatCand // every route of the bucket, by position; nil for a trie
	paths *pathNode  // the trie; nil for a flat bucket
}

// flatMax is the most routes a bucket holds as a flat list.
const flatMax = 8

// flatCand is a route of a flat bucket with its path condition: the exact
// path, or the prefix as configured (with its trailing slash if any).
type flatCand struct {
	candidate
	s string
}

func matchPath(kind uint8, s, p string) bool {
	switch kind {
	case kindExact:
		return p == s
	case kindBoundary:
		return hasPathPrefix(p, s, false)
	case kindBelow:
		return strings.HasPrefix(p, s)
	}
	return true // kindAny
}

// pathNode is the trie node of the path s made of the segments from the root
// to it ("" at the root, "/api/v1" two levels down). It holds the exact
// paths s, the prefixes s without a trailing slash ("/api": they match s
// and anything below s/, the segment boundary of docs/SPEC.md) and the
// prefixes s/ ("/api/", or "/" at the root: only below s/), in one list
// sorted by position; the root also the routes without a path condition.
type pathNode struct {
	min int32 // lowest position in this subtree
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

// mapKidsAt is the child count from which a node's children are filed in
// the hash table rather than listed in its record.
const mapKidsAt = 8

// maxLen is the longest string, and the most candidates in one record,
// the records' 16-bit lengths hold.
const maxLen = math.MaxUint16

// NewIndex compiles rules, in config order, into an index. Any rules are
// routed exactly; a validated config's all take the fast path (see
// Index.other).
func NewIndex(rules []Rule) *Index { return build(rules, flatMax) }

// build builds the index with buckets of up to flatUpTo routes kept flat
// (tests vary it to cover both forms).
func build(rules []Rule, flatUpTo int) *Index {
	ix := &Index{rules: make([]matcher, len(rules)), seed: rand.Uint64()}
	exact, wild := map[string]*pathIndex{}, map[string]*pathIndex{}
	var hostless *pathIndex
	for i, r := range rules {
		pos := int32(i)
		ix.rules[i] = newMatcher(r)
		m := &ix.rules[i]
		var pi *pathIndex
		switch {
		case !indexable(m):
		case m.host != "":
			pi = bucket(exact, m.host)
		case m.suffix != "":
			pi = bucket(wild, m.suffix)
		default:
			if hostless == nil {
				hostless = &pathIndex{min: none}
			}
			pi = hostless
		}
		if pi == nil || !pi.add(pos, m) {
			ix.other = append(ix.other, pos)
		}
	}
	ix.wildMin = math.MaxInt
	for suffix := range wild {
		for len(ix.wildLen) <= len(suffix) {
			ix.wildLen = append(ix.wildLen, false)
		}
		ix.wildLen[len(suffix)] = true
		ix.wildMin = min(ix.wildMin, len(suffix))
	}
	ix.exact = len(exact) > 0

	// Write the records, bucket after bucket (sorted, so that a build is
	// reproducible), each trie depth first: a node is followed by its
	// first child.
	e := encoder{b: make([]byte, blobStart, blobStart+64*len(rules))}
	form := func(pi *pathIndex) {
		if int(pi.n) <= min(flatUpTo, maxLen) {
			pi.paths = nil
		} else {
			pi.flat = nil
			pi.paths.compact()
		}
	}
	for _, f := range []struct {
		parent uint32
		m      map[string]*pathIndex
	}{{exactHosts, exact}, {wildHosts, wild}} {
		for _, k := range slices.Sorted(maps.Keys(f.m)) {
			pi := f.m[k]
			form(pi)
			e.bucket(f.parent, k, pi)
		}
	}
	if hostless != nil {
		form(hostless)
		ix.hostless = e.bucket(0, "", hostless)
		ix.hostlessBare = hostless.flat == nil && len(hostless.paths.cands) == 0 && hostless.paths.kidMap != nil
	}
	ix.blob = blob(e.b)

	// File the keyed records in the hash table.
	if len(e.keyed) > 0 {
		size := 8
		for size < 2*len(e.keyed) {
			size *= 2
		}
		ix.slots = make([]slot, size)
		ix.shift = uint8(64 - bits.TrailingZeros(uint(size)))
		mask := size - 1
		for _, o := range e.keyed {
			h := ix.hash(le32(string(ix.blob[o:])), ix.blob.key(o))
			i := int(h >> ix.shift)
			for ix.slots[i].ref != 0 {
				i = (i + 1) & mask
			}
			ix.slots[i] = slot{tag: uint32(h), ref: uint32(o)}
		}
	}
	return ix
}

// indexable reports whether the records represent m exactly. A validated
// config always is, unless its strings are longer than 64 kB; see
// Index.other.
func indexable(m *matcher) bool {
	if m.suffix != "" && m.suffix[0] != '.' {
		return false
	}
	if m.path != "" && m.prefix != "" {
		return false
	}
	if max(len(m.host), len(m.suffix), len(m.path), len(m.prefix)) > maxLen {
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

// add files route pos, unless the node it belongs in is full (maxLen
// routes); positions arrive in increasing order, so every list stays
// sorted by appending.
func (pi *pathIndex) add(pos int32, m *matcher) bool {
	c := candidate{pos: pos, kind: kindAny, methods: methodMask(m.methods)}
	if pi.paths == nil {
		pi.paths = &pathNode{min: none}
	}
	n := pi.paths
	// The exact path "/api/" is the node "/api/" (segments "api" and ""),
	// the prefix "/api/" the node "/api" with a below route, the prefix "/"
	// the root.
	s := m.path
	switch {
	case m.path == "" && m.prefix == "":
		s = ""
	case m.path != "":
		c.kind = kindExact
	case m.anyBelow:
		c.kind = kindBelow
		s = strings.TrimSuffix(m.prefix, "/")
	default:
		c.kind = kindBoundary
		s = m.prefix
	}
	var path []*pathNode
	for s != "" {
		s = s[1:] // drop the "/" before the next segment
		seg := s
		if i := strings.IndexByte(s, '/'); i >= 0 {
			seg, s = s[:i], s[i:]
		} else {
			s = ""
		}
		path = append(path, n)
		n = n.child(seg, true)
	}
	if len(n.cands) == maxLen {
		return false
	}
	n.cands = append(n.cands, c)
	for _, a := range path {
		a.min = min(a.min, pos)
	}
	n.min = min(n.min, pos)
	pi.min = min(pi.min, pos)
	pi.n++
	fs := m.path
	if m.prefix != "" {
		fs = m.prefix
	}
	pi.flat = append(pi.flat, flatCand{candidate: c, s: fs})
	return true
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

// blob holds the records of the index. A record, one bucket or trie node,
// is laid out as (little-endian, unaligned):
//
//	 0  parent  u32  what it is filed under in slots (exactHosts, wildHosts, a node's offset); 0 if not filed
//	 4  min     u32  lowest route position in it and below it
//	 8  keyLen  u16  the key it is filed under: host, suffix or path segment
//	10  tailLen u16  pathNode.tail
//	12  nCands  u16
//	14  kids    u16  the number of listed children, or kidsHashed, or flatList
//	16  key, tail, then the candidates, then the listed children
//
// A candidate is pos u32, kind u8, methods u16, and the length (u16) and
// bytes of its path string (a flat bucket's path or prefix; none in a trie,
// where the node is the path). A listed child is the length (u16) and bytes
// of its segment and its record's offset (u32). A bucket for a tenant's
// host with one API prefix so takes about 55 bytes, a cache line; a Go map
// slot, its key, a flatCand slab entry and its strings were four.
//
// Reading a blob is plain string indexing: the compiler merges the byte
// loads of le16 and le32 into single loads, and slicing it for a key or a
// path string makes no copy. Offsets are 32-bit: 4 GB of records is more
// than any config this is built from.
type blob string

const (
	recordHead = 16
	candHead   = 9
	kidsHashed = 0x8000 // the node's children are filed in slots under its offset
	flatList   = 0x4000 // a flat bucket: its candidates carry their path strings
)

// le16 and le32 read the little-endian integer s starts with. Slicing a
// record's head or a candidate once and reading its fields at constant
// offsets leaves one bounds check, not one per field.
func le16(s string) int {
	_ = s[1]
	return int(s[0]) | int(s[1])<<8
}

func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// key returns the key of the record at o.
func (b blob) key(o int) string {
	return string(b[o+recordHead : o+recordHead+le16(string(b[o+8:]))])
}

// encoder writes records to a blob.
type encoder struct {
	b     []byte
	keyed []int // the records to file in slots
}

func (e *encoder) u16(v int) { e.b = binary.LittleEndian.AppendUint16(e.b, uint16(v)) }

func (e *encoder) record(parent uint32, key, tail string, min int32, nCands, kids int) int {
	o := len(e.b)
	if parent != 0 {
		e.keyed = append(e.keyed, o)
	}
	e.b = binary.LittleEndian.AppendUint32(e.b, parent)
	e.b = binary.LittleEndian.AppendUint32(e.b, uint32(min))
	e.u16(len(key))
	e.u16(len(tail))
	e.u16(nCands)
	e.u16(kids)
	e.b = append(e.b, key...)
	e.b = append(e.b, tail...)
	return o
}

func (e *encoder) cand(c candidate, s string) {
	e.b = binary.LittleEndian.AppendUint32(e.b, uint32(c.pos))
	e.b = append(e.b, c.kind)
	e.u16(int(c.methods))
	e.u16(len(s))
	e.b = append(e.b, s...)
}

func (e *encoder) bucket(parent uint32, key string, pi *pathIndex) int {
	if pi.flat == nil {
		return e.node(parent, key, pi.paths)
	}
	o := e.record(parent, key, "", pi.min, len(pi.flat), flatList)
	for _, fc := range pi.flat {
		e.cand(fc.candidate, fc.s)
	}
	return o
}

func (e *encoder) node(parent uint32, key string, n *pathNode) int {
	kids := len(n.kids)
	if n.kidMap != nil {
		kids = kidsHashed
	}
	o := e.record(parent, key, n.tail, n.min, len(n.cands), kids)
	for _, c := range n.cands {
		e.cand(c, "")
	}
	refs := make([]int, len(n.kids)) // where each child's offset goes
	for i, k := range n.kids {
		e.u16(len(k.seg))
		e.b = append(e.b, k.seg...)
		refs[i] = len(e.b)
		e.b = append(e.b, 0, 0, 0, 0)
	}
	for i, k := range n.kids {
		c := e.node(0, "", k.node) // before e.b is read: writing it may move e.b
		binary.LittleEndian.PutUint32(e.b[refs[i]:], uint32(c))
	}
	for _, seg := range slices.Sorted(maps.Keys(n.kidMap)) {
		e.node(uint32(o), seg, n.kidMap[seg])
	}
	return o
}

// The hash of a key filed under a parent: the key's 8-byte little-endian
// words mixed into a state seeded with the index's seed and the parent,
// then what is left of the key (up to 7 bytes, zero-padded) with its
// length in the top byte: wyhash's multiply-and-fold step, one
// multiplication per word. Written out here rather than taken from
// hash/maphash because the walk hashes a path segment in the same pass
// that finds the segment's end (see segment), and because for keys this
// short the calls into the runtime's hash cost more than the hashing.
const (
	hashK0 = 0xa0761d6478bd642f
	hashK1 = 0xe7037ed1a0b428db
	hashK2 = 0x8ebc6af09c88c6e3
)

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// rest returns the little-endian word of s[i:], fewer than 8 bytes,
// padded with zeros: with one load of the last 8 bytes when s has them.
func rest(s string, i int) uint64 {
	r := len(s) - i
	switch {
	case r == 0:
		return 0
	case len(s) >= 8:
		return le64(s[len(s)-8:]) >> (64 - 8*r)
	case r >= 4:
		return uint64(le32(s[i:])) | uint64(le32(s[len(s)-4:]))<<(8*(r-4))
	}
	return uint64(s[i]) | uint64(s[i+r/2])<<(8*(r/2)) | uint64(s[len(s)-1])<<(8*(r-1))
}

// hash is the hash of key filed under parent.
func (ix *Index) hash(parent uint32, key string) uint64 {
	h := ix.seed ^ uint64(parent)*hashK0
	i := 0
	for ; len(key)-i >= 8; i += 8 {
		h = mix(h^le64(key[i:]), hashK1)
	}
	return mix(h^rest(key, i)^uint64(len(key))<<56, hashK2)
}

// segment returns the end of the path segment that starts at p[i] (the
// index of the next "/", or len(p)) and the hash of the segment under
// parent, as hash computes it, in one pass over p a word at a time.
func (ix *Index) segment(parent uint32, p string, i int) (int, uint64) {
	const ones, highs, slashes = 0x0101010101010101, 0x8080808080808080, 0x2f2f2f2f2f2f2f2f
	h := ix.seed ^ uint64(parent)*hashK0
	start := i
	var w uint64
	for {
		full := len(p)-i >= 8
		if full {
			w = le64(p[i:])
		} else {
			w = rest(p, i)
		}
		// The bytes of w that are "/" have their high bit set in t (and
		// bytes above the first may, spuriously); the padding is not "/".
		x := w ^ slashes
		if t := (x - ones) &^ x & highs; t != 0 {
			j := bits.TrailingZeros64(t) / 8
			w &= 1<<(8*j) - 1
			i += j
			break
		}
		if !full {
			i = len(p)
			break
		}
		h = mix(h^w, hashK1)
		i += 8
	}
	return i, mix(h^w^uint64(i-start)<<56, hashK2)
}

// find returns the record filed under parent with key, whose hash is h,
// or 0.
func (ix *Index) find(parent uint32, key string, h uint64) int {
	mask := len(ix.slots) - 1
	for i := int(h >> ix.shift); ; i = (i + 1) & mask {
		s := ix.slots[i&mask]
		if s.ref == 0 {
			return 0
		}
		if s.tag == uint32(h) {
			o := int(s.ref)
			r := ix.blob[o : o+recordHead]
			if le32(string(r)) == parent && le16(string(r[8:])) == len(key) &&
				string(ix.blob[o+recordHead:o+recordHead+len(key)]) == key {
				return o
			}
		}
	}
}

// Lookup returns the position of the first rule that matches a request
// for host, as RequestHost returns it (lower-case, no port, no trailing
// dot), the path p, cleaned (see NeedsClean), and method; or -1 if none
// does.
func (ix *Index) Lookup(host, p, method string) int {
	best := int32(none)
	mb := methodBit(method)
	if ix.exact {
		if o := ix.find(exactHosts, host, ix.hash(exactHosts, host)); o != 0 {
			best = ix.first(o, p, method, mb, best)
		}
	}
	if ix.wildLen != nil {
		// A wildcard matches a host that ends in its suffix and is longer
		// than it: every dot after the host's first byte starts a suffix
		// that may be filed, if its length is one of the suffixes'.
		for i := len(host) - ix.wildMin; i > 0 && i > len(host)-len(ix.wildLen); i-- {
			if host[i] != '.' {
				continue
			}
			if ix.wildLen[len(host)-i] {
				if o := ix.find(wildHosts, host[i:], ix.hash(wildHosts, host[i:])); o != 0 {
					best = ix.first(o, p, method, mb, best)
				}
			}
		}
	}
	switch {
	case ix.hostlessBare:
		// The walk's first step, without the walk: most requests of a
		// big table have a host and a first segment no host-less route
		// starts with, and end here.
		if len(p) > 0 && p[0] == '/' {
			end, h := ix.segment(uint32(ix.hostless), p, 1)
			if c := ix.find(uint32(ix.hostless), p[1:end], h); c != 0 {
				best = ix.walkFrom(c, end, 0, p, method, mb, best)
			}
		}
	case ix.hostless != 0:
		best = ix.first(ix.hostless, p, method, mb, best)
	}
	for _, pos := range ix.other {
		if pos >= best {
			break
		}
		if ix.rules[pos].match(host, p, method) {
			best = pos
			break
		}
	}
	if best == none {
		return -1
	}
	return int(best)
}

// allows reports whether a candidate of route pos with methods allows the
// request's method, whose bit is mb.
func (ix *Index) allows(methods, mb uint16, pos int32, method string) bool {
	if methods&mb == 0 {
		return false
	}
	return mb != mOther || methods == mAny || slices.Contains(ix.rules[pos].methods, method)
}

// first returns the lowest position in the bucket at o that matches p and
// method, if lower than best; else best.
func (ix *Index) first(o int, p, method string, mb uint16, best int32) int32 {
	b := ix.blob
	h := string(b[o : o+recordHead])
	if int32(le32(h[4:])) >= best {
		return best
	}
	if le16(h[14:]) != flatList {
		return ix.walk(o, p, method, mb, best)
	}
	c := o + recordHead + le16(h[8:]) // a flat bucket has no tail
	for range le16(h[12:]) {
		ch := string(b[c : c+candHead])
		pos := int32(le32(ch))
		if pos >= best {
			return best
		}
		c += candHead
		s := string(b[c : c+le16(ch[7:])])
		c += len(s)
		if matchPath(ch[4], s, p) && ix.allows(uint16(le16(ch[5:])), mb, pos, method) {
			return pos
		}
	}
	return best
}

// walk follows p down the trie from its root, the record at o. At the node
// for s, where p starts with s: if p is s, the exact and boundary routes
// match; if p goes on with "/", the boundary and below routes match and the
// walk goes on to the next segment; if p goes on with another byte, s is no
// segment prefix of p and nothing at or under the node matches. At the
// root, the routes without a path condition match whatever p.
func (ix *Index) walk(o int, p, method string, mb uint16, best int32) int32 {
	return ix.walkFrom(o, 0, kindAny, p, method, mb, best)
}

// walkFrom is walk from the node at o, where p[:pos] has been followed;
// anyKind is kindAny at the root, else 0.
func (ix *Index) walkFrom(o, pos int, anyKind uint8, p, method string, mb uint16, best int32) int32 {
	b := ix.blob
	for {
		h := string(b[o : o+recordHead])
		if int32(le32(h[4:])) >= best {
			return best
		}
		k := o + recordHead + le16(h[8:])
		if tail := string(b[k : k+le16(h[10:])]); tail != "" {
			// The merged nodes held no route: p must only go through them.
			if !strings.HasPrefix(p[pos:], tail) {
				return best
			}
			pos += len(tail)
			k += len(tail)
		}
		n := le16(h[12:])
		if pos == len(p) {
			return ix.firstOf(k, n, anyKind|kindExact|kindBoundary, method, mb, best)
		}
		if p[pos] != '/' {
			return ix.firstOf(k, n, anyKind, method, mb, best)
		}
		if n > 0 {
			best = ix.firstOf(k, n, anyKind|kindBoundary|kindBelow, method, mb, best)
		}
		anyKind = 0
		kids := le16(h[14:])
		if kids == 0 {
			return best // a leaf: "/s1/orders" for "/s1/orders/9/lines"
		}
		if kids == kidsHashed {
			end, hs := ix.segment(uint32(o), p, pos+1)
			o = ix.find(uint32(o), p[pos+1:end], hs)
			pos = end
		} else {
			end := strings.IndexByte(p[pos+1:], '/')
			if end < 0 {
				end = len(p)
			} else {
				end += pos + 1
			}
			seg := p[pos+1 : end]
			pos = end
			k += n * candHead
			for o = 0; kids > 0; kids-- {
				sl := le16(string(b[k:]))
				k += 2
				if string(b[k:k+sl]) == seg {
					o = int(le32(string(b[k+sl:])))
					break
				}
				k += sl + 4
			}
		}
		if o == 0 {
			return best
		}
	}
}

// firstOf returns the position of the first of the n candidates at c
// (sorted by position) of one of kinds that allows the method, if lower
// than best; else best.
func (ix *Index) firstOf(c, n int, kinds uint8, method string, mb uint16, best int32) int32 {
	b := ix.blob
	for ; n > 0; n-- {
		ch := string(b[c : c+candHead])
		pos := int32(le32(ch))
		if pos >= best {
			return best
		}
		if ch[4]&kinds != 0 && ix.allows(uint16(le16(ch[5:])), mb, pos, method) {
			return pos
		}
		c += candHead
	}
	return best
}
