package e2e

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"sluice/config"
	"sluice/demo"
	"sluice/internal/testutil"
	"sluice/server"
)

// chromium is Debian's browser, which scripts/install-test-deps.sh
// installs; SLUICE_CHROMIUM names another binary.
var chromium = cmp.Or(os.Getenv("SLUICE_CHROMIUM"), "/usr/bin/chromium")

// updateScreenshot, when set to 1, makes the test also write its
// screenshot to docs/dashboard.png, after a minute of history.
const updateScreenshot = "SLUICE_UPDATE_SCREENSHOT"

// needChromium skips the test without a browser, except under CI, where a
// missing browser is a broken setup and must not pass as a skip.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but %s is missing (scripts/install-test-deps.sh installs it): %v", chromium, err)
		}
		t.Skipf("no browser at %s (scripts/install-test-deps.sh installs it): %v", chromium, err)
	}
}

// stack is a sluice in front of three upstreams shaped like the demo's:
// api is healthy; slow serves 4 at a time for 100 ms each (40 req/s);
// flaky answers 503 from 2 s to 6 s of every 10 s.
type stack struct {
	proxy, admin string // base URLs
	token        string
	redis        *testutil.Redis // the api route's global rate limit is shared through it
	srv          *server.Server
	configFile   string
	config       string // the YAML in configFile, without a server block
}

// writeConfig writes the config file with a server block of the given
// overload keys.
func (st *stack) writeConfig(t *testing.T, keys string) {
	t.Helper()
	yaml := `server: {listen: "127.0.0.1:0", shutdown_grace: 1s, access_log: false, ` + keys + "}\n" + st.config
	if err := os.WriteFile(st.configFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// setServer rewrites the config file's overload keys and reloads it.
func (st *stack) setServer(t *testing.T, keys string) {
	t.Helper()
	st.writeConfig(t, keys)
	if err := st.srv.Reload(); err != nil {
		t.Fatal(err)
	}
}

func startStack(t *testing.T) *stack {
	t.Helper()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"service":"api"}`)
	}))
	t.Cleanup(api.Close)
	slots := make(chan struct{}, 4)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		defer func() { <-slots }()
		select {
		case <-time.After(100 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, `{"service":"slow"}`)
	}))
	t.Cleanup(slow.Close)
	born := time.Now()
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if phase := time.Since(born) % (10 * time.Second); phase >= 2*time.Second && phase < 6*time.Second {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"service":"flaky"}`)
	}))
	t.Cleanup(flaky.Close)

	tok := make([]byte, 16)
	rand.Read(tok)
	st := &stack{token: hex.EncodeToString(tok), redis: testutil.StartRedis(t, testutil.RedisOptions{})}
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(st.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The saturation detector is off: on a CI box running other test
	// packages and the browser its scheduling latency is the host's, not
	// this stack's. The banner is shown by a memory limit, later.
	st.config = fmt.Sprintf(`
admin: {listen: "127.0.0.1:0", token_file: %q}
monitoring: {sample_interval: 50ms, samples: 40}
redis: {addrs: [%q], timeout: 100ms}
upstreams:
  - {name: api, targets: [%q]}
  - {name: slow, targets: [%q]}
  - name: flaky
    targets: [%q]
    breaker: {consecutive_failures: 3, open_timeout: 3s, half_open_requests: 2}
routes:
  - name: api
    match: {path_prefix: /api}
    upstream: api
    rate_limit: {rps: 200, burst: 400, scope: global, replicas: 2}
  - name: slow
    match: {path_prefix: /slow}
    upstream: slow
    rate_limit: {rps: 80, burst: 20}
    bulkhead: {max_concurrent: 4}
    queue: {max_depth: 8, max_wait: 250ms}
  - name: flaky
    match: {path_prefix: /flaky}
    upstream: flaky
    timeout: 5s
`, tokenFile, st.redis.Addr, api.URL, slow.URL, flaky.URL)
	st.configFile = filepath.Join(t.TempDir(), "sluice.yaml")
	st.writeConfig(t, "sched_latency_limit: 0")
	cfg, err := config.Load(st.configFile)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	srv, err := server.New(cfg, server.Options{Log: log, Stdout: io.Discard, Stderr: io.Discard, ConfigPath: st.configFile})
	if err != nil {
		t.Fatal(err)
	}
	st.srv = srv
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	st.proxy, st.admin = "http://"+srv.ProxyAddr(), "http://"+srv.AdminAddr()
	return st
}

