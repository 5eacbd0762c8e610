package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func loadTestdata(t *testing.T, name string) *Config {
	t.Helper()
	cfg, err := Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("Load(%s):\n%v", name, err)
	}
	return cfg
}

// diff lists the fields where got and want differ, by key path, so a
// failure names the key rather than dumping two whole configs.
func diff(path string, got, want reflect.Value) []string {
	if got.Type() == reflect.TypeFor[*url.URL]() {
		if fmt.Sprint(got.Interface()) != fmt.Sprint(want.Interface()) {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got.Interface(), want.Interface())}
		}
		return nil
	}
	switch got.Kind() {
	case reflect.Pointer:
		if got.IsNil() || want.IsNil() {
			if got.IsNil() != want.IsNil() {
				return []string{fmt.Sprintf("%s: got nil=%v, want nil=%v", path, got.IsNil(), want.IsNil())}
			}
			return nil
		}
		return diff(path, got.Elem(), want.Elem())
	case reflect.Struct:
		var out []string
		for i := range got.NumField() {
			f := got.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			out = append(out, diff(path+"."+f.Name, got.Field(i), want.Field(i))...)
		}
		return out
	case reflect.Slice:
		if got.Len() != want.Len() {
			return []string{fmt.Sprintf("%s: got %d elements %v, want %d %v", path, got.Len(), got.Interface(), want.Len(), want.Interface())}
		}
		var out []string
		for i := range got.Len() {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), got.Index(i), want.Index(i))...)
		}
		return out
	default:
		if !reflect.DeepEqual(got.Interface(), want.Interface()) {
			return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got.Interface(), want.Interface())}
		}
		return nil
	}
}

func checkConfig(t *testing.T, got, want *Config) {
	t.Helper()
	for _, d := range diff("Config", reflect.ValueOf(got), reflect.ValueOf(want)) {
		t.Error(d)
	}
}

