package admin

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"sluice/monitor"
)

// TestErrorsAPI: an upstream 500 on the fast route shows, with its fields,
// at the route's and the upstream's errors endpoints and in the route's
// summary; the other route has none; unknown names are 404 problem+json.
func TestErrorsAPI(t *testing.T) {
	f := newFixture(t, "")
	if code := status(t, f.proxyURL+"/fast/boom"); code != 500 {
		t.Fatalf("upstream failure answered %d, want 500", code)
	}
	status(t, f.proxyURL+"/fast") // a success records nothing

	up := f.p.Upstreams()[0].Targets()[0].URL.Host
	want := monitor.ErrorEntry{Time: f.clk.Now().UnixMilli(), Target: up, Status: 500, Kind: "5xx"}
	for _, path := range []string{"/api/v1/routes/fast/errors", "/api/v1/upstreams/api/errors"} {
		var got recentErrors
		if code := f.getJSON(t, path, "", &got); code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		if len(got.Errors) != 1 || got.Truncated {
			t.Fatalf("%s: %+v, want one entry, not truncated", path, got)
		}
		e := got.Errors[0]
		e.Detail = ""
		if e != want {
			t.Errorf("%s: entry %+v, want %+v", path, got.Errors[0], want)
		}
	}
	var none recentErrors
	if code := f.getJSON(t, "/api/v1/routes/slow/errors", "", &none); code != 200 || len(none.Errors) != 0 || none.Errors == nil {
		t.Errorf("slow route: %d %+v, want 200 and an empty list", code, none)
	}
	var rs []routeSummary
	f.getJSON(t, "/api/v1/routes", "", &rs)
	if len(rs) != 2 || len(rs[0].RecentErrors) != 1 || rs[0].RecentErrors[0].Kind != "5xx" || len(rs[1].RecentErrors) != 0 {
		t.Errorf("route summaries' recent_errors: %+v", rs)
	}
	for _, path := range []string{"/api/v1/routes/nope/errors", "/api/v1/upstreams/nope/errors"} {
		resp, err := http.Get(f.adminURL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, `"status":404`) {
			t.Errorf("%s: %d %q %s, want 404 problem+json", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
}

// TestErrorsAPIToken: with a token the errors endpoints need it.
func TestErrorsAPIToken(t *testing.T) {
	f := newFixture(t, "s3cret")
	for _, path := range []string{"/api/v1/routes/fast/errors", "/api/v1/upstreams/api/errors"} {
		if code := f.getJSON(t, path, "", nil); code != 401 {
			t.Errorf("%s without the token: %d, want 401", path, code)
		}
		if code := f.getJSON(t, path, "wrong", nil); code != 401 {
			t.Errorf("%s with a wrong token: %d, want 401", path, code)
		}
		if code := f.getJSON(t, path, "s3cret", nil); code != 200 {
			t.Errorf("%s with the token: %d, want 200", path, code)
		}
	}
}
