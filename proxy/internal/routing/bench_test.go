package routing

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// routingTable builds n routes of the shapes a large multi-tenant config
// has, in the same proportions whatever n, so that tables of 10 and 10 000
// routes differ only in size: per-tenant hosts with versioned API prefixes,
// hosts without a path, wildcard hosts, host-less service prefixes and exact
// health paths limited to GET. With each route it returns a request that
// the route (or one earlier in the table) matches.
func routingTable(n int) ([]Rule, [][3]string) {
	rules := make([]Rule, n)
	reqs := make([][3]string, n)
	for i := range rules {
		var m Rule
		var host, path, method = "", "", "GET"
		switch i % 5 {
		case 0:
			m = Rule{Host: fmt.Sprintf("t%d.example.com", i), PathPrefix: fmt.Sprintf("/api/v%d/items", i%3)}
			host, path = m.Host, m.PathPrefix+"/12345"
		case 1:
			m = Rule{Host: fmt.Sprintf("*.w%d.example.net", i), PathPrefix: "/v1/"}
			host, path = fmt.Sprintf("eu.w%d.example.net", i), "/v1/orders/77"
		case 2:
			m = Rule{PathPrefix: fmt.Sprintf("/s%d/orders", i)}
			host, path, method = "gw.example.org", m.PathPrefix+"/9/lines", "POST"
		case 3:
			m = Rule{Path: fmt.Sprintf("/s%d/health", i), Methods: []string{"GET", "HEAD"}}
			host, path = "gw.example.org", m.Path
		case 4:
			m = Rule{Host: fmt.Sprintf("t%d.example.com", i), Methods: []string{"GET", "POST"}}
			host, path = m.Host, "/static/app.js"
		}
		rules[i] = m
		reqs[i] = [3]string{host, path, method}
	}
	return rules, reqs
}

// routingRequests draws 4096 requests: nine in ten for a random route, one
// in ten matching none (a 404 walks every bucket it can reach).
func routingRequests(reqs [][3]string) [][3]string {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([][3]string, 4096)
	for i := range out {
		if r.IntN(10) == 0 {
			out[i] = [3]string{fmt.Sprintf("t%d.example.com", r.IntN(1<<20)+1<<20), "/api/v9/none", "GET"}
			continue
		}
		out[i] = reqs[r.IntN(len(reqs))]
	}
	return out
}

// BenchmarkRouting is the cost of finding the route of one request with 10,
// 1 000 and 10 000 routes: "index" is what the proxy does, "scan" the
// linear first-match scan it replaced (for comparison).
func BenchmarkRouting(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		rules, reqs := routingTable(n)
		ix := NewIndex(rules)
		ms := ix.rules
		qs := routingRequests(reqs)
		for i, q := range qs { // the index and the scan agree on every request
			if got, want := ix.Lookup(q[0], q[1], q[2]), scanLookup(ms, q[0], q[1], q[2]); got != want {
				b.Fatalf("request %d %q: index %d, scan %d", i, q, got, want)
			}
		}
		b.Run(fmt.Sprintf("index/routes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				q := &qs[i&4095]
				ix.Lookup(q[0], q[1], q[2])
				i++
			}
		})
		if n == 10000 {
			// The same table with traffic on 10 of its routes: the cost of
			// the walk itself once the parts it touches are in cache, as
			// for a big config whose traffic goes mostly to a few routes.
			hot := make([][3]string, 4096)
			for i := range hot {
				hot[i] = reqs[(i%10)*(n/10)]
			}
			b.Run(fmt.Sprintf("index-hot10/routes=%d", n), func(b *testing.B) {
				i := 0
				for b.Loop() {
					q := &hot[i&4095]
					ix.Lookup(q[0], q[1], q[2])
					i++
				}
			})
		}
		b.Run(fmt.Sprintf("scan/routes=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				q := &qs[i&4095]
				scanLookup(ms, q[0], q[1], q[2])
				i++
			}
		})
	}
}

// BenchmarkRouteIndexBuild is the cost of building the index, paid once
// per config load or reload.
func BenchmarkRouteIndexBuild(b *testing.B) {
	rules, _ := routingTable(10000)
	b.ReportAllocs()
	for b.Loop() {
		NewIndex(rules)
	}
}
