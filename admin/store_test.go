package admin

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sluice/config"
	"sluice/internal/testutil"
	"sluice/proxy"
)

// TestStoreStateReported: a global limit's route detail and the metrics say
// whether its Redis answers, how many commands failed, and the local share
// it falls back to; both follow Redis going away and coming back.
func TestStoreStateReported(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(up.Close)
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
redis: {addrs: [%q], timeout: 100ms}
upstreams: [{name: api, targets: [%q]}]
routes:
  - {name: shared, match: {path_prefix: /}, upstream: api, rate_limit: {rps: 90, burst: 9, scope: global, replicas: 3}}
  - {name: mine, match: {path_prefix: /mine}, upstream: api, rate_limit: {rps: 5}}
`, r.Addr, up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(cfg, proxy.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Collector())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/", New(Options{Proxy: p, Config: func() *config.Config { return cfg }, Version: "test", Started: time.Now()}))
	as := httptest.NewServer(mux)
	ps := httptest.NewServer(p)
	t.Cleanup(func() { as.Close(); ps.Close(); p.Close() })
	f := &fixture{adminURL: as.URL}

	type detail struct {
		RateLimit struct {
			Scope string `json:"scope"`
			Store *struct {
				Up            bool    `json:"up"`
				ErrorsTotal   uint64  `json:"errors_total"`
				LastError     string  `json:"last_error"`
				FallbackRPS   float64 `json:"fallback_rps"`
				FallbackBurst int     `json:"fallback_burst"`
			} `json:"store"`
		} `json:"rate_limit"`
	}
	read := func(route string) detail {
		var d detail
		if code := f.getJSON(t, "/api/v1/routes/"+route, "", &d); code != 200 {
			t.Fatalf("route %s: %d", route, code)
		}
		return d
	}
	metric := func(name string) string {
		resp, err := http.Get(as.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				return v
			}
		}
		return "absent"
	}
	if d := read("mine"); d.RateLimit.Scope != "local" || d.RateLimit.Store != nil {
		t.Errorf("local route: %+v", d.RateLimit)
	}
	d := read("shared")
	if st := d.RateLimit.Store; d.RateLimit.Scope != "global" || st == nil || !st.Up || st.ErrorsTotal != 0 || st.FallbackRPS != 30 || st.FallbackBurst != 3 {
		t.Fatalf("global route with Redis up: scope %q store %+v", d.RateLimit.Scope, st)
	}
	if got := metric("sluice_ratelimit_store_up"); got != "1" {
		t.Errorf("sluice_ratelimit_store_up = %s, want 1", got)
	}
	if got := metric("sluice_ratelimit_store_errors_total"); got != "0" {
		t.Errorf("sluice_ratelimit_store_errors_total = %s, want 0", got)
	}

	r.Kill()
	// The lease in hand expires after 100ms; the next take finds Redis gone.
	testutil.WaitFor(t, "store down", func() bool {
		resp, err := http.Get(ps.URL + "/x")
		if err == nil {
			resp.Body.Close()
		}
		return !p.Store().Up()
	})
	d = read("shared")
	if st := d.RateLimit.Store; st.Up || st.ErrorsTotal == 0 || st.LastError == "" {
		t.Errorf("global route with Redis down: %+v", st)
	}
	if got := metric("sluice_ratelimit_store_up"); got != "0" {
		t.Errorf("sluice_ratelimit_store_up = %s with Redis down, want 0", got)
	}
	if got := metric("sluice_ratelimit_store_errors_total"); got == "0" || got == "absent" {
		t.Errorf("sluice_ratelimit_store_errors_total = %s with Redis down", got)
	}
	r.Start()
	testutil.WaitFor(t, "store up", p.Store().Up)
	if got := metric("sluice_ratelimit_store_up"); got != "1" {
		t.Errorf("sluice_ratelimit_store_up = %s after Redis came back, want 1", got)
	}
}
