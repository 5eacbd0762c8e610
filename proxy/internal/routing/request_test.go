package routing

import (
	"net/url"
	"testing"
)

func TestRequestHost(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":       "example.com",
		"Example.COM:8080":  "example.com",
		"example.com.":      "example.com",
		"Example.com.:80":   "example.com",
		"example.com:":      "example.com",
		"127.0.0.1:80":      "127.0.0.1",
		"[::1]:8080":        "::1",
		"[::1]":             "::1",
		"":                  "",
		"api.example.com:0": "api.example.com",
	} {
		if got := RequestHost(in); got != want {
			t.Errorf("RequestHost(%q) = %q, want %q", in, got, want)
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
		if NeedsClean(u) {
			CleanURLPath(u)
		}
		if got := u.EscapedPath(); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}
