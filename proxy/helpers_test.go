package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sluice/config"
	"sluice/internal/testutil"
	"sluice/overload"
)

// syncBuffer is a log sink tests can read while the proxy writes.
type syncBuffer = testutil.SyncBuffer

type testProxy struct {
	*Proxy
	URL  string
	logs *syncBuffer
}

// calmMachine is the overload manager's sampler for tests that start the
// proxy (Start runs it) but do not test the saturation detector: the
// scheduling latency it reads is always 0, so the detector never judges
// the machine the tests share and never refuses their requests
// "overloaded". Tests of the detector feed it their own latencies.
var calmMachine = overload.Options{Sched: func() time.Duration { return 0 }}

// startProxy compiles yaml and serves it on a real loopback listener.
// Health checks are not started: tests drive them with CheckNow; a test
// that calls Start runs them and the overload manager's sampler, with
// calmMachine's latencies.
func startProxy(t *testing.T, yaml string) *testProxy {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	logs := &syncBuffer{}
	p, err := New(cfg, Options{Log: slog.New(slog.NewJSONHandler(logs, nil)), Overload: calmMachine})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return &testProxy{Proxy: p, URL: srv.URL, logs: logs}
}

// echoUpstream answers every request with a JSON description of what it
// received, and its own name.
type echoReply struct {
	Name    string      `json:"name"`
	Method  string      `json:"method"`
	Host    string      `json:"host"`
	Path    string      `json:"path"`
	RawPath string      `json:"raw_path"`
	Query   string      `json:"query"`
	Header  http.Header `json:"header"`
}

func echoUpstream(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoReply{Name: name, Method: r.Method, Host: r.Host,
			Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery, Header: r.Header})
	}))
	t.Cleanup(s.Close)
	return s
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, body
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func decodeEcho(t *testing.T, body []byte) echoReply {
	t.Helper()
	var e echoReply
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("upstream reply %q: %v", body, err)
	}
	return e
}

// problem is an RFC 9457 body as sluice writes it.
type problem struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Status     int    `json:"status"`
	Detail     string `json:"detail"`
	Route      string `json:"route"`
	Reason     string `json:"reason"`
	RetryAfter int    `json:"retry_after"`
}

func decodeProblem(t *testing.T, resp *http.Response, body []byte) problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, body)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	return p
}

// closedPortURL is an http:// URL of a loopback port nothing listens on:
// a dial there is refused.
func closedPortURL(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("http://127.0.0.1:%d", testutil.RefusedPort(t))
}

// yamlList renders targets as a YAML flow sequence.
func yamlList(urls ...string) string {
	return `["` + strings.Join(urls, `", "`) + `"]`
}
