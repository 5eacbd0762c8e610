package config

import (
	"reflect"
	"testing"
)

// upstreamLast is base with the upstream written last, so a case can append
// keys to the upstream; the first appended line is line 8.
const upstreamLast = `routes:
  - name: users-api
    match: {path_prefix: /users}
    upstream: users
upstreams:
  - name: users
    targets: ["http://127.0.0.1:9001"]
`

// Cases append keys to base's route (first appended line is line 8), to
// upstreamLast's upstream (also line 8), or put top-level blocks before base.
func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // empty: the config is valid
	}{
		// server
		{"listen without port", "server:\n  listen: \"8080\"\n" + base,
			[]string{`2:11: server.listen "8080" is not a host:port address: missing port in address`}},
		{"listen empty", "server:\n  listen: \"\"\n" + base,
			[]string{`2:11: server.listen must not be empty`}},
		{"listen with a named port", "server:\n  listen: \":http\"\n" + base,
			[]string{`2:11: server.listen ":http": port must be a number from 0 to 65535`}},
		{"listen port out of range", "server:\n  listen: \":70000\"\n" + base,
			[]string{`2:11: server.listen ":70000": port must be a number from 0 to 65535`}},
		{"listen port 0", "server:\n  listen: \"127.0.0.1:0\"\n" + base, nil},
		{"zero read_header_timeout", "server:\n  read_header_timeout: 0s\n" + base,
			[]string{`2:24: server.read_header_timeout must be > 0, got 0s`}},
		{"negative idle_timeout", "server:\n  idle_timeout: -1s\n" + base,
			[]string{`2:17: server.idle_timeout must be > 0, got -1s`}},
		{"negative size", "server:\n  max_header_bytes: -1\n" + base,
			[]string{`2:21: server.max_header_bytes must be > 0, got -1`}},
		{"zero size", "server:\n  max_header_bytes: 0\n" + base,
			[]string{`2:21: server.max_header_bytes must be > 0, got 0`}},
		{"negative shutdown_grace", "server:\n  shutdown_grace: -1s\n" + base,
			[]string{`2:19: server.shutdown_grace must be >= 0, got -1s`}},
		{"zero shutdown_grace", "server:\n  shutdown_grace: 0s\n" + base, nil},
		{"negative max_connections", "server:\n  max_connections: -1\n" + base,
			[]string{`2:20: server.max_connections must be >= 0 (0 = unlimited), got -1`}},
		{"negative max_inflight", "server:\n  max_inflight: -5\n" + base,
			[]string{`2:17: server.max_inflight must be >= 0 (0 = unlimited), got -5`}},
		{"overload limits", "server:\n  max_connections: 1000\n  max_inflight: 500\n  memory_limit: 2GiB\n" + base, nil},
		{"negative memory_limit", "server:\n  memory_limit: -1\n" + base,
			[]string{`2:17: server.memory_limit must be >= 0, got -1`}},
		{"memory_limit with a decimal unit", "server:\n  memory_limit: 2GB\n" + base,
			[]string{`2:17: bad memory limit "2GB" (use bytes (an integer, or with a unit: 512MiB, 2GiB) or a percentage such as "80%")`}},
		{"memory_limit as a float", "server:\n  memory_limit: 1.5\n" + base,
			[]string{`2:17: expected a memory limit, got float 1.5 (use bytes (an integer, or with a unit: 512MiB, 2GiB) or a percentage such as "80%")`}},
		{"memory_limit over 100%", "server:\n  memory_limit: 120%\n" + base,
			[]string{`2:17: server.memory_limit "120%": a percentage must be above 0% and at most 100%`}},
		{"memory_limit of 0%", "server:\n  memory_limit: \"0%\"\n" + base,
			[]string{`2:17: server.memory_limit "0%": a percentage must be above 0% and at most 100%`}},
		{"memory_limit fraction of a unit", "server:\n  memory_limit: 1.5GiB\n" + base,
			[]string{`2:17: bad memory limit "1.5GiB" (use bytes (an integer, or with a unit: 512MiB, 2GiB) or a percentage such as "80%")`}},

		// admin
		{"admin on the proxy listener", "admin:\n  listen: \":8080\"\n" + base,
			[]string{`2:11: admin.listen ":8080" clashes with server.listen ":8080": the admin API needs a listener of its own`}},
		{"admin inside the proxy wildcard", "admin:\n  listen: \"127.0.0.1:8080\"\n" + base,
			[]string{`2:11: admin.listen "127.0.0.1:8080" clashes with server.listen ":8080": the admin API needs a listener of its own`}},
		{"admin and proxy on port 0", "server: {listen: \":0\"}\nadmin: {listen: \"127.0.0.1:0\"}\n" + base, nil},
		{"admin on another host", "server: {listen: \"10.0.0.1:8080\"}\nadmin: {listen: \"127.0.0.1:8080\"}\n" + base, nil},
		{"admin on the tls listener", "tls:\n  listen: \":9901\"\n  cert_file: c.pem\n  key_file: k.pem\n" + base,
			[]string{`1:1: admin.listen "127.0.0.1:9901" clashes with tls.listen ":9901": the admin API needs a listener of its own`}},
		{"bad admin listen", "admin:\n  listen: localhost\n" + base,
			[]string{`2:11: admin.listen "localhost" is not a host:port address: missing port in address`}},

		// tls
		{"tls static pair", "tls:\n  cert_file: c.pem\n  key_file: k.pem\n" + base, nil},
		{"tls with neither", "server: {}\ntls:\n  redirect_http: false\n" + base,
			[]string{`2:1: tls needs acme or a cert_file and key_file pair`}},
		{"tls with both", "tls:\n  cert_file: c.pem\n  key_file: k.pem\n  acme:\n    domains: [example.com]\n" + base,
			[]string{`4:3: tls: set either acme or cert_file and key_file, not both`}},
		{"tls cert without key", "tls:\n  cert_file: c.pem\n" + base,
			[]string{`2:14: tls.key_file is required with tls.cert_file`}},
		{"tls key without cert", "tls:\n  key_file: k.pem\n" + base,
			[]string{`2:13: tls.cert_file is required with tls.key_file`}},
		{"tls listen clashes with server", "tls:\n  listen: \":8080\"\n  cert_file: c.pem\n  key_file: k.pem\n" + base,
			[]string{`2:11: tls.listen ":8080" clashes with server.listen ":8080"`}},
		{"acme without domains", "tls:\n  acme:\n    email: a@example.com\n" + base,
			[]string{`2:3: tls.acme.domains must list at least one domain`}},
		{"acme with empty domains", "tls:\n  acme:\n    domains: []\n" + base,
			[]string{`3:5: tls.acme.domains must list at least one domain`}},
		{"acme bad domains", "tls:\n  acme:\n    domains: [\"*.example.com\", \"exa mple.com\", -x.com, \"*.\"]\n" + base,
			[]string{
				`3:32: tls.acme.domains[1] "exa mple.com" is not a valid domain name`,
				`3:48: tls.acme.domains[2] "-x.com" is not a valid domain name`,
				`3:56: tls.acme.domains[3] "*." is not a valid domain name`,
			}},
		{"acme ca not http", "tls:\n  acme:\n    domains: [example.com]\n    ca: ftp://ca.example.com/dir\n" + base,
			[]string{`4:9: tls.acme.ca "ftp://ca.example.com/dir" must be an absolute http or https URL`}},
		{"acme ca relative", "tls:\n  acme:\n    domains: [example.com]\n    ca: /directory\n" + base,
			[]string{`4:9: tls.acme.ca "/directory" must be an absolute http or https URL`}},
		{"acme storage empty", "tls:\n  acme:\n    domains: [example.com]\n    storage: \"\"\n" + base,
			[]string{`4:14: tls.acme.storage must not be empty`}},

		// tracing and monitoring
		{"unknown exporter", "tracing:\n  exporter: jaeger\n" + base,
			[]string{`2:13: tracing.exporter must be one of none, stdout, otlp; got "jaeger"`}},
		{"unknown protocol", "tracing:\n  protocol: http\n" + base,
			[]string{`2:13: tracing.protocol must be one of grpc, http/protobuf; got "http"`}},
		{"sample_ratio above 1", "tracing:\n  sample_ratio: 1.5\n" + base,
			[]string{`2:17: tracing.sample_ratio must be between 0 and 1, got 1.5`}},
		{"sample_ratio below 0", "tracing:\n  sample_ratio: -0.1\n" + base,
			[]string{`2:17: tracing.sample_ratio must be between 0 and 1, got -0.1`}},
		{"empty service_name", "tracing:\n  service_name: \"\"\n" + base,
			[]string{`2:17: tracing.service_name must not be empty`}},
		{"otlp without endpoint", "tracing:\n  exporter: otlp\n  endpoint: \"\"\n" + base,
			[]string{`3:13: tracing.endpoint must not be empty when tracing.exporter is otlp`}},
		{"empty endpoint without otlp", "tracing:\n  endpoint: \"\"\n" + base, nil},
		{"zero sample_interval", "monitoring:\n  sample_interval: 0s\n" + base,
			[]string{`2:20: monitoring.sample_interval must be at least 1ms, got 0s`}},
		{"zero samples", "monitoring:\n  samples: 0\n" + base,
			[]string{`2:12: monitoring.samples must be > 0, got 0`}},

		// upstreams
		{"no upstreams", "routes:\n  - name: r\n    match: {path: /}\n    upstream: users\n",
			[]string{
				`1:1: upstreams: at least one upstream is required`,
				`4:15: unknown upstream "users" (defined: none)`,
			}},
		{"empty upstreams", "upstreams: []\nroutes:\n  - name: r\n    match: {path: /}\n    upstream: users\n",
			[]string{
				`1:1: upstreams: at least one upstream is required`,
				`5:15: unknown upstream "users" (defined: none)`,
			}},
		{"upstream without name", upstreamLast + "  - targets: [\"http://127.0.0.1:1\"]\n",
			[]string{`8:5: upstreams[1].name must not be empty`}},
		{"duplicate upstream name", upstreamLast + "  - name: users\n    targets: [\"http://127.0.0.1:1\"]\n",
			[]string{`8:11: duplicate upstream name "users" (first at line 6)`}},
		{"upstream without targets", upstreamLast + "  - name: other\n",
			[]string{`8:5: upstreams[1].targets must list at least one target`}},
		{"upstream with empty targets", upstreamLast + "  - name: other\n    targets: []\n",
			[]string{`9:5: upstreams[1].targets must list at least one target`}},
		{"bad target URLs", upstreamLast + `  - name: other
    targets:
      - ftp://x
      - "http://"
      - http://x/?a=1
      - http://x/?
      - http://x/#top
      - http://ops:secret@x
      - "http://[::1"
      - 127.0.0.1:9001
      - http://x:9/base/
`,
			[]string{
				`10:9: bad target URL "ftp://x": scheme must be http or https`,
				`11:9: bad target URL "http://": host is missing`,
				`12:9: bad target URL "http://x/?a=1": a query is not allowed`,
				`13:9: bad target URL "http://x/?": a query is not allowed`,
				`14:9: bad target URL "http://x/#top": a fragment is not allowed`,
				`15:9: bad target URL "http://ops:xxxxx@x": user info is not allowed`,
				`16:9: bad target URL "http://[::1": missing ']' in host`,
				`17:9: bad target URL "127.0.0.1:9001": first path segment in URL cannot contain colon`,
			}},
		{"unknown balance", upstreamLast + "    balance: random\n",
			[]string{`8:14: upstreams[0].balance must be one of round_robin, least_inflight, p2c; got "random"`}},
		{"zero connect_timeout", upstreamLast + "    connect_timeout: 0s\n",
			[]string{`8:22: upstreams[0].connect_timeout must be > 0, got 0s`}},
		{"negative response_header_timeout", upstreamLast + "    response_header_timeout: -2s\n",
			[]string{`8:30: upstreams[0].response_header_timeout must be > 0, got -2s`}},
		{"zero max_idle_conns", upstreamLast + "    max_idle_conns: 0\n",
			[]string{`8:21: upstreams[0].max_idle_conns must be > 0, got 0`}},
		{"bad health_check", upstreamLast + `    health_check:
      path: healthz
      interval: 0s
      timeout: 0s
      unhealthy_after: 0
      healthy_after: -1
`,
			[]string{
				`9:13: upstreams[0].health_check.path must start with "/", got "healthz"`,
				`10:17: upstreams[0].health_check.interval must be > 0, got 0s`,
				`11:16: upstreams[0].health_check.timeout must be > 0, got 0s`,
				`12:24: upstreams[0].health_check.unhealthy_after must be >= 1, got 0`,
				`13:22: upstreams[0].health_check.healthy_after must be >= 1, got -1`,
			}},
		{"health_check timeout above interval", upstreamLast + "    health_check: {interval: 2s, timeout: 3s}\n",
			[]string{`8:43: upstreams[0].health_check.timeout 3s must not exceed upstreams[0].health_check.interval 2s`}},
		{"bad breaker", upstreamLast + `    breaker:
      consecutive_failures: 0
      failure_ratio: 0
      min_requests: 0
      window: 0s
      open_timeout: -1s
      half_open_requests: 0
      failure_statuses: [502, 99, 600]
`,
			[]string{
				`9:29: upstreams[0].breaker.consecutive_failures must be >= 1, got 0`,
				`10:22: upstreams[0].breaker.failure_ratio must be > 0 and <= 1, got 0`,
				`11:21: upstreams[0].breaker.min_requests must be >= 1, got 0`,
				`12:15: upstreams[0].breaker.window must be > 0, got 0s`,
				`13:21: upstreams[0].breaker.open_timeout must be > 0, got -1s`,
				`14:27: upstreams[0].breaker.half_open_requests must be >= 1, got 0`,
				`15:31: upstreams[0].breaker.failure_statuses[1] must be an HTTP status 100-599, got 99`,
				`15:35: upstreams[0].breaker.failure_statuses[2] must be an HTTP status 100-599, got 600`,
			}},
		{"breaker failure_ratio above 1", upstreamLast + "    breaker: {failure_ratio: 1.01}\n",
			[]string{`8:30: upstreams[0].breaker.failure_ratio must be > 0 and <= 1, got 1.01`}},
		{"breaker half_open_requests above uint32", upstreamLast + "    breaker: {half_open_requests: 4294967296}\n",
			[]string{`8:35: upstreams[0].breaker.half_open_requests must be at most 4294967295, got 4294967296`}},

		// routes
		{"no routes", "upstreams:\n  - name: users\n    targets: [\"http://127.0.0.1:9001\"]\nroutes: []\n",
			[]string{`4:1: routes: at least one route is required`}},
		{"no routes key", "upstreams:\n  - name: users\n    targets: [\"http://127.0.0.1:9001\"]\n",
			[]string{`1:1: routes: at least one route is required`}},
		{"route without name", base + "  - match: {path: /x}\n    upstream: users\n",
			[]string{`8:5: routes[1].name must not be empty`}},
		{"duplicate route name", base + "  - name: users-api\n    match: {path: /x}\n    upstream: users\n",
			[]string{`8:11: duplicate route name "users-api" (first at line 5)`}},
		{"rate_limit max_keys zero", base + "  - name: other\n    match: {path: /x}\n    upstream: users\n    rate_limit: {rps: 1, key: client_ip, max_keys: 0}\n",
			[]string{`11:52: routes[1].rate_limit.max_keys must be >= 1, got 0`}},
		{"negative max_body_bytes", base + "  - name: other\n    match: {path: /x}\n    upstream: users\n    max_body_bytes: -1\n",
			[]string{`11:21: routes[1].max_body_bytes must be >= 0 (0 = no limit), got -1`}},
		{"priority without bulkhead", base + "  - name: other\n    match: {path: /x}\n    upstream: users\n    priority: {class: critical}\n",
			[]string{`11:5: priority needs a bulkhead: classes order the bulkhead's queue`}},
		{"unknown class", base + "  - name: other\n    match: {path: /x}\n    upstream: users\n    bulkhead: {max_concurrent: 2}\n    priority: {class: vip}\n",
			[]string{`12:23: routes[1].priority.class must be one of critical, default, sheddable; got "vip"`}},
		{"shed order", base + "  - name: other\n    match: {path: /x}\n    upstream: users\n    bulkhead: {max_concurrent: 2}\n    priority: {shed_at: {sheddable: 0.9}}\n",
			[]string{`12:16: routes[1].priority.shed_at must shed lower classes first: sheddable <= default <= critical`}},
		{"bad discipline", base + "  - name: other\n    match: {path: /x}\n    upstream: users\n    bulkhead: {max_concurrent: 2}\n    queue: {discipline: lifo}\n",
			[]string{`12:25: routes[1].queue.discipline must be one of fifo, codel; got "lifo"`}},
		{"codel target not below interval", base + "  - name: other\n    match: {path: /x}\n    upstream: users\n    bulkhead: {max_concurrent: 2}\n    queue: {discipline: codel, codel: {target: 1s, interval: 1s}}\n",
			[]string{`12:48: routes[1].queue.codel.target (1s) must be shorter than codel.interval (1s)`}},
		{"adaptive start outside its range", base + "  - name: other\n    match: {path: /x}\n    upstream: users\n    bulkhead: {max_concurrent: 2, adaptive: {min: 5, max: 10}}\n",
			[]string{`11:32: routes[1].bulkhead.max_concurrent (the adaptive limit's start) must be within adaptive.min 5 and adaptive.max 10, got 2`}},
		{"route name with a slash", base + "  - name: a/b\n    match: {path: /x}\n    upstream: users\n",
			[]string{`8:11: routes[1].name "a/b": use letters, digits, '-', '_' and '.', starting with a letter or digit`}},
		{"upstream name with a quote", "upstreams:\n  - name: 'us\"ers'\n    targets: [\"http://127.0.0.1:9001\"]\nroutes:\n  - name: r\n    match: {path: /x}\n    upstream: 'us\"ers'\n",
			[]string{`2:11: upstreams[0].name "us\"ers": use letters, digits, '-', '_' and '.', starting with a letter or digit`}},
		{"route with no match", base + "  - name: other\n    match: {methods: [GET]}\n    upstream: users\n",
			[]string{`9:5: route "other" has no match: set host, path_prefix or path`}},
		{"unnamed route without match key", base + "  - upstream: users\n",
			[]string{
				`8:5: routes[1].name must not be empty`,
				`8:5: routes[1] has no match: set host, path_prefix or path`,
			}},
		{"path and path_prefix", base + "  - name: other\n    match: {path: /a, path_prefix: /b}\n    upstream: users\n",
			[]string{`9:19: routes[1].match.path and routes[1].match.path_prefix are exclusive: set one`}},
		{"relative paths", base + "  - name: a\n    match: {path: a}\n    upstream: users\n  - name: b\n    match: {path_prefix: b}\n    upstream: users\n",
			[]string{
				`9:19: routes[1].match.path must start with "/", got "a"`,
				`12:26: routes[2].match.path_prefix must start with "/", got "b"`,
			}},
		{"bad hosts", base + `  - name: a
    match: {host: api_x.example.com}
    upstream: users
  - name: b
    match: {host: "a.*.example.com"}
    upstream: users
  - name: c
    match: {host: "api.example.com:8080"}
    upstream: users
`,
			[]string{
				`9:19: routes[1].match.host "api_x.example.com" is not a valid host name (want api.example.com or *.example.com)`,
				`12:19: routes[2].match.host "a.*.example.com" is not a valid host name (want api.example.com or *.example.com)`,
				`15:19: routes[3].match.host "api.example.com:8080" is not a valid host name (want api.example.com or *.example.com)`,
			}},
		{"bad methods", base + "  - name: b\n    match: {path: /, methods: [GET, \"GE T\", get, \"\"]}\n    upstream: users\n",
			[]string{
				`9:37: routes[1].match.methods[1] "GE T" is not a valid HTTP method`,
				`9:45: routes[1].match.methods[2]: duplicate method "GET"`,
				`9:50: routes[1].match.methods[3] "" is not a valid HTTP method`,
			}},
		{"upstream empty", base + "  - name: b\n    match: {path: /b}\n    upstream: \"\"\n",
			[]string{`10:15: routes[1].upstream must not be empty`}},
		{"upstream missing", base + "  - name: b\n    match: {path: /b}\n",
			[]string{`8:5: routes[1].upstream must not be empty`}},
		{"unknown upstream", "upstreams:\n  - name: a\n    targets: [\"http://x\"]\n  - name: b\n    targets: [\"http://y\"]\nroutes:\n  - name: r\n    match: {path: /}\n    upstream: nope\n",
			[]string{`9:15: unknown upstream "nope" (defined: a, b)`}},
		{"strip_prefix without path_prefix", base + "  - name: b\n    match: {path: /b}\n    upstream: users\n    strip_prefix: true\n",
			[]string{`11:19: routes[1].strip_prefix needs match.path_prefix`}},
		{"negative route timeout", base + "    timeout: -1s\n",
			[]string{`8:14: routes[0].timeout must be >= 0 (0 = no deadline), got -1s`}},
		{"zero route timeout", base + "    timeout: 0s\n", nil},
		{"rate_limit without rps", base + "    rate_limit:\n      burst: 5\n",
			[]string{`8:5: rate_limit.rps is required`}},
		{"empty rate_limit", base + "    rate_limit: {}\n",
			[]string{`8:5: rate_limit.rps is required`}},
		{"zero rps", base + "    rate_limit: {rps: 0}\n",
			[]string{`8:23: routes[0].rate_limit.rps must be > 0, got 0`}},
		{"negative rps", base + "    rate_limit: {rps: -1.5}\n",
			[]string{`8:23: routes[0].rate_limit.rps must be > 0, got -1.5`}},
		{"zero burst", base + "    rate_limit: {rps: 1, burst: 0}\n",
			[]string{`8:33: routes[0].rate_limit.burst must be >= 1, got 0`}},
		{"bad rate_limit key", base + "    rate_limit: {rps: 1, key: ip}\n",
			[]string{`8:31: routes[0].rate_limit.key must be none, client_ip or header:<Name>, got "ip"`}},
		{"bad rate_limit header", base + "    rate_limit: {rps: 1, key: \"header:X Key\"}\n",
			[]string{`8:31: routes[0].rate_limit.key "header:X Key": "X Key" is not a valid header name`}},
		{"empty rate_limit header", base + "    rate_limit: {rps: 1, key: \"header:\"}\n",
			[]string{`8:31: routes[0].rate_limit.key "header:": "" is not a valid header name`}},
		{"zero bulkhead", base + "    bulkhead: {max_concurrent: 0}\n",
			[]string{`8:32: routes[0].bulkhead.max_concurrent must be >= 1, got 0`}},
		{"queue without bulkhead", base + "    queue: {max_depth: 10}\n",
			[]string{`8:5: queue needs a bulkhead: add bulkhead.max_concurrent to the route or remove queue`}},
		{"bad queue", base + "    bulkhead: {max_concurrent: 1}\n    queue: {max_depth: -1, max_wait: 0s}\n",
			[]string{
				`9:24: routes[0].queue.max_depth must be >= 0, got -1`,
				`9:38: routes[0].queue.max_wait must be > 0, got 0s`,
			}},
		{"queue of depth 0", base + "    bulkhead: {max_concurrent: 1}\n    queue: {max_depth: 0}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrors(t, tt.src, tt.want...)
		})
	}
}