// TestFull loads a config that writes every key with a non-default value
// and checks that each field holds what was written (normalised where
// validation normalises: host lower case, methods upper case, header name
// canonical, burst derived from rps when not written).
func TestFull(t *testing.T) {
	got := loadTestdata(t, "full.yaml")
	want := &Config{
		Server: Server{
			Listen:            ":18080",
			ReadHeaderTimeout: 3 * time.Second,
			IdleTimeout:       90 * time.Second,
			MaxHeaderBytes:    65536,
			ShutdownGrace:     10 * time.Second,
			AccessLog:         false,
			MaxConnections:    20000,
			MaxInflight:       5000,
			SchedLatencyLimit: 25 * time.Millisecond,
			MemoryLimit:       MemoryLimit{Bytes: 1536 << 20, Resolved: 1536 << 20},
		},
		TLS: &TLS{
			Listen: ":18443",
			ACME: &ACME{
				Domains: []string{"api.example.com", "*.apps.example.com"},
				Email:   "ops@example.com",
				CA:      "https://acme-staging-v02.api.letsencrypt.org/directory",
				CARoot:  "/etc/sluice/acme-root.pem",
				Storage: "/var/lib/sluice/certs",
			},
			CertFile:     "",
			KeyFile:      "",
			RedirectHTTP: false,
		},
		Admin: Admin{Listen: "127.0.0.1:19901", TokenFile: "/etc/sluice/admin-token"},
		Tracing: Tracing{
			Exporter:    "otlp",
			Endpoint:    "otel-collector:4318",
			Protocol:    "http/protobuf",
			SampleRatio: 0.25,
			ServiceName: "edge-proxy",
		},
		Monitoring: Monitoring{SampleInterval: 100 * time.Millisecond, Samples: 200},
		Redis: &Redis{
			Addrs:        []string{"redis-0.redis:6379", "redis-1.redis:6379"},
			Username:     "sluice",
			PasswordFile: "/etc/sluice/redis-password",
			TLS:          true,
			CAFile:       "/etc/sluice/redis-ca.pem",
			DialTimeout:  300 * time.Millisecond,
			Timeout:      3 * time.Millisecond,
			PoolSize:     32,
			FailOpen:     true,
		},
		Upstreams: []Upstream{
			{
				Name:                  "users",
				Targets:               []string{"http://127.0.0.1:9001", "https://users.internal:9443/v1"},
				Balance:               "least_inflight",
				ConnectTimeout:        time.Second,
				ResponseHeaderTimeout: 15 * time.Second,
				MaxIdleConns:          64,
				HealthCheck:           &HealthCheck{Path: "/ready", Interval: 10 * time.Second, Timeout: 2 * time.Second, UnhealthyAfter: 4, HealthyAfter: 1},
				Breaker: &Breaker{
					ConsecutiveFailures: 7,
					FailureRatio:        0.6,
					MinRequests:         40,
					Window:              20 * time.Second,
					OpenTimeout:         45 * time.Second,
					HalfOpenRequests:    5,
					FailureStatuses:     []int{500, 502},
					Shared:              true,
				},
				TargetURLs: []*url.URL{mustURL(t, "http://127.0.0.1:9001"), mustURL(t, "https://users.internal:9443/v1")},
			},
			{
				Name:    "static",
				Targets: []string{"http://127.0.0.1:9100"},
				Balance: "p2c",
				// Not written: defaults.
				ConnectTimeout:        2 * time.Second,
				ResponseHeaderTimeout: 10 * time.Second,
				MaxIdleConns:          256,
				TargetURLs:            []*url.URL{mustURL(t, "http://127.0.0.1:9100")},
			},
		},
		Routes: []Route{
			{
				Name:         "users-api",
				Match:        Match{Host: "api.example.com", PathPrefix: "/users", Methods: []string{"GET", "POST"}},
				Upstream:     "users",
				StripPrefix:  true,
				Timeout:      5 * time.Second,
				MaxBodyBytes: 1048576,
				RateLimit:    &RateLimit{RPS: 2.5, Burst: 10, Key: "header:X-Api-Key", MaxKeys: 5000, Scope: "global", Replicas: 3},
				Bulkhead:     &Bulkhead{MaxConcurrent: 20, Adaptive: &Adaptive{Algorithm: "aimd", Min: 4, Max: 64}},
				Queue: Queue{MaxDepth: 0, MaxWait: time.Second, Discipline: "codel",
					CoDel: CoDel{Target: 10 * time.Millisecond, Interval: 200 * time.Millisecond}},
				Priority: &Priority{Class: "sheddable", Header: "X-Priority",
					ShedAt: ShedAt{Critical: 0.9, Default: 0.7, Sheddable: 0.3}},
			},
			{
				Name:      "health",
				Match:     Match{Path: "/status"},
				Upstream:  "static",
				Timeout:   0,
				RateLimit: &RateLimit{RPS: 2.5, Burst: 3, Key: "client_ip", MaxKeys: 100000, Scope: "local"},
				Queue:     defaultQueue,
			},
		},
		File: filepath.Join("testdata", "full.yaml"),
	}
	checkConfig(t, got, want)
}

