package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// The dashboard is one HTML page, a script and a stylesheet, embedded as
// written: no framework, no CDN, no build step. The script polls the JSON
// API once a second (same origin, so the login cookie goes with it) and
// redraws in place; it keeps its own five-minute history for the charts.
//
//go:embed ui/index.html ui/dashboard.js ui/dashboard.css
var uiFiles embed.FS

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// uiAssets are the files under /ui/, read once.
var uiAssets = map[string]asset{
	"dashboard.js":  loadAsset("dashboard.js", "text/javascript; charset=utf-8"),
	"dashboard.css": loadAsset("dashboard.css", "text/css; charset=utf-8"),
}

var indexPage = loadAsset("index.html", "text/html; charset=utf-8")

func loadAsset(name, contentType string) asset {
	b, err := uiFiles.ReadFile("ui/" + name)
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	sum := sha256.Sum256(b)
	return asset{body: b, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// dashboardCSP keeps the page to its own script, style and API: no
// inline script, nothing from elsewhere, never framed.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (s *Server) dashboardRoutes() {
	s.mux.HandleFunc("GET /{$}", s.dashboard)
	s.mux.Handle("GET /ui/{file}", s.authed(http.HandlerFunc(serveAsset)))
}

// dashboard serves the page at /. With a token configured it also logs
// the browser in: GET /?token=<token> sets the cookie and redirects (303)
// to /, so the token leaves the address bar and the history entry at once.
func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("token") {
		if s.o.Token != "" && !s.tokenMatches(q.Get("token")) {
			s.loginPage(w, "That token is not the one in admin.token_file.")
			return
		}
		if s.o.Token != "" {
			http.SetCookie(w, &http.Cookie{
				Name:     tokenCookie,
				Value:    tokenCookieValue(s.o.Token),
				Path:     "/",
				HttpOnly: true,                    // scripts never see it
				SameSite: http.SameSiteStrictMode, // other sites cannot ride on it
				Secure:   r.TLS != nil,
			})
		}
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if s.o.Token != "" && !s.hasToken(r) {
		s.loginPage(w, "")
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", indexPage.contentType)
	_, _ = w.Write(indexPage.body)
}

func serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := uiAssets[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache") // revalidate: cheap with the ETag, never stale after an upgrade
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// loginPage answers 401 with a page that says how to log in. It echoes
// nothing from the request.
func (s *Server) loginPage(w http.ResponseWriter, problem string) {
	h := w.Header()
	h.Set("WWW-Authenticate", `Bearer realm="sluice admin"`)
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	msg := ""
	if problem != "" {
		msg = `<p class="err" id="login-error">` + problem + `</p>`
	}
	_, _ = w.Write([]byte(strings.Replace(loginHTML, "{{error}}", msg, 1)))
}

const loginHTML = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice admin: log in</title>
<style>
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1f2933;margin:0}
main{max-width:34rem;margin:12vh auto;background:#fff;border-radius:10px;padding:2rem 2.25rem;box-shadow:0 1px 3px #0002}
h1{font-size:1.3rem;margin:0 0 .75rem}
code{background:#eef0f3;border-radius:4px;padding:.1em .35em;font-size:.92em}
form{display:flex;gap:.5rem;margin:1.25rem 0}
input{flex:1;font:inherit;padding:.45rem .6rem;border:1px solid #c5cbd3;border-radius:6px}
button{font:inherit;padding:.45rem 1rem;border:0;border-radius:6px;background:#1c7ed6;color:#fff;cursor:pointer}
.err{color:#c92a2a;font-weight:600}
.muted{color:#616e7c;font-size:.9rem}
</style>
<main id="login">
<h1>sluice admin</h1>
<p>This admin listener is protected by the token in <code>admin.token_file</code>.</p>
{{error}}
<form method="get" action="/">
<input id="token" name="token" type="password" placeholder="admin token" autocomplete="current-password" required autofocus>
<button type="submit">Open dashboard</button>
</form>
<p class="muted">Or open <code>/?token=&lt;token&gt;</code>: sluice sets an HttpOnly cookie and sends you on to
<code>/</code>. API clients send <code>Authorization: Bearer &lt;token&gt;</code>.
<code>/healthz</code>, <code>/readyz</code> and <code>/metrics</code> need no token.</p>
</main>
`
