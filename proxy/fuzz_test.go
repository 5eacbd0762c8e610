package proxy

import (
	"net/url"
	"strings"
	"testing"

	"sluice/config"
)

// fuzzRoutes is a table with every kind of matcher, in an order where first
// match matters (overlapping hosts, prefixes and methods).
const fuzzRoutes = `
upstreams: [{name: u, targets: ["http://127.0.0.1:9"]}]
routes:
  - {name: login, match: {path: /login, methods: [POST]}, upstream: u}
  - {name: api-users, match: {host: api.example.com, path_prefix: /users}, upstream: u}
  - {name: wild-users, match: {host: "*.example.com", path_prefix: /users/}, upstream: u}
  - {name: wild, match: {host: "*.example.com"}, upstream: u}
  - {name: admin, match: {path_prefix: /admin, methods: [GET, DELETE]}, upstream: u}
  - {name: exact-root, match: {path: /}, upstream: u}
  - {name: static, match: {path_prefix: /static/}, upstream: u}
  - {name: other-host, match: {host: other.test, path: /x}, upstream: u}
  - {name: catch-all, match: {path_prefix: /, methods: [GET]}, upstream: u}
`

// referenceLookup is an independent first-match scan over the config,
// written from the documented rules rather than from the matcher's code.
func referenceLookup(routes []config.Route, host, path, method string) string {
	for _, r := range routes {
		m := r.Match
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
		return r.Name
	}
	return ""
}

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
	cfg, err := config.Parse("fuzz.yaml", []byte(fuzzRoutes))
	if err != nil {
		f.Fatal(err)
	}
	p, err := New(cfg, Options{})
	if err != nil {
		f.Fatal(err)
	}
	t := p.tab.Load()
	f.Fuzz(func(tt *testing.T, host, rawPath, method string) {
		u, err := url.Parse("http://h" + "/" + strings.TrimPrefix(rawPath, "/"))
		if err != nil || u.Host != "h" {
			return // not a path a server would hand us
		}
		if needsClean(u) {
			cleanURLPath(u)
		}
		h := requestHost(host)
		got := ""
		if rt := t.lookup(h, u.Path, method); rt != nil {
			got = rt.name
		}
		if want := referenceLookup(cfg.Routes, h, u.Path, method); got != want {
			tt.Fatalf("lookup(%q, %q, %q) = %q, first match is %q", h, u.Path, method, got, want)
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
		if needsClean(u) {
			cleanURLPath(u)
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
		if needsClean(u) {
			t.Fatalf("cleaned path %q (%q) of %q still needs cleaning", p, e, raw)
		}
		if dec, err := url.PathUnescape(e); err != nil || dec != p {
			t.Fatalf("escaped form %q of %q does not decode to the path %q", e, raw, p)
		}
	})
}
