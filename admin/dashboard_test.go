package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type answer struct {
	code   int
	header http.Header
	body   string
}

func get(t *testing.T, url string, mod func(*http.Request)) answer {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(req)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func cookie(v string) func(*http.Request) {
	return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: tokenCookie, Value: v}) }
}

func TestDashboardServed(t *testing.T) {
	f := newFixture(t, "")
	a := get(t, f.adminURL+"/", nil)
	if a.code != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q", a.code, a.header.Get("Content-Type"))
	}
	for _, want := range []string{`id="routes"`, `id="upstreams"`, `src="/ui/dashboard.js"`, `href="/ui/dashboard.css"`, `id="route-card"`, `id="overload"`} {
		if !strings.Contains(a.body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	csp := a.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q: want scripts from this origin only", csp)
	}
	for file, ctype := range map[string]string{"dashboard.js": "text/javascript", "dashboard.css": "text/css"} {
		a := get(t, f.adminURL+"/ui/"+file, nil)
		if a.code != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), ctype) || len(a.body) < 1000 {
			t.Errorf("/ui/%s: %d %q, %d bytes", file, a.code, a.header.Get("Content-Type"), len(a.body))
		}
		etag := a.header.Get("ETag")
		if again := get(t, f.adminURL+"/ui/"+file, func(r *http.Request) { r.Header.Set("If-None-Match", etag) }); etag == "" || again.code != 304 {
			t.Errorf("/ui/%s revalidated with ETag %q: %d, want 304", file, etag, again.code)
		}
	}
	for _, path := range []string{"/ui/index.html", "/ui/", "/ui/dashboard.js.map", "/nope"} {
		if a := get(t, f.adminURL+path, nil); a.code != 404 {
			t.Errorf("%s: %d, want 404", path, a.code)
		}
	}
	// Without a token to check, ?token= is only taken out of the address bar.
	if a := get(t, f.adminURL+"/?token=x", nil); a.code != 303 || a.header.Get("Location") != "/" || a.header.Get("Set-Cookie") != "" {
		t.Errorf("/?token= without admin.token_file: %d Location %q Set-Cookie %q", a.code, a.header.Get("Location"), a.header.Get("Set-Cookie"))
	}
}

// TestDashboardLogin walks the browser's way in: the page without the
// token explains how to log in, ?token= sets the cookie and redirects, and
// the cookie then opens the page, its assets and the API.
func TestDashboardLogin(t *testing.T) {
	f := newFixture(t, "s3cret")

	a := get(t, f.adminURL+"/", nil)
	if a.code != 401 || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") ||
		!strings.Contains(a.body, "admin.token_file") || !strings.Contains(a.body, `name="token"`) {
		t.Errorf("GET / without the token: %d %q\n%s", a.code, a.header.Get("Content-Type"), a.body)
	}
	if !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate %q", a.header.Get("WWW-Authenticate"))
	}
	for _, path := range []string{"/api/v1/overview", "/ui/dashboard.js"} {
		if a := get(t, f.adminURL+path, nil); a.code != 401 || a.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s without the token: %d %q", path, a.code, a.header.Get("Content-Type"))
		}
	}

	a = get(t, f.adminURL+"/?token=wrong", nil)
	if a.code != 401 || a.header.Get("Set-Cookie") != "" || !strings.Contains(a.body, `id="login-error"`) || strings.Contains(a.body, "wrong") {
		t.Errorf("wrong ?token=: %d Set-Cookie %q\n%s", a.code, a.header.Get("Set-Cookie"), a.body)
	}

	a = get(t, f.adminURL+"/?token=s3cret", nil)
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Fatalf("?token=s3cret: %d Location %q, want 303 to /", a.code, a.header.Get("Location"))
	}
	resp := http.Response{Header: a.header}
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != tokenCookie || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode || cs[0].Path != "/" || cs[0].Secure {
		t.Fatalf("login cookie %q, want sluice_admin_token HttpOnly SameSite=Strict Path=/ (not Secure over plain HTTP)", a.header.Values("Set-Cookie"))
	}
	if got := a.header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("Referrer-Policy %q on the login redirect", got)
	}
	withCookie := cookie(cs[0].Value)
	if a := get(t, f.adminURL+"/", withCookie); a.code != 200 || !strings.Contains(a.body, `id="routes"`) {
		t.Errorf("GET / with the cookie: %d", a.code)
	}
	for _, path := range []string{"/api/v1/overview", "/api/v1/routes/slow", "/api/v1/upstreams", "/ui/dashboard.js"} {
		if a := get(t, f.adminURL+path, withCookie); a.code != 200 {
			t.Errorf("%s with the cookie: %d", path, a.code)
		}
	}

	if a := get(t, f.adminURL+"/", cookie("wrong")); a.code != 401 || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
		t.Errorf("GET / with a wrong cookie: %d %q", a.code, a.header.Get("Content-Type"))
	}
	if a := get(t, f.adminURL+"/api/v1/overview", cookie("wrong")); a.code != 401 || a.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("API with a wrong cookie: %d %q", a.code, a.header.Get("Content-Type"))
	}
	for _, path := range []string{"/", "/api/v1/overview"} {
		if a := get(t, f.adminURL+path, bearer("s3cret")); a.code != 200 {
			t.Errorf("%s with the bearer header: %d", path, a.code)
		}
		lower := func(r *http.Request) { r.Header.Set("Authorization", "bearer s3cret") }
		if a := get(t, f.adminURL+path, lower); a.code != 200 {
			t.Errorf("%s with a lower-case bearer scheme: %d", path, a.code)
		}
	}
	// Tokens travel in URLs only to log a browser in: the API ignores them.
	if a := get(t, f.adminURL+"/api/v1/overview?token=s3cret", nil); a.code != 401 {
		t.Errorf("API with ?token=: %d, want 401", a.code)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if a := get(t, f.adminURL+path, nil); a.code != 200 {
			t.Errorf("%s must stay open: %d", path, a.code)
		}
	}
}

func TestMetricsStayOpenWithToken(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "# metrics\n") })
	s := httptest.NewServer(New(Options{Token: "s3cret", Metrics: metrics}))
	defer s.Close()
	if a := get(t, s.URL+"/metrics", nil); a.code != 200 {
		t.Errorf("/metrics with a token configured: %d, want 200", a.code)
	}
}

// TestLoginCookieOddToken: whatever bytes the token file holds, the
// cookie the login sets carries it and lets the browser in.
func TestLoginCookieOddToken(t *testing.T) {
	for _, tok := range []string{"tok en;with\"odd\\bytes,é%41", "abc+/=", "0123456789abcdef"} {
		s := httptest.NewServer(New(Options{Token: tok}))
		a := get(t, s.URL+"/?token="+url.QueryEscape(tok), nil)
		resp := http.Response{Header: a.header}
		cs := resp.Cookies()
		if a.code != 303 || len(cs) != 1 {
			t.Errorf("token %q: login %d, cookies %q", tok, a.code, a.header.Values("Set-Cookie"))
			s.Close()
			continue
		}
		if a := get(t, s.URL+"/", cookie(cs[0].Value)); a.code != 200 {
			t.Errorf("token %q: GET / with cookie %q: %d", tok, cs[0].Value, a.code)
		}
		if a := get(t, s.URL+"/?token="+url.QueryEscape(tok+"x"), nil); a.code != 401 {
			t.Errorf("token %q: a longer guess logged in: %d", tok, a.code)
		}
		s.Close()
	}
}
