package routing

import "strings"

// Rule is one route's match conditions, as configured (the fields of
// config.Match, whose comments are the user's documentation). A request
// matches when it meets every condition that is set.
type Rule struct {
	// Host is an exact host ("api.example.com") or a wildcard
	// ("*.example.com": any depth of subdomain, not the apex), compared
	// case-insensitively; "" for any host.
	Host string
	// Path is one exact path; "" for none.
	Path string
	// PathPrefix matches the path and everything below it at a segment
	// boundary ("/users": /users and /users/7, not /usersx); one ending in
	// "/" matches anything that starts with it. "" for none.
	PathPrefix string
	// Methods are the methods allowed; none for any.
	Methods []string
}

// matcher holds a rule's conditions in the form the hot path needs:
// host lower-cased, wildcard reduced to its suffix.
type matcher struct {
	host     string // exact host, or "" for any
	suffix   string // ".example.com" for "*.example.com"
	path     string // exact path, or ""
	prefix   string // path prefix, or ""
	anyBelow bool   // prefix ends in "/": plain string prefix match
	methods  []string
}

func newMatcher(r Rule) matcher {
	mt := matcher{path: r.Path, methods: r.Methods}
	if s, ok := strings.CutPrefix(r.Host, "*"); ok {
		mt.suffix = strings.ToLower(s)
	} else {
		mt.host = strings.ToLower(r.Host)
	}
	if r.PathPrefix != "" {
		mt.prefix = r.PathPrefix
		mt.anyBelow = strings.HasSuffix(r.PathPrefix, "/")
	}
	return mt
}

// match reports whether a request for host (lower-case, no port), the
// cleaned path p and method matches.
func (m *matcher) match(host, p, method string) bool {
	if m.host != "" && host != m.host {
		return false
	}
	// A wildcard matches any depth of subdomain but not the apex itself:
	// "*.example.com" matches a.example.com and a.b.example.com, not
	// example.com, as a TLS wildcard certificate would not either.
	if m.suffix != "" && (len(host) <= len(m.suffix) || !strings.HasSuffix(host, m.suffix)) {
		return false
	}
	if m.path != "" && p != m.path {
		return false
	}
	if m.prefix != "" && !hasPathPrefix(p, m.prefix, m.anyBelow) {
		return false
	}
	if len(m.methods) > 0 {
		for _, mm := range m.methods {
			if mm == method {
				return true
			}
		}
		return false
	}
	return true
}

// hasPathPrefix matches prefix at a segment boundary, so that a route for
// /admin does not also capture /administrator. A prefix ending in "/" is
// already a boundary.
func hasPathPrefix(p, prefix string, anyBelow bool) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return anyBelow || len(p) == len(prefix) || p[len(prefix)] == '/'
}