// TestMinimalDefaults checks every documented default, written out here
// rather than taken from setDefaults, so a changed default fails a test.
func TestMinimalDefaults(t *testing.T) {
	got := loadTestdata(t, "minimal.yaml")
	want := &Config{
		Server: Server{
			Listen:            ":8080",
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    1048576,
			ShutdownGrace:     30 * time.Second,
			AccessLog:         true,
			SchedLatencyLimit: 10 * time.Millisecond,
		},
		TLS:   nil,
		Admin: Admin{Listen: "127.0.0.1:9901", TokenFile: ""},
		Tracing: Tracing{
			Exporter:    "none",
			Endpoint:    "localhost:4317",
			Protocol:    "grpc",
			SampleRatio: 1.0,
			ServiceName: "sluice",
		},
		Monitoring: Monitoring{SampleInterval: 50 * time.Millisecond, Samples: 100},
		Upstreams: []Upstream{{
			Name:                  "app",
			Targets:               []string{"http://127.0.0.1:9001"},
			Balance:               "round_robin",
			ConnectTimeout:        2 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			MaxIdleConns:          256,
			HealthCheck:           nil,
			Breaker:               nil,
			TargetURLs:            []*url.URL{mustURL(t, "http://127.0.0.1:9001")},
		}},
		Routes: []Route{{
			Name:        "all",
			Match:       Match{Host: "", PathPrefix: "/", Path: "", Methods: nil},
			Upstream:    "app",
			StripPrefix: false,
			Timeout:     30 * time.Second,
			RateLimit:   nil,
			Bulkhead:    nil,
			Queue:       defaultQueue,
		}},
		File: filepath.Join("testdata", "minimal.yaml"),
	}
	checkConfig(t, got, want)
}

// TestBlockDefaults checks the defaults of the optional blocks, which only
// exist once their key is written.
func TestBlockDefaults(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`
tls:
  acme:
    domains: [example.com]
upstreams:
  - name: app
    targets: ["http://127.0.0.1:9001"]
    health_check: {}
    breaker: {}
routes:
  - name: all
    match: {path_prefix: /}
    upstream: app
    rate_limit: {rps: 7.2}
    bulkhead: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	tls := &TLS{
		Listen: ":8443",
		ACME: &ACME{
			Domains: []string{"example.com"},
			Email:   "",
			CA:      "https://acme-v02.api.letsencrypt.org/directory",
			CARoot:  "",
			Storage: "./sluice-data/certs",
		},
		CertFile:     "",
		KeyFile:      "",
		RedirectHTTP: true,
	}
	for _, d := range diff("TLS", reflect.ValueOf(cfg.TLS), reflect.ValueOf(tls)) {
		t.Error(d)
	}
	hc := &HealthCheck{Path: "/healthz", Interval: 5 * time.Second, Timeout: time.Second, UnhealthyAfter: 3, HealthyAfter: 2}
	for _, d := range diff("HealthCheck", reflect.ValueOf(cfg.Upstreams[0].HealthCheck), reflect.ValueOf(hc)) {
		t.Error(d)
	}
	br := &Breaker{
		ConsecutiveFailures: 5,
		FailureRatio:        0.5,
		MinRequests:         20,
		Window:              10 * time.Second,
		OpenTimeout:         30 * time.Second,
		HalfOpenRequests:    3,
		FailureStatuses:     []int{502, 503, 504},
	}
	for _, d := range diff("Breaker", reflect.ValueOf(cfg.Upstreams[0].Breaker), reflect.ValueOf(br)) {
		t.Error(d)
	}
	// Burst defaults to rps rounded up.
	rl := &RateLimit{RPS: 7.2, Burst: 8, Key: "none", MaxKeys: 100000, Scope: "local"}
	for _, d := range diff("RateLimit", reflect.ValueOf(cfg.Routes[0].RateLimit), reflect.ValueOf(rl)) {
		t.Error(d)
	}
	bh := &Bulkhead{MaxConcurrent: 50}
	for _, d := range diff("Bulkhead", reflect.ValueOf(cfg.Routes[0].Bulkhead), reflect.ValueOf(bh)) {
		t.Error(d)
	}
}

// TestSpecExample keeps the example of docs/SPEC.md, "Config (YAML)", loadable.
func TestSpecExample(t *testing.T) {
	cfg := loadTestdata(t, "spec_example.yaml")
	if got := cfg.Routes[0].RateLimit.Burst; got != 200 {
		t.Errorf("burst = %d, want 200", got)
	}
}

// TestSliceElementsStartFromDefaults checks that each upstream and route
// gets its own defaults, and that a written list replaces a default list.
func TestSliceElementsStartFromDefaults(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`
upstreams:
  - name: a
    targets: ["http://127.0.0.1:1"]
    max_idle_conns: 1
    breaker: {failure_statuses: [500]}
  - name: b
    targets: ["http://127.0.0.1:2"]
    breaker: {}
routes:
  - name: r1
    match: {path: /a}
    upstream: a
    queue: {max_depth: 3}
    bulkhead: {max_concurrent: 1}
  - name: r2
    match: {path: /b}
    upstream: b
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Upstreams[1].MaxIdleConns; got != 256 {
		t.Errorf("upstreams[1].max_idle_conns = %d, want the default 256", got)
	}
	if got := cfg.Upstreams[0].Breaker.FailureStatuses; !reflect.DeepEqual(got, []int{500}) {
		t.Errorf("upstreams[0].breaker.failure_statuses = %v, want [500]", got)
	}
	if got := cfg.Upstreams[1].Breaker.FailureStatuses; !reflect.DeepEqual(got, []int{502, 503, 504}) {
		t.Errorf("upstreams[1].breaker.failure_statuses = %v, want the default", got)
	}
	want3 := defaultQueue
	want3.MaxDepth = 3
	if got := cfg.Routes[0].Queue; got != want3 {
		t.Errorf("routes[0].queue = %+v, want max_depth 3 and the default max_wait", got)
	}
	if got := cfg.Routes[1].Queue; got != defaultQueue {
		t.Errorf("routes[1].queue = %+v, want defaults", got)
	}
}

