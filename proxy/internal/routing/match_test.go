package routing

import "testing"

func TestMatcher(t *testing.T) {
	tests := []struct {
		name   string
		r      Rule
		host   string
		path   string
		method string
		want   bool
	}{
		{"exact host", Rule{Host: "api.example.com"}, "api.example.com", "/", "GET", true},
		{"exact host other", Rule{Host: "api.example.com"}, "www.example.com", "/", "GET", false},
		{"exact host any case", Rule{Host: "API.Example.com"}, "api.example.com", "/", "GET", true},
		{"wildcard one level", Rule{Host: "*.example.com"}, "a.example.com", "/", "GET", true},
		{"wildcard deep", Rule{Host: "*.example.com"}, "a.b.example.com", "/", "GET", true},
		{"wildcard not apex", Rule{Host: "*.example.com"}, "example.com", "/", "GET", false},
		{"wildcard not suffix of label", Rule{Host: "*.example.com"}, "badexample.com", "/", "GET", false},
		{"prefix itself", Rule{PathPrefix: "/users"}, "h", "/users", "GET", true},
		{"prefix below", Rule{PathPrefix: "/users"}, "h", "/users/7", "GET", true},
		{"prefix not at boundary", Rule{PathPrefix: "/users"}, "h", "/usersx", "GET", false},
		{"prefix with slash", Rule{PathPrefix: "/users/"}, "h", "/users/7", "GET", true},
		{"prefix with slash not bare", Rule{PathPrefix: "/users/"}, "h", "/users", "GET", false},
		{"root prefix", Rule{PathPrefix: "/"}, "h", "/anything", "GET", true},
		{"exact path", Rule{Path: "/login"}, "h", "/login", "POST", true},
		{"exact path below", Rule{Path: "/login"}, "h", "/login/x", "POST", false},
		{"method allowed", Rule{PathPrefix: "/", Methods: []string{"GET", "POST"}}, "h", "/", "POST", true},
		{"method refused", Rule{PathPrefix: "/", Methods: []string{"GET", "POST"}}, "h", "/", "DELETE", false},
		{"all conditions", Rule{Host: "*.example.com", PathPrefix: "/v1", Methods: []string{"GET"}}, "x.example.com", "/v1/a", "GET", true},
		{"all conditions one fails", Rule{Host: "*.example.com", PathPrefix: "/v1", Methods: []string{"GET"}}, "x.example.com", "/v2/a", "GET", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMatcher(tc.r)
			if got := m.match(tc.host, tc.path, tc.method); got != tc.want {
				t.Errorf("match(%q, %q, %q) = %v, want %v", tc.host, tc.path, tc.method, got, tc.want)
			}
			// The index answers the same, alone and behind a rule that
			// matches none of these requests.
			alone, behind := -1, -1
			if tc.want {
				alone, behind = 0, 1
			}
			if got := NewIndex([]Rule{tc.r}).Lookup(tc.host, tc.path, tc.method); got != alone {
				t.Errorf("Lookup(%q, %q, %q) = %d, want %d", tc.host, tc.path, tc.method, got, alone)
			}
			two := NewIndex([]Rule{{Host: "nothing.test"}, tc.r})
			if got := two.Lookup(tc.host, tc.path, tc.method); got != behind {
				t.Errorf("behind another rule, Lookup(%q, %q, %q) = %d, want %d", tc.host, tc.path, tc.method, got, behind)
			}
		})
	}
}