// driveLoad sends open-loop load until the test ends: /slow ramps from
// half its upstream's capacity to three times it, and /flaky and /api get
// a steady trickle.
func driveLoad(t *testing.T, proxy string) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &demo.Load{
		Base:     proxy,
		Duration: 5 * time.Minute,
		Timeout:  3 * time.Second,
		Streams: []demo.Stream{
			{Path: "/slow/work", Rate: demo.Schedule{{At: 0, RPS: 20}, {At: 15 * time.Second, RPS: 120}}},
			{Path: "/flaky/thing", Rate: demo.Constant(20)},
			{Path: "/api/hello", Rate: demo.Constant(25)},
		},
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := l.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("load: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// page is what the test reads from the dashboard: the stable data
// attributes the page keeps for this purpose.
type page struct {
	Status   string   `json:"status"`
	Polls    int      `json:"polls"`
	Level    string   `json:"level"`
	Rejected int      `json:"rejected"`
	Reasons  []string `json:"reasons"`
	Breaker  string   `json:"breaker"`
	Routes   []string `json:"routes"`
	Store    string   `json:"store"`    // the api card's redis-down warning, "" when hidden
	Overload string   `json:"overload"` // the overload banner's text, "" when hidden
	OvlState string   `json:"ovl_state"`
}

const readPage = `(() => {
  const r = document.querySelector('[data-route="slow"]');
  const u = document.querySelector('[data-upstream="flaky"]');
  return {
    status: (document.body && document.body.dataset.status) || '',
    polls: Number((document.body && document.body.dataset.polls) || 0),
    level: r ? r.dataset.level : '',
    rejected: r ? Number(r.dataset.rejectedTotal || 0) : -1,
    reasons: r ? [...r.querySelectorAll('tr[data-reason]')].map((e) => e.dataset.reason) : [],
    breaker: u ? u.dataset.breakerState : '',
    routes: [...document.querySelectorAll('[data-route]')].map((e) => e.dataset.route),
    store: (() => {
      const el = document.querySelector('[data-route="api"] [data-f="store"]');
      return el && !el.hidden ? el.textContent : '';
    })(),
    overload: (() => {
      const el = document.getElementById('overload');
      return el && !el.hidden ? el.textContent : '';
    })(),
    ovl_state: (document.body && document.body.dataset.overload) || '',
  };
})()`

// waitFor polls the page until ok holds. It asserts nothing about how
// long that takes: only ctx (generous) bounds it.
func waitFor(t *testing.T, ctx context.Context, what string, ok func(page) bool) page {
	t.Helper()
	var last page
	for {
		p, err := chromedp.Run(ctx, chromedp.Evaluate[page](readPage))
		if err == nil {
			last = p
			if ok(p) {
				return p
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; the page last showed %+v", what, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestDashboardInBrowser loads the dashboard in headless Chromium, logs in
// with the admin token, drives load at a small slow route and watches the
// page turn that route red, count its rejections and show the flaky
// upstream's breaker open, the api route's Redis warning, and the
// process-level overload banner while a memory limit refuses.
func TestDashboardInBrowser(t *testing.T) {
	needChromium(t)
	update := os.Getenv(updateScreenshot) == "1"
	profile := t.TempDir() // removed after the browser has exited: cleanups run last-in first-out

	st := startStack(t)
	driveLoad(t, st.proxy)

	resp, err := http.Get(st.admin + "/api/v1/overview")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API without the token: %d, want 401", resp.StatusCode)
	}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1440, 900),
	)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser); err != nil { // starts the browser, bound to no timeout
		t.Fatalf("starting %s: %v", chromium, err)
	}
	limit := time.Minute
	if update {
		limit = 4 * time.Minute
	}
	ctx, cancel := context.WithTimeout(browser, limit)
	defer cancel()

	// Without the token the page explains how to log in.
	if err := chromedp.Do(ctx, chromedp.Navigate(st.admin+"/")); err != nil {
		t.Fatal(err)
	}
	login, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.getElementById('login') && !document.getElementById('routes')`))
	if err != nil || !login {
		t.Fatalf("GET / without the token did not show the login page (%v)", err)
	}

	// ?token= sets the cookie and redirects to the bare dashboard.
	messages := chromedp.Console(ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(st.admin+"/?token="+st.token)); err != nil {
		t.Fatal(err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || loc != st.admin+"/" {
		t.Fatalf("after logging in the browser is at %q (%v), want %s/", loc, err, st.admin)
	}
	var (
		mu       sync.Mutex // guards problems
		problems []string
	)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s %s:%d %s", m.Type, m.URL, m.Line+1, m.Text))
				mu.Unlock()
			}
		}
	}()

	p := waitFor(t, ctx, "the dashboard to go live", func(p page) bool { return p.Status == "live" && len(p.Routes) == 3 })
	if strings.Join(p.Routes, ",") != "api,slow,flaky" {
		t.Errorf("route cards %v, want api, slow, flaky in config order", p.Routes)
	}
	p = waitFor(t, ctx, "the slow route to show high", func(p page) bool { return p.Level == "high" })
	seen := p.Rejected
	p = waitFor(t, ctx, "the slow route's rejections to rise", func(p page) bool { return p.Rejected > seen && len(p.Reasons) > 0 })
	t.Logf("slow: %d rejected, by %v", p.Rejected, p.Reasons)
	waitFor(t, ctx, "the flaky breaker to show open", func(p page) bool { return p.Breaker == "open" })
	if p.Store != "" {
		t.Errorf("the api card warns %q with Redis up", p.Store)
	}
	// Routes refusing on their own limits are not the process overloaded.
	if p.OvlState != "normal" || p.Overload != "" {
		t.Errorf("overload state %q, banner %q; want normal and no banner", p.OvlState, p.Overload)
	}

	if update {
		// A minute of history in the charts, then the moment the story
		// is told: slow red and refusing, flaky's breaker open.
		waitFor(t, ctx, "a minute of history with slow high and flaky open", func(p page) bool {
			return p.Polls >= 60 && p.Level == "high" && p.Breaker == "open"
		})
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if update {
		if err := os.MkdirAll("../docs", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../docs/dashboard.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote docs/dashboard.png")
	}

	// With Redis gone the api route's card says it limits locally, to its
	// share of the global limit, and says nothing once Redis is back.
	st.redis.Kill()
	p = waitFor(t, ctx, "the api card to warn that Redis is down", func(p page) bool { return p.Store != "" })
	if want := "redis down: limiting locally to 100/s, burst 200"; p.Store != want {
		t.Errorf("api card: %q, want %q", p.Store, want)
	}
	st.redis.Start()
	waitFor(t, ctx, "the warning to go once Redis is back", func(p page) bool { return p.Store == "" })

	// A heap over server.memory_limit is the process overloaded: the
	// banner says so while the door refuses, and goes once the limit is
	// lifted.
	st.setServer(t, "sched_latency_limit: 0, memory_limit: 1")
	p = waitFor(t, ctx, "the overload banner", func(p page) bool { return p.OvlState == "shedding" })
	if !strings.HasPrefix(p.Overload, "overloaded: heap ") || !strings.HasSuffix(p.Overload, " over the memory limit of 1 B: refusing new requests") {
		t.Errorf("overload banner %q, want the heap over the memory limit of 1 B", p.Overload)
	}
	st.setServer(t, "sched_latency_limit: 0")
	p = waitFor(t, ctx, "the banner to go with the limit", func(p page) bool { return p.OvlState == "normal" })
	if p.Overload != "" {
		t.Errorf("overload banner %q after the limit was lifted, want none", p.Overload)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, pr := range problems {
		t.Errorf("browser console: %s", pr)
	}
}