// TestNullKeepsDefault checks that a key written without a value, or as ~,
// behaves as if it were absent.
func TestNullKeepsDefault(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`
server:
  listen:
  idle_timeout: ~
tls:
admin:
upstreams:
  - name: a
    targets: ["http://127.0.0.1:1"]
    breaker:
routes:
  - name: r
    match: {path: /a}
    upstream: a
    rate_limit: {rps: 10, burst: ~}
    queue:
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != ":8080" || cfg.Server.IdleTimeout != 60*time.Second {
		t.Errorf("server = %+v, want defaults", cfg.Server)
	}
	if cfg.TLS != nil || cfg.Upstreams[0].Breaker != nil {
		t.Error("a null optional block must stay disabled")
	}
	if got := cfg.Routes[0].RateLimit.Burst; got != 10 {
		t.Errorf("burst = %d, want 10 derived from rps", got)
	}
}

func TestAliasesAreResolved(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`
upstreams:
  - name: a
    targets: &targets ["http://127.0.0.1:1"]
  - name: b
    targets: *targets
routes:
  - name: r1
    match: {path: /a}
    upstream: a
    rate_limit: &rl {rps: 5, key: client_ip}
  - name: r2
    match: {path: /b}
    upstream: b
    rate_limit: *rl
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Upstreams[1].Targets; !reflect.DeepEqual(got, []string{"http://127.0.0.1:1"}) {
		t.Errorf("upstreams[1].targets = %v", got)
	}
	if got := *cfg.Routes[1].RateLimit; got != (RateLimit{RPS: 5, Burst: 5, Key: "client_ip", MaxKeys: 100000, Scope: "local"}) {
		t.Errorf("routes[1].rate_limit = %+v", got)
	}
	if cfg.Routes[0].RateLimit == cfg.Routes[1].RateLimit {
		t.Error("an alias must decode into a value of its own")
	}
}