// TestValidateNormalises checks the values validation rewrites in place.
func TestValidateNormalises(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`
upstreams:
  - name: users
    targets: ["http://127.0.0.1:9001/base"]
routes:
  - name: a
    match: {host: "*.Example.COM", methods: [get, Post, PURGE]}
    upstream: users
    rate_limit: {rps: 0.2, key: "header:x-forwarded-for"}
  - name: b
    match: {path: /b}
    upstream: users
    rate_limit: {rps: 100.5}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Routes[0], cfg.Routes[1]
	if a.Match.Host != "*.example.com" {
		t.Errorf("host = %q, want lower case", a.Match.Host)
	}
	if want := []string{"GET", "POST", "PURGE"}; !reflect.DeepEqual(a.Match.Methods, want) {
		t.Errorf("methods = %q, want %q", a.Match.Methods, want)
	}
	if a.RateLimit.Key != "header:X-Forwarded-For" {
		t.Errorf("key = %q, want the canonical header name", a.RateLimit.Key)
	}
	if a.RateLimit.Burst != 1 {
		t.Errorf("burst for rps 0.2 = %d, want at least 1", a.RateLimit.Burst)
	}
	if b.RateLimit.Burst != 101 {
		t.Errorf("burst for rps 100.5 = %d, want 101", b.RateLimit.Burst)
	}
	if u := cfg.Upstreams[0].TargetURLs; len(u) != 1 || u[0].Host != "127.0.0.1:9001" || u[0].Path != "/base" {
		t.Errorf("TargetURLs = %v", u)
	}
}
