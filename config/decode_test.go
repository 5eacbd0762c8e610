package config

import (
	"errors"
	"strings"
	"testing"
)

// base is a valid config of 7 lines; cases put their own lines before it,
// so their line numbers read directly off the case.
const base = `upstreams:
  - name: users
    targets: ["http://127.0.0.1:9001"]
routes:
  - name: users-api
    match: {path_prefix: /users}
    upstream: users
`

// checkErrors parses src as "t.yaml" and compares the errors, without the
// "t.yaml:" prefix, with want.
func checkErrors(t *testing.T, src string, want ...string) {
	t.Helper()
	cfg, err := Parse("t.yaml", []byte(src))
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected errors:\n%v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error; want\n%s", strings.Join(want, "\n"))
	}
	if cfg != nil {
		t.Error("Parse returned a config with its errors")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want Errors", err)
	}
	got := strings.ReplaceAll(err.Error(), "t.yaml:", "")
	if w := strings.Join(want, "\n"); got != w {
		t.Errorf("errors:\n%s\nwant:\n%s", got, w)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unknown key at top level",
			src:  "listen: \":8080\"\n" + base,
			want: []string{`1:1: unknown key "listen" at top level (known keys: server, tls, admin, tracing, monitoring, upstreams, routes, redis)`},
		},
		{
			name: "unknown key nested",
			src: `upstreams:
  - name: users
    targets: ["http://127.0.0.1:9001"]
routes:
  - name: users-api
    match: {path_prefix: /users, foo: 1}
    upstream: users
`,
			want: []string{`6:34: unknown key "foo" in routes[0].match (known keys: host, path_prefix, path, methods)`},
		},
		{
			name: "merge key",
			src:  "server: {<<: {listen: \":1\"}}\n" + base,
			want: []string{`1:10: unknown key "<<" in server (known keys: listen, read_header_timeout, idle_timeout, max_header_bytes, shutdown_grace, access_log, max_connections, max_inflight, memory_limit, sched_latency_limit; merge keys are not supported)`},
		},
		{
			name: "duplicate key",
			src:  "server:\n  listen: \":1\"\n  listen: \":2\"\n" + base,
			want: []string{`3:3: duplicate key "listen" (first at line 2)`},
		},
		{
			name: "integer for a string",
			src:  "server:\n  listen: 8080\n" + base,
			want: []string{`2:11: expected a string, got integer 8080 (quote it)`},
		},
		{
			name: "boolean for a string",
			src:  "admin:\n  token_file: true\n" + base,
			want: []string{`2:15: expected a string, got boolean true (quote it)`},
		},
		{
			name: "string for an integer",
			src:  "server:\n  max_header_bytes: 1MB\n" + base,
			want: []string{`2:21: expected an integer, got string "1MB"`},
		},
		{
			name: "float for an integer",
			src:  "monitoring:\n  samples: 1.5\n" + base,
			want: []string{`2:12: expected an integer, got float 1.5`},
		},
		{
			name: "integer overflow",
			src:  "monitoring:\n  samples: 99999999999999999999\n" + base,
			want: []string{`2:12: integer 99999999999999999999 is out of range`},
		},
		{
			name: "ambiguous octal",
			src:  "monitoring:\n  samples: 010\n" + base,
			want: []string{`2:12: integer 010 is ambiguous (write it without the leading 0, or with 0o for octal)`},
		},
		{
			name: "string for a float",
			src:  "tracing:\n  sample_ratio: half\n" + base,
			want: []string{`2:17: expected a number, got string "half"`},
		},
		{
			name: "infinite float",
			src:  "tracing:\n  sample_ratio: .inf\n" + base,
			want: []string{`2:17: expected a finite number, got float .inf`},
		},
		{
			name: "yes for a boolean",
			src:  "tls:\n  redirect_http: yes\n" + base,
			want: []string{`2:18: expected a boolean, got string "yes" (use true or false)`},
		},
		{
			name: "bad duration",
			src:  "server:\n  idle_timeout: \"30\"\n" + base,
			want: []string{`2:17: bad duration "30": time: missing unit in duration "30" (use Go syntax such as 250ms or 30s)`},
		},
		{
			name: "duration as a bare integer",
			src:  "server:\n  idle_timeout: 30\n" + base,
			want: []string{`2:17: bad duration "30": time: missing unit in duration "30" (use Go syntax such as 250ms or 30s)`},
		},
		{
			name: "duration as a mapping",
			src:  "server:\n  idle_timeout: {s: 30}\n" + base,
			want: []string{`2:17: expected a duration, got a mapping (use Go syntax such as 250ms or 30s)`},
		},
		{
			name: "mapping expected",
			src:  "server: [a]\n" + base,
			want: []string{`1:9: expected a mapping, got a sequence`},
		},
		{
			name: "sequence expected",
			src: `upstreams:
  - name: users
    targets: "http://127.0.0.1:9001"
routes:
  - name: users-api
    match: {path_prefix: /users}
    upstream: users
`,
			want: []string{`3:14: expected a sequence, got string "http://127.0.0.1:9001"`},
		},
		{
			name: "integer list element",
			src: `upstreams:
  - name: users
    targets: ["http://127.0.0.1:9001"]
    breaker: {failure_statuses: [502, "503"]}
routes:
  - name: users-api
    match: {path_prefix: /users}
    upstream: users
`,
			want: []string{`4:39: expected an integer, got string "503"`},
		},
		{
			name: "top level not a mapping",
			src:  "- a\n- b\n",
			want: []string{`1:1: expected a mapping of keys at top level, got a sequence`},
		},
		{
			name: "empty file",
			src:  "",
			want: []string{`1:1: empty config: at least one upstream and one route are required`},
		},
		{
			name: "only comments",
			src:  "# nothing yet\n\n   \n",
			want: []string{`1:1: empty config: at least one upstream and one route are required`},
		},
		{
			name: "syntax error in the parser",
			src:  "server:\n  listen: [\":8080\"\nadmin: {}\n",
			want: []string{`2:1: did not find expected ',' or ']'`},
		},
		{
			name: "syntax error in the parser, problem line",
			src:  "server:\n  listen: \":8080\"\n bad: 1\n",
			want: []string{`3:1: did not find expected key`},
		},
		{
			name: "syntax error in the scanner",
			src:  "server:\n  listen: \":8080\"\n\tadmin: {}\n",
			want: []string{`3:1: found character that cannot start any token`},
		},
		{
			name: "syntax error at the end of the file",
			src:  "server: [\n",
			want: []string{`2:1: did not find expected node content`},
		},
		{
			name: "syntax error without a line",
			src:  "server: *nowhere\n",
			want: []string{`1:1: unknown anchor 'nowhere' referenced`},
		},
		{
			name: "second document",
			src:  base + "---\nserver: {}\n",
			want: []string{`9:1: a config file holds one YAML document; found another`},
		},
		{
			name: "all errors reported, sorted",
			src: `routes:
  - name: users-api
    match: {path_prefix: /users, bogus: 1}
    upstream: users
    timeout: 5
upstreams:
  - name: users
    targets: ["http://127.0.0.1:9001"]
    max_idle_conns: many
server:
  listen: 80
  listen: 81
`,
			want: []string{
				`3:34: unknown key "bogus" in routes[0].match (known keys: host, path_prefix, path, methods)`,
				`5:14: bad duration "5": time: missing unit in duration "5" (use Go syntax such as 250ms or 30s)`,
				`9:21: expected an integer, got string "many"`,
				`11:11: expected a string, got integer 80 (quote it)`,
				`12:3: duplicate key "listen" (first at line 11)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrors(t, tt.src, tt.want...)
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(*Config) bool
	}{
		{"zero duration as integer", "server:\n  shutdown_grace: 0\n" + base,
			func(c *Config) bool { return c.Server.ShutdownGrace == 0 }},
		{"integer for a float", "tracing:\n  sample_ratio: 0\n" + base,
			func(c *Config) bool { return c.Tracing.SampleRatio == 0 }},
		{"integer with underscores", "server:\n  max_header_bytes: 1_048_576\n" + base,
			func(c *Config) bool { return c.Server.MaxHeaderBytes == 1<<20 }},
		{"hex integer", "server:\n  max_header_bytes: 0x10000\n" + base,
			func(c *Config) bool { return c.Server.MaxHeaderBytes == 1<<16 }},
		{"quoted string", "admin:\n  listen: '127.0.0.1:9999'\n" + base,
			func(c *Config) bool { return c.Admin.Listen == "127.0.0.1:9999" }},
		{"explicit string tag", "server:\n  listen: !!str :9000\n" + base,
			func(c *Config) bool { return c.Server.Listen == ":9000" }},
		{"leading document marker", "---\n" + base,
			func(c *Config) bool { return len(c.Routes) == 1 }},
		{"trailing empty document", base + "---\n",
			func(c *Config) bool { return len(c.Routes) == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.yaml", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("unexpected value decoded from\n%s", tt.src)
			}
		})
	}
}

// TestAliasExpansionIsBounded feeds a file that aliases a route with a
// long methods list many times over, so that it expands to far more values
// than it holds. The decoder must stop with one error rather than visit
// (and report on) every expanded value. The limit is lowered so the test
// stays fast; the real one only differs in size.
func TestAliasExpansionIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("upstreams: [{name: u, targets: [\"http://127.0.0.1:1\"]}]\nroutes:\n")
	b.WriteString("  - &r {name: r, upstream: u, match: {path: /, methods: [GET" + strings.Repeat(",GET", 99) + "]}}\n")
	for range 100 {
		b.WriteString("  - *r\n")
	}
	d := &decoder{file: "t.yaml", pos: positions{}, maxVisits: 5000}
	d.document([]byte(b.String()), Default())
	if len(d.errs) != 1 || !strings.Contains(d.errs[0].Msg, "config too large: more than 5000 values") {
		t.Fatalf("got %v, want one \"config too large\" error", d.errs)
	}
	if d.visits != 5001 {
		t.Errorf("decoder visited %d values after reaching its limit of 5000", d.visits)
	}

	// The same file is fine within the real limit.
	if _, err := Parse("t.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "duplicate route name") {
		t.Errorf("Parse: got %v, want only validation errors", err)
	}
}