func TestPos(t *testing.T) {
	cfg := loadTestdata(t, "minimal.yaml")
	tests := []struct {
		path string
		want Pos
		ok   bool
	}{
		{"upstreams", Pos{3, 1}, true},
		{"upstreams[0]", Pos{4, 5}, true},
		{"upstreams[0].name", Pos{4, 11}, true},
		{"upstreams[0].targets", Pos{5, 5}, true},
		{"upstreams[0].targets[0]", Pos{5, 15}, true},
		{"routes[0].match", Pos{8, 5}, true},
		{"routes[0].match.path_prefix", Pos{8, 26}, true},
		{"routes[0].upstream", Pos{9, 15}, true},
		{"routes[0].timeout", Pos{}, false},
		{"server", Pos{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, ok := cfg.Pos(tt.path)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Pos(%q) = %v, %v; want %v, %v", tt.path, got, ok, tt.want, tt.ok)
			}
		})
	}
	if got := cfg.pos.nearest("routes[0].rate_limit.rps"); got != (Pos{7, 5}) {
		t.Errorf("nearest(routes[0].rate_limit.rps) = %v, want routes[0] at 7:5", got)
	}
	if got := cfg.pos.nearest("server.listen"); got != (Pos{1, 1}) {
		t.Errorf("nearest(server.listen) = %v, want 1:1", got)
	}
}

// TestEveryFieldIsAKey guards the decoder's reliance on yaml tags: an
// exported field without one would silently never be decoded.
func TestEveryFieldIsAKey(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ.PkgPath() != reflect.TypeFor[Config]().PkgPath() || seen[typ] {
			return
		}
		seen[typ] = true
		if _, ok := reflect.New(typ).Interface().(defaulter); !ok {
			t.Errorf("%s does not implement defaulter", typ)
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() {
				continue
			}
			if tag := f.Tag.Get("yaml"); tag == "" {
				t.Errorf("%s.%s has no yaml tag", typ.Name(), f.Name)
			} else if tag != "-" {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
}

func TestLoadReadError(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load error %v does not wrap the read error", err)
	}
	if _, ok := err.(Errors); ok {
		t.Errorf("a read error must not be reported as config Errors")
	}
	if !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load error %q does not name the file", err)
	}
}

func TestPublicRedacts(t *testing.T) {
	c, err := Parse("t.yaml", []byte(`
admin: {token_file: /etc/sluice/token}
tracing: {exporter: otlp, endpoint: "https://user:pw@collector:4318"}
upstreams: [{name: u, targets: ["http://127.0.0.1:1"]}]
routes: [{name: r, match: {path: /}, upstream: u, timeout: 250ms}]
`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Public()
	if err != nil {
		t.Fatal(err)
	}
	admin := m["admin"].(map[string]any)
	if admin["token_file"] != "(redacted)" {
		t.Errorf("token_file = %v", admin["token_file"])
	}
	if ep := m["tracing"].(map[string]any)["endpoint"]; ep != "https://collector:4318" {
		t.Errorf("endpoint = %v", ep)
	}
	r := m["routes"].([]any)[0].(map[string]any)
	if r["timeout"] != "250ms" || r["name"] != "r" {
		t.Errorf("route = %v", r)
	}
	if c.Admin.TokenFile != "/etc/sluice/token" {
		t.Error("Public changed the config itself")
	}
	if _, ok := m["File"]; ok {
		t.Error("internal field exported")
	}
}

// defaultQueue is the queue block with every documented default.
var defaultQueue = Queue{MaxDepth: 100, MaxWait: 250 * time.Millisecond, Discipline: "fifo",
	CoDel: CoDel{Target: 5 * time.Millisecond, Interval: 100 * time.Millisecond}}

// TestPriorityAdaptiveDefaults checks the defaults of the priority and adaptive blocks.
func TestPriorityAdaptiveDefaults(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`
upstreams: [{name: u, targets: ["http://127.0.0.1:1"]}]
routes:
  - {name: r, match: {path: /}, upstream: u, bulkhead: {adaptive: {}}, priority: {}}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if got := *r.Bulkhead.Adaptive; got != (Adaptive{Algorithm: "gradient2", Min: 1, Max: 1000}) {
		t.Errorf("adaptive defaults %+v", got)
	}
	if got := *r.Priority; got != (Priority{Class: "default", ShedAt: ShedAt{Critical: 1, Default: 0.8, Sheddable: 0.5}}) {
		t.Errorf("priority defaults %+v", got)
	}
}
