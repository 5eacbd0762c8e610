package proxy

import (
	"fmt"
	"net/http"
	"testing"
)

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
