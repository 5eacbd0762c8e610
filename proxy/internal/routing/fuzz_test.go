package routing

import (
	"net/url"
	"strings"
	"testing"
)

// fuzzRules is a table with every kind of condition, in an order where
// first match matters (overlapping hosts, prefixes and methods), as a
// validated config holds them.
var fuzzRules = []Rule{
	{Path: "/login", Methods: []string{"POST"}},
	{Host: "api.example.com", PathPrefix: "/users"},
	{Host: "*.example.com", PathPrefix: "/users/"},
	{Host: "*.example.com"},
	{PathPrefix: "/admin", Methods: []string{"GET", "DELETE"}},
	{Path: "/"},
	{PathPrefix: "/static/"},
	{Host: "other.test", Path: "/x"},
	{PathPrefix: "/", Methods: []string{"GET"}},
}

// referenceLookup is an independent first-match scan over the rules,
// written from the documented rules rather than from the matcher's code.
func referenceLookup(rules []Rule, host, path, method string) int {
	for i, m := range rules {
		switch {
		case m.Host == "":
		case strings.HasPrefix(m.Host, "*."):
			apexDot := m.Host[1:] // ".example.com"
			if !strings.HasSuffix(host, apexDot) || host == apexDot[1:] || len(host) == len(apexDot) {
				continue
			}
		case host != m.Host:
			continue
		}
		if m.Path != "" && path != m.Path {
			continue
		}
		if m.PathPrefix != "" {
			base := strings.TrimSuffix(m.PathPrefix, "/")
			atBoundary := path == m.PathPrefix || strings.HasPrefix(path, base+"/")
			if !atBoundary {
				continue
			}
		}
		if len(m.Methods) > 0 {
			ok := false
			for _, mm := range m.Methods {
				ok = ok || mm == method
			}
			if !ok {
				continue
			}
		}
		return i
	}
	return -1
}

// FuzzRouting: whatever Host, path and method arrive, normalised as the
// proxy normalises them, the index finds the first matching rule.
func FuzzRouting(f *testing.F) {
	for _, seed := range [][3]string{
		{"api.example.com", "/users/7", "GET"},
		{"API.Example.COM:8443", "/users", "POST"},
		{"a.b.example.com", "/users/", "PUT"},
		{"example.com", "/users/1", "GET"},
		{"x.example.com", "/anything", "DELETE"},
		{"", "/login", "POST"},
		{"h", "/admin/../login", "POST"},
		{"h", "//static//a.css", "GET"},
		{"[::1]:80", "/", "HEAD"},
		{"other.test.", "/x", "GET"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	ix := NewIndex(fuzzRules)
	f.Fuzz(func(t *testing.T, host, rawPath, method string) {
		u, err := url.Parse("http://h" + "/" + strings.TrimPrefix(rawPath, "/"))
		if err != nil || u.Host != "h" {
			return // not a path a server would hand us
		}
		if NeedsClean(u) {
			CleanURLPath(u)
		}
		h := RequestHost(host)
		if got, want := ix.Lookup(h, u.Path, method), referenceLookup(fuzzRules, h, u.Path, method); got != want {
			t.Fatalf("Lookup(%q, %q, %q) = %d, first match is %d", h, u.Path, method, got, want)
		}
	})
}

// FuzzCleanPath: whatever path arrives, the one routed and forwarded has no
// dot segment once decoded (so an upstream that decodes %2e%2e cannot be
// walked out of the routed prefix), no empty or dot segment in its escaped
// form (an encoded slash may stay inside a segment), starts with "/",
// escapes back to what it decodes from, and cleaning it again changes nothing.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/a/b", "/public/../admin", "/a//b/./c/", "/a/%2e%2e/b", "/a/%2F/../b", "/..%2f..%2fetc", "/%2e/x", "/x/%2E%2E", "/ä/../ö", "/x/%2Fkeep"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse("http://h/" + strings.TrimPrefix(raw, "/"))
		if err != nil || u.Host != "h" || u.Path == "" {
			return
		}
		if NeedsClean(u) {
			CleanURLPath(u)
		}
		p, e := u.Path, u.EscapedPath()
		if !strings.HasPrefix(p, "/") {
			t.Fatalf("cleaned path %q of %q does not start with /", p, raw)
		}
		for _, seg := range strings.Split(p, "/")[1:] {
			if seg == "." || seg == ".." {
				t.Fatalf("cleaned path %q of %q keeps a dot segment", p, raw)
			}
		}
		for _, seg := range strings.Split(strings.TrimSuffix(e, "/"), "/")[1:] {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("escaped path %q of %q keeps an empty or dot segment", e, raw)
			}
		}
		if NeedsClean(u) {
			t.Fatalf("cleaned path %q (%q) of %q still needs cleaning", p, e, raw)
		}
		if dec, err := url.PathUnescape(e); err != nil || dec != p {
			t.Fatalf("escaped form %q of %q does not decode to the path %q", e, raw, p)
		}
	})
}
