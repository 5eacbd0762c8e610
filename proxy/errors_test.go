package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"sluice/internal/testutil"
	"sluice/monitor"
)

// failingUpstreams starts a proxy with one route per failure kind, each on
// its own upstream, and an ok route; it returns the proxy and each
// upstream's host:port.
func failingUpstreams(t *testing.T) (*testProxy, map[string]string) {
	t.Helper()
	resets.Store(0)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answers nothing until the proxy gives up
	}))
	t.Cleanup(hang.Close)
	five := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.WriteHeader(code)
	}))
	t.Cleanup(five.Close)
	reset := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resets.Add(1)
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("partial"))
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // closes the connection mid-body
	}))
	t.Cleanup(reset.Close)
	ok := echoUpstream(t, "ok")
	refused := closedPortURL(t)
	hosts := map[string]string{
		"refused": strings.TrimPrefix(refused, "http://"),
		"timeout": strings.TrimPrefix(hang.URL, "http://"),
		"5xx":     strings.TrimPrefix(five.URL, "http://"),
		"reset":   strings.TrimPrefix(reset.URL, "http://"),
	}
	p := startProxy(t, fmt.Sprintf(`
upstreams:
  - {name: u-refused, targets: ["%s"]}
  - {name: u-timeout, targets: ["%s"], response_header_timeout: 100ms}
  - {name: u-5xx, targets: ["%s"]}
  - {name: u-reset, targets: ["%s"]}
  - {name: u-ok, targets: ["%s"]}
  - {name: u-hang, targets: ["%s"]}
routes:
  - {name: refused, match: {path_prefix: /refused}, upstream: u-refused}
  - {name: timeout, match: {path_prefix: /timeout}, upstream: u-timeout}
  - {name: 5xx, match: {path_prefix: /5xx}, upstream: u-5xx}
  - {name: reset, match: {path_prefix: /reset}, upstream: u-reset}
  - {name: hang, match: {path_prefix: /hang}, upstream: u-hang}
  - {name: ok, match: {path_prefix: /}, upstream: u-ok}
`, refused, hang.URL, five.URL, reset.URL, ok.URL, hang.URL))
	return p, hosts
}

// resets counts the requests the mid-body-closing upstream saw.
var resets atomic.Int64

func routeNamed(t *testing.T, p *testProxy, name string) *Route {
	t.Helper()
	for _, rt := range p.Routes() {
		if rt.Name() == name {
			return rt
		}
	}
	t.Fatalf("no route %q", name)
	return nil
}

// onlyError checks that the route's and its upstream's rings hold exactly
// one entry, with the given fields, and returns it.
func onlyError(t *testing.T, rt *Route, target, kind string, status int) monitor.ErrorEntry {
	t.Helper()
	for who, ring := range map[string]func() ([]monitor.ErrorEntry, bool){"route": rt.RecentErrors, "upstream": rt.Upstream().RecentErrors} {
		got, trunc := ring()
		if len(got) != 1 || trunc {
			t.Fatalf("%s %s ring: %+v truncated %v, want one entry", rt.Name(), who, got, trunc)
		}
		e := got[0]
		if e.Target != target || e.Kind != kind || e.Status != status || e.Detail == "" || e.Time == 0 {
			t.Errorf("%s %s ring entry %+v, want target %s kind %s status %d and a detail", rt.Name(), who, e, target, kind, status)
		}
	}
	got, _ := rt.RecentErrors()
	return got[0]
}

func TestRecentErrorsByKind(t *testing.T) {
	p, hosts := failingUpstreams(t)

	resp, body := get(t, p.URL+"/refused")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("refused: %d", resp.StatusCode)
	}
	e := onlyError(t, routeNamed(t, p, "refused"), hosts["refused"], "refused", 502)
	if strings.Contains(string(body), e.Detail) {
		t.Errorf("client body %q carries the internal detail %q", body, e.Detail)
	}

	if resp, _ := get(t, p.URL+"/timeout"); resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("timeout: %d", resp.StatusCode)
	}
	onlyError(t, routeNamed(t, p, "timeout"), hosts["timeout"], "timeout", 504)

	if resp, _ := get(t, p.URL+"/5xx?code=500"); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("5xx: %d", resp.StatusCode)
	}
	onlyError(t, routeNamed(t, p, "5xx"), hosts["5xx"], "5xx", 500)

	resp, err := http.Get(p.URL + "/reset")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("reset: the body arrived whole")
	}
	// The client may retry a GET whose connection broke, so each request
	// the upstream saw is one reset entry.
	rrt := routeNamed(t, p, "reset")
	testutil.WaitFor(t, "the resets recorded", func() bool {
		got, _ := rrt.RecentErrors()
		return len(got) > 0 && int64(len(got)) == resets.Load() && rrt.Upstream().Targets()[0].Inflight() == 0
	})
	for who, ring := range map[string]func() ([]monitor.ErrorEntry, bool){"route": rrt.RecentErrors, "upstream": rrt.Upstream().RecentErrors} {
		got, _ := ring()
		for _, e := range got {
			if e.Target != hosts["reset"] || e.Kind != "reset" || e.Status != 200 || e.Detail == "" {
				t.Errorf("reset %s ring entry %+v", who, e)
			}
		}
	}

	// Successes record nothing.
	for range 3 {
		if resp, _ := get(t, p.URL+"/fine"); resp.StatusCode != http.StatusOK {
			t.Fatalf("ok route: %d", resp.StatusCode)
		}
	}
	if got, trunc := routeNamed(t, p, "ok").RecentErrors(); len(got) != 0 || trunc {
		t.Errorf("ok route ring %+v %v, want empty", got, trunc)
	}
}

func TestRecentErrorsNewestFirstAndTruncated(t *testing.T) {
	p, hosts := failingUpstreams(t)
	rt := routeNamed(t, p, "5xx")
	for i := 0; i < monitor.ErrorRingSize; i++ {
		get(t, p.URL+"/5xx?code=500")
	}
	get(t, p.URL+"/5xx?code=503")
	for who, ring := range map[string]func() ([]monitor.ErrorEntry, bool){"route": rt.RecentErrors, "upstream": rt.Upstream().RecentErrors} {
		got, trunc := ring()
		if len(got) != monitor.ErrorRingSize || !trunc {
			t.Fatalf("%s ring after %d failures: len %d truncated %v", who, monitor.ErrorRingSize+1, len(got), trunc)
		}
		if got[0].Status != 503 || got[1].Status != 500 || got[0].Target != hosts["5xx"] || got[0].Kind != "5xx" {
			t.Errorf("%s ring newest %+v then %+v, want the 503 first", who, got[0], got[1])
		}
	}
}

func TestRecentErrorsClientGoneRecordsNothing(t *testing.T) {
	p, _ := failingUpstreams(t)
	rt := routeNamed(t, p, "hang") // no header timeout: only the client ends it
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/hang", nil)
	go func() {
		testutil.WaitFor(t, "the request in flight", func() bool { return rt.Upstream().Targets()[0].Inflight() == 1 })
		cancel()
	}()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the request succeeded")
	}
	testutil.WaitFor(t, "the 499 counted", func() bool {
		var n uint64
		rt.Codes(func(code int, c uint64) {
			if code == StatusClientClosed {
				n += c
			}
		})
		return n == 1
	})
	if got, trunc := rt.RecentErrors(); len(got) != 0 || trunc {
		t.Errorf("ring after a 499: %+v %v, want empty", got, trunc)
	}
}
