package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"sluice/config"
)

func TestMatcher(t *testing.T) {
	tests := []struct {
		name   string
		m      config.Match
		host   string
		path   string
		method string
		want   bool
	}{
		{"exact host", config.Match{Host: "api.example.com"}, "api.example.com", "/", "GET", true},
		{"exact host other", config.Match{Host: "api.example.com"}, "www.example.com", "/", "GET", false},
		{"wildcard one level", config.Match{Host: "*.example.com"}, "a.example.com", "/", "GET", true},
		{"wildcard deep", config.Match{Host: "*.example.com"}, "a.b.example.com", "/", "GET", true},
		{"wildcard not apex", config.Match{Host: "*.example.com"}, "example.com", "/", "GET", false},
		{"wildcard not suffix of label", config.Match{Host: "*.example.com"}, "badexample.com", "/", "GET", false},
		{"prefix itself", config.Match{PathPrefix: "/users"}, "h", "/users", "GET", true},
		{"prefix below", config.Match{PathPrefix: "/users"}, "h", "/users/7", "GET", true},
		{"prefix not at boundary", config.Match{PathPrefix: "/users"}, "h", "/usersx", "GET", false},
		{"prefix with slash", config.Match{PathPrefix: "/users/"}, "h", "/users/7", "GET", true},
		{"prefix with slash not bare", config.Match{PathPrefix: "/users/"}, "h", "/users", "GET", false},
		{"root prefix", config.Match{PathPrefix: "/"}, "h", "/anything", "GET", true},
		{"exact path", config.Match{Path: "/login"}, "h", "/login", "POST", true},
		{"exact path below", config.Match{Path: "/login"}, "h", "/login/x", "POST", false},
		{"method allowed", config.Match{PathPrefix: "/", Methods: []string{"GET", "POST"}}, "h", "/", "POST", true},
		{"method refused", config.Match{PathPrefix: "/", Methods: []string{"GET", "POST"}}, "h", "/", "DELETE", false},
		{"all conditions", config.Match{Host: "*.example.com", PathPrefix: "/v1", Methods: []string{"GET"}}, "x.example.com", "/v1/a", "GET", true},
		{"all conditions one fails", config.Match{Host: "*.example.com", PathPrefix: "/v1", Methods: []string{"GET"}}, "x.example.com", "/v2/a", "GET", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMatcher(tc.m)
			if got := m.match(tc.host, tc.path, tc.method); got != tc.want {
				t.Errorf("match(%q, %q, %q) = %v, want %v", tc.host, tc.path, tc.method, got, tc.want)
			}
		})
	}
}

func TestRequestHost(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":       "example.com",
		"Example.COM:8080":  "example.com",
		"example.com.":      "example.com",
		"127.0.0.1:80":      "127.0.0.1",
		"[::1]:8080":        "::1",
		"[::1]":             "::1",
		"":                  "",
		"api.example.com:0": "api.example.com",
	} {
		if got := requestHost(in); got != want {
			t.Errorf("requestHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCleanURLPath(t *testing.T) {
	for in, want := range map[string]string{
		"/public/../admin":    "/admin",
		"/a//b":               "/a/b",
		"/a/./b/":             "/a/b/",
		"/a/%2F/../b":         "/a/b",
		"/x/%2Fkeep":          "/x/%2Fkeep",
		"/../../etc/passwd":   "/etc/passwd",
		"/trailing/dot/.":     "/trailing/dot",
		"/trailing/dotdot/..": "/trailing",
		"/a/%2e%2e/b":         "/b",
		"/x/%2E%2E":           "/",
		"/..%2f..%2fetc":      "/etc", // decodes to /../../etc
	} {
		u, err := url.Parse("http://h" + in)
		if err != nil {
			t.Fatal(err)
		}
		if needsClean(u) {
			cleanURLPath(u)
		}
		if got := u.EscapedPath(); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRoutingEndToEnd sends real requests through a running proxy and checks
// which upstream answered: first match wins, host and method conditions hold,
// and an unmatched request gets a 404 problem.
func TestRoutingEndToEnd(t *testing.T) {
	a, b, c, d := echoUpstream(t, "a"), echoUpstream(t, "b"), echoUpstream(t, "c"), echoUpstream(t, "d")
	p := startProxy(t, fmt.Sprintf(`
upstreams:
  - {name: a, targets: ["%s"]}
  - {name: b, targets: ["%s"]}
  - {name: c, targets: ["%s"]}
  - {name: d, targets: ["%s"]}
routes:
  - {name: login, match: {path: /login, methods: [POST]}, upstream: a}
  - {name: users-host, match: {host: "*.example.com", path_prefix: /users}, upstream: b}
  - {name: users, match: {path_prefix: /users}, upstream: c}
  - {name: shadowed, match: {path_prefix: /users/admin}, upstream: a}
  - {name: stripped, match: {path_prefix: /svc/}, upstream: d, strip_prefix: true}
  - {name: api-host, match: {host: api.example.org}, upstream: d}
`, a.URL, b.URL, c.URL, d.URL))

	tests := []struct {
		method, host, path string
		want               string // upstream name, or "" for 404
		wantPath           string
	}{
		{"POST", "", "/login", "a", "/login"},
		{"GET", "", "/login", "", ""},
		{"GET", "eu.example.com", "/users/1", "b", "/users/1"},
		{"GET", "EU.Example.com:9999", "/users", "b", "/users"},
		{"GET", "", "/users/1", "c", "/users/1"},
		{"GET", "", "/users/admin", "c", "/users/admin"}, // first match wins
		{"GET", "", "/usersx", "", ""},
		{"GET", "", "/svc/orders/9?x=1", "d", "/orders/9"},
		{"GET", "api.example.org", "/anything", "d", "/anything"},
		{"GET", "", "/public/../users/2", "c", "/users/2"},
		{"GET", "", "/nothing", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.host+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, p.URL+tc.path, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, body := do(t, req)
			if tc.want == "" {
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("status %d, want 404; body %s", resp.StatusCode, body)
				}
				pb := decodeProblem(t, resp, body)
				if pb.Status != 404 || pb.Title != "Not Found" {
					t.Errorf("problem %+v", pb)
				}
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d; body %s", resp.StatusCode, body)
			}
			e := decodeEcho(t, body)
			if e.Name != tc.want || e.Path != tc.wantPath {
				t.Errorf("answered by %q with path %q, want %q with %q", e.Name, e.Path, tc.want, tc.wantPath)
			}
		})
	}
}
