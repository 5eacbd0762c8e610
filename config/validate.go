package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validator collects the problems of one decoded config, each at the
// position of the key it is about.
type validator struct {
	c    *Config
	mem  memoryEnv // where a percentage memory_limit finds the process's limit
	errs Errors
}

// errorf records a problem with the value at path, placed where that key,
// or failing that its nearest written ancestor, appears in the file.
func (v *validator) errorf(path, format string, args ...any) {
	pos := v.c.pos.nearest(path)
	v.errs = append(v.errs, &Error{File: v.c.File, Line: pos.Line, Col: pos.Col, Msg: fmt.Sprintf(format, args...)})
}

// written reports whether the key at path appeared in the file with a value.
func (v *validator) written(path string) bool {
	_, ok := v.c.pos[path]
	return ok
}

// validate checks everything the decoder cannot: ranges, references between
// upstreams and routes, and values with a syntax of their own (addresses,
// URLs, host names). It also normalises values in place (host names lower
// case, methods upper case, header names canonical, rate_limit.burst and
// Upstream.TargetURLs filled in), so that nothing downstream re-parses them.
func (c *Config) validate(mem memoryEnv) Errors {
	v := &validator{c: c, mem: mem}
	v.server()
	v.admin()
	v.tls()
	v.tracing()
	v.monitoring()
	v.redis()
	v.upstreams()
	v.routes()
	return v.errs
}

func (v *validator) server() {
	s := &v.c.Server
	v.listenAddr("server.listen", s.Listen)
	v.positiveDuration("server.read_header_timeout", s.ReadHeaderTimeout)
	v.positiveDuration("server.idle_timeout", s.IdleTimeout)
	v.positiveInt("server.max_header_bytes", s.MaxHeaderBytes)
	if s.ShutdownGrace < 0 {
		v.errorf("server.shutdown_grace", "server.shutdown_grace must be >= 0, got %v", s.ShutdownGrace)
	}
	v.nonNegativeInt("server.max_connections", s.MaxConnections)
	v.nonNegativeInt("server.max_inflight", s.MaxInflight)
	v.memoryLimit()
	if s.SchedLatencyLimit < 0 {
		v.errorf("server.sched_latency_limit", "server.sched_latency_limit must be >= 0 (0 turns the saturation detector off), got %v", s.SchedLatencyLimit)
	}
}

func (v *validator) admin() {
	a := &v.c.Admin
	if !v.listenAddr("admin.listen", a.Listen) {
		return
	}
	// The admin API must never be reachable on a proxy listener.
	if addrsClash(a.Listen, v.c.Server.Listen) {
		v.errorf("admin.listen", "admin.listen %q clashes with server.listen %q: the admin API needs a listener of its own", a.Listen, v.c.Server.Listen)
	}
	if t := v.c.TLS; t != nil && addrsClash(a.Listen, t.Listen) {
		v.errorf("admin.listen", "admin.listen %q clashes with tls.listen %q: the admin API needs a listener of its own", a.Listen, t.Listen)
	}
}

func (v *validator) tls() {
	t := v.c.TLS
	if t == nil {
		return
	}
	if v.listenAddr("tls.listen", t.Listen) && addrsClash(t.Listen, v.c.Server.Listen) {
		v.errorf("tls.listen", "tls.listen %q clashes with server.listen %q", t.Listen, v.c.Server.Listen)
	}
	static := t.CertFile != "" || t.KeyFile != ""
	switch {
	case t.ACME != nil && static:
		v.errorf("tls.acme", "tls: set either acme or cert_file and key_file, not both")
	case t.ACME == nil && !static:
		v.errorf("tls", "tls needs acme or a cert_file and key_file pair")
	case t.CertFile != "" && t.KeyFile == "":
		v.errorf("tls.cert_file", "tls.key_file is required with tls.cert_file")
	case t.KeyFile != "" && t.CertFile == "":
		v.errorf("tls.key_file", "tls.cert_file is required with tls.key_file")
	}
	if a := t.ACME; a != nil {
		if len(a.Domains) == 0 {
			v.errorf("tls.acme.domains", "tls.acme.domains must list at least one domain")
		}
		for i, d := range a.Domains {
			if !validHost(d, true) {
				p := fmt.Sprintf("tls.acme.domains[%d]", i)
				v.errorf(p, "%s %q is not a valid domain name", p, d)
			}
		}
		if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
			v.errorf("tls.acme.ca", "tls.acme.ca %q must be an absolute http or https URL", a.CA)
		}
		if a.Storage == "" {
			v.errorf("tls.acme.storage", "tls.acme.storage must not be empty")
		}
	}
}

func (v *validator) tracing() {
	t := &v.c.Tracing
	v.oneOf("tracing.exporter", t.Exporter, "none", "stdout", "otlp")
	v.oneOf("tracing.protocol", t.Protocol, "grpc", "http/protobuf")
	if !(t.SampleRatio >= 0 && t.SampleRatio <= 1) {
		v.errorf("tracing.sample_ratio", "tracing.sample_ratio must be between 0 and 1, got %v", t.SampleRatio)
	}
	v.nonEmpty("tracing.service_name", t.ServiceName)
	if t.Exporter == "otlp" && t.Endpoint == "" {
		v.errorf("tracing.endpoint", "tracing.endpoint must not be empty when tracing.exporter is otlp")
	}
}

func (v *validator) monitoring() {
	m := &v.c.Monitoring
	// The API reports the interval in whole milliseconds, and sampling
	// faster than that would cost CPU for no information.
	if m.SampleInterval < time.Millisecond {
		v.errorf("monitoring.sample_interval", "monitoring.sample_interval must be at least 1ms, got %s", m.SampleInterval)
	}
	v.positiveInt("monitoring.samples", m.Samples)
}

func (v *validator) upstreams() {
	if len(v.c.Upstreams) == 0 {
		v.errorf("upstreams", "upstreams: at least one upstream is required")
	}
	first := map[string]string{} // name → path of its first definition
	for i := range v.c.Upstreams {
		u := &v.c.Upstreams[i]
		p := fmt.Sprintf("upstreams[%d]", i)
		v.uniqueName(p, "upstream", u.Name, first)

		if len(u.Targets) == 0 {
			v.errorf(p+".targets", "%s.targets must list at least one target", p)
		}
		u.TargetURLs = nil
		for j, t := range u.Targets {
			tp := fmt.Sprintf("%s.targets[%d]", p, j)
			tu, err := parseTarget(t)
			if err != nil {
				shown := t
				if tu != nil && tu.User != nil {
					// Never echo a password into logs and terminals.
					shown = tu.Redacted()
				}
				v.errorf(tp, "bad target URL %q: %v", shown, err)
				continue
			}
			u.TargetURLs = append(u.TargetURLs, tu)
		}
		v.oneOf(p+".balance", u.Balance, "round_robin", "least_inflight", "p2c")
		v.positiveDuration(p+".connect_timeout", u.ConnectTimeout)
		v.positiveDuration(p+".response_header_timeout", u.ResponseHeaderTimeout)
		v.positiveInt(p+".max_idle_conns", u.MaxIdleConns)
		if h := u.HealthCheck; h != nil {
			v.healthCheck(p+".health_check", h)
		}
		if b := u.Breaker; b != nil {
			v.breaker(p+".breaker", b)
			if b.Shared && v.c.Redis == nil {
				v.errorf(p+".breaker.shared", "%s.breaker.shared needs a top-level redis: block to share trips through", p)
			}
		}
	}
}

// parseTarget parses an upstream base URL. Query, fragment and user info
// are refused rather than silently dropped or forwarded: the proxy joins
// only scheme, host and path with the request. When s parses as a URL but
// is refused, the parsed URL is returned with the error.
func parseTarget(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return u, errors.New("scheme must be http or https")
	case u.Host == "":
		return u, errors.New("host is missing")
	case u.User != nil:
		return u, errors.New("user info is not allowed")
	case u.RawQuery != "" || u.ForceQuery:
		return u, errors.New("a query is not allowed")
	case u.Fragment != "":
		return u, errors.New("a fragment is not allowed")
	}
	return u, nil
}

func (v *validator) healthCheck(p string, h *HealthCheck) {
	if !strings.HasPrefix(h.Path, "/") {
		v.errorf(p+".path", "%s.path must start with \"/\", got %q", p, h.Path)
	}
	v.positiveDuration(p+".interval", h.Interval)
	v.positiveDuration(p+".timeout", h.Timeout)
	if h.Timeout > h.Interval && h.Interval > 0 {
		v.errorf(p+".timeout", "%s.timeout %v must not exceed %s.interval %v", p, h.Timeout, p, h.Interval)
	}
	v.atLeastOne(p+".unhealthy_after", h.UnhealthyAfter)
	v.atLeastOne(p+".healthy_after", h.HealthyAfter)
}

func (v *validator) breaker(p string, b *Breaker) {
	v.atLeastOne(p+".consecutive_failures", b.ConsecutiveFailures)
	if !(b.FailureRatio > 0 && b.FailureRatio <= 1) {
		v.errorf(p+".failure_ratio", "%s.failure_ratio must be > 0 and <= 1, got %v", p, b.FailureRatio)
	}
	v.atLeastOne(p+".min_requests", b.MinRequests)
	v.positiveDuration(p+".window", b.Window)
	v.positiveDuration(p+".open_timeout", b.OpenTimeout)
	v.atLeastOne(p+".half_open_requests", b.HalfOpenRequests)
	// gobreaker counts half-open probes in a uint32.
	if int64(b.HalfOpenRequests) > math.MaxUint32 {
		v.errorf(p+".half_open_requests", "%s.half_open_requests must be at most %d, got %d", p, uint32(math.MaxUint32), b.HalfOpenRequests)
	}
	for i, s := range b.FailureStatuses {
		if s < 100 || s > 599 {
			sp := fmt.Sprintf("%s.failure_statuses[%d]", p, i)
			v.errorf(sp, "%s must be an HTTP status 100-599, got %d", sp, s)
		}
	}
}

func (v *validator) routes() {
	if len(v.c.Routes) == 0 {
		v.errorf("routes", "routes: at least one route is required")
	}
	upstreams := make([]string, 0, len(v.c.Upstreams))
	for _, u := range v.c.Upstreams {
		if u.Name != "" && !slices.Contains(upstreams, u.Name) {
			upstreams = append(upstreams, u.Name)
		}
	}
	first := map[string]string{}
	for i := range v.c.Routes {
		r := &v.c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		v.uniqueName(p, "route", r.Name, first)
		v.match(i, r)

		switch {
		case r.Upstream == "":
			v.errorf(p+".upstream", "%s.upstream must not be empty", p)
		case !slices.Contains(upstreams, r.Upstream):
			defined := strings.Join(upstreams, ", ")
			if defined == "" {
				defined = "none"
			}
			v.errorf(p+".upstream", "unknown upstream %q (defined: %s)", r.Upstream, defined)
		}
		if r.StripPrefix && r.Match.PathPrefix == "" {
			v.errorf(p+".strip_prefix", "%s.strip_prefix needs match.path_prefix", p)
		}
		if r.Timeout < 0 {
			v.errorf(p+".timeout", "%s.timeout must be >= 0 (0 = no deadline), got %v", p, r.Timeout)
		}
		if r.MaxBodyBytes < 0 {
			v.errorf(p+".max_body_bytes", "%s.max_body_bytes must be >= 0 (0 = no limit), got %d", p, r.MaxBodyBytes)
		}
		if r.RateLimit != nil {
			v.rateLimit(p+".rate_limit", r.RateLimit)
		}
		if r.Bulkhead != nil {
			v.atLeastOne(p+".bulkhead.max_concurrent", r.Bulkhead.MaxConcurrent)
		}
		if r.Bulkhead == nil && v.written(p+".queue") {
			v.errorf(p+".queue", "queue needs a bulkhead: add bulkhead.max_concurrent to the route or remove queue")
		}
		if r.Queue.MaxDepth < 0 {
			v.errorf(p+".queue.max_depth", "%s.queue.max_depth must be >= 0, got %d", p, r.Queue.MaxDepth)
		}
		v.positiveDuration(p+".queue.max_wait", r.Queue.MaxWait)
		v.queueDiscipline(p+".queue", &r.Queue)
		if r.Bulkhead != nil && r.Bulkhead.Adaptive != nil {
			v.adaptive(p+".bulkhead", r.Bulkhead)
		}
		if r.Priority != nil {
			if r.Bulkhead == nil {
				v.errorf(p+".priority", "priority needs a bulkhead: classes order the bulkhead's queue")
			}
			v.priority(p+".priority", r.Priority)
		}
		if r.Fault != nil {
			v.fault(p+".fault", r.Fault)
		}
	}
}

func (v *validator) queueDiscipline(p string, q *Queue) {
	v.oneOf(p+".discipline", q.Discipline, "fifo", "codel")
	v.positiveDuration(p+".codel.target", q.CoDel.Target)
	v.positiveDuration(p+".codel.interval", q.CoDel.Interval)
	if q.CoDel.Target > 0 && q.CoDel.Interval > 0 && q.CoDel.Target >= q.CoDel.Interval {
		v.errorf(p+".codel.target", "%s.codel.target (%v) must be shorter than codel.interval (%v)", p, q.CoDel.Target, q.CoDel.Interval)
	}
}

func (v *validator) adaptive(p string, b *Bulkhead) {
	a := b.Adaptive
	v.oneOf(p+".adaptive.algorithm", a.Algorithm, "gradient2", "aimd")
	v.atLeastOne(p+".adaptive.min", a.Min)
	if a.Min >= 1 && (b.MaxConcurrent < a.Min || b.MaxConcurrent > a.Max) {
		v.errorf(p+".max_concurrent", "%s.max_concurrent (the adaptive limit's start) must be within adaptive.min %d and adaptive.max %d, got %d",
			p, a.Min, a.Max, b.MaxConcurrent)
	}
	if a.Max < a.Min {
		v.errorf(p+".adaptive.max", "%s.adaptive.max must be >= adaptive.min %d, got %d", p, a.Min, a.Max)
	}
}

func (v *validator) priority(p string, pr *Priority) {
	v.oneOf(p+".class", pr.Class, "critical", "default", "sheddable")
	if pr.Header != "" {
		if !validToken(pr.Header) {
			v.errorf(p+".header", "%s.header %q is not a valid header name", p, pr.Header)
		} else {
			pr.Header = textproto.CanonicalMIMEHeaderKey(pr.Header)
		}
	}
	for _, c := range []struct {
		key string
		val float64
	}{{"critical", pr.ShedAt.Critical}, {"default", pr.ShedAt.Default}, {"sheddable", pr.ShedAt.Sheddable}} {
		if !(c.val > 0 && c.val <= 1) {
			v.errorf(p+".shed_at."+c.key, "%s.shed_at.%s must be in (0, 1], got %v", p, c.key, c.val)
		}
	}
	if pr.ShedAt.Sheddable > pr.ShedAt.Default || pr.ShedAt.Default > pr.ShedAt.Critical {
		v.errorf(p+".shed_at", "%s.shed_at must shed lower classes first: sheddable <= default <= critical", p)
	}
}

// match checks and normalises the match block of route i.
func (v *validator) match(i int, r *Route) {
	m := &r.Match
	mp := fmt.Sprintf("routes[%d].match", i)
	if m.Host == "" && m.PathPrefix == "" && m.Path == "" {
		label := fmt.Sprintf("route %q", r.Name)
		if r.Name == "" {
			label = fmt.Sprintf("routes[%d]", i)
		}
		v.errorf(mp, "%s has no match: set host, path_prefix or path", label)
	}
	if m.Path != "" && m.PathPrefix != "" {
		v.errorf(mp+".path", "%s.path and %s.path_prefix are exclusive: set one", mp, mp)
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		v.errorf(mp+".path_prefix", "%s.path_prefix must start with \"/\", got %q", mp, m.PathPrefix)
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		v.errorf(mp+".path", "%s.path must start with \"/\", got %q", mp, m.Path)
	}
	if m.Host != "" {
		// Host names compare case-insensitively (RFC 9110 section 4.2.3);
		// store them lower case so matching is a plain comparison.
		m.Host = strings.ToLower(m.Host)
		if !validHost(m.Host, true) {
			v.errorf(mp+".host", "%s.host %q is not a valid host name (want api.example.com or *.example.com)", mp, m.Host)
		}
	}
	for j, method := range m.Methods {
		jp := fmt.Sprintf("%s.methods[%d]", mp, j)
		// Method names are case-sensitive on the wire (RFC 9110 section 9.1),
		// but a lower-case "get" in a config means GET.
		method = strings.ToUpper(method)
		m.Methods[j] = method
		switch {
		case !validToken(method):
			v.errorf(jp, "%s %q is not a valid HTTP method", jp, method)
		case slices.Contains(m.Methods[:j], method):
			v.errorf(jp, "%s: duplicate method %q", jp, method)
		}
	}
}

func (v *validator) rateLimit(p string, rl *RateLimit) {
	if !v.written(p + ".rps") {
		v.errorf(p, "rate_limit.rps is required")
	} else if !(rl.RPS > 0) {
		v.errorf(p+".rps", "%s.rps must be > 0, got %v", p, rl.RPS)
	}
	if v.written(p + ".burst") {
		v.atLeastOne(p+".burst", rl.Burst)
	} else if rl.RPS > 0 {
		// Default burst: one second's worth of tokens, at least one. Capped
		// so a huge rps cannot overflow int; a bucket that big never limits.
		rl.Burst = int(min(max(1, math.Ceil(rl.RPS)), math.MaxInt32))
	}
	v.atLeastOne(p+".max_keys", rl.MaxKeys)
	v.oneOf(p+".scope", rl.Scope, "local", "global")
	switch {
	case rl.Scope == "global" && v.c.Redis == nil:
		v.errorf(p+".scope", "%s.scope global needs a top-level redis: block to share the bucket through", p)
	case v.written(p+".replicas") && rl.Scope != "global":
		v.errorf(p+".replicas", "%s.replicas applies only to scope: global", p)
	case v.written(p + ".replicas"):
		v.atLeastOne(p+".replicas", rl.Replicas)
	}
	switch name, isHeader := strings.CutPrefix(rl.Key, "header:"); {
	case rl.Key == "none" || rl.Key == "client_ip":
	case !isHeader:
		v.errorf(p+".key", "%s.key must be none, client_ip or header:<Name>, got %q", p, rl.Key)
	case !validToken(name):
		v.errorf(p+".key", "%s.key %q: %q is not a valid header name", p, rl.Key, name)
	default:
		// One spelling per header, as http.Header stores it.
		rl.Key = "header:" + textproto.CanonicalMIMEHeaderKey(name)
	}
}

func (v *validator) redis() {
	r := v.c.Redis
	if r == nil {
		return
	}
	if len(r.Addrs) == 0 {
		v.errorf("redis.addrs", "redis.addrs must list at least one host:port address")
	}
	for i, a := range r.Addrs {
		p := fmt.Sprintf("redis.addrs[%d]", i)
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			var ae *net.AddrError
			if errors.As(err, &ae) {
				err = errors.New(ae.Err)
			}
			v.errorf(p, "%s %q is not a host:port address: %v", p, a, err)
			continue
		}
		if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
			v.errorf(p, "%s %q needs a host and a port 1-65535", p, a)
		}
	}
	if r.DB < 0 {
		v.errorf("redis.db", "redis.db must be >= 0, got %d", r.DB)
	} else if r.DB != 0 && len(r.Addrs) > 1 {
		v.errorf("redis.db", "redis.db must be 0 with several addrs: a Redis Cluster has only database 0")
	}
	if r.Username != "" && r.PasswordFile == "" {
		v.errorf("redis.username", "redis.username needs redis.password_file")
	}
	if r.CAFile != "" && !r.TLS {
		v.errorf("redis.ca_file", "redis.ca_file needs redis.tls: true")
	}
	v.positiveDuration("redis.dial_timeout", r.DialTimeout)
	v.positiveDuration("redis.timeout", r.Timeout)
	// The timeout is a budget added to a request's latency; a second or more
	// is a mistake for a decision that takes ~100µs on a healthy server.
	if r.Timeout >= time.Second {
		v.errorf("redis.timeout", "redis.timeout must be below 1s: it is added to the latency of a request when redis is slow; got %v", r.Timeout)
	}
	if v.written("redis.pool_size") {
		v.atLeastOne("redis.pool_size", r.PoolSize)
	}
}

// uniqueName checks the name of upstream or route p (kind) and records it in
// first, which maps each name to the path that defined it first.
func (v *validator) uniqueName(p, kind, name string, first map[string]string) {
	np := p + ".name"
	if name == "" {
		v.errorf(np, "%s must not be empty", np)
		return
	}
	if !validName(name) {
		v.errorf(np, "%s %q: use letters, digits, '-', '_' and '.', starting with a letter or digit", np, name)
		return
	}
	if prev, dup := first[name]; dup {
		v.errorf(np, "duplicate %s name %q (first at line %d)", kind, name, v.c.pos.nearest(prev).Line)
		return
	}
	first[name] = np
}

// validName restricts route and upstream names to characters that need no
// escaping where names travel: API paths (/api/v1/routes/{name}), quoted
// RateLimit header parameters, metric labels and log fields.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_' && c != '.') {
			return false
		}
	}
	return len(s) <= 128
}

// listenAddr checks a listener address and reports whether it is valid.
func (v *validator) listenAddr(path, addr string) bool {
	if addr == "" {
		v.errorf(path, "%s must not be empty", path)
		return false
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err)
		}
		v.errorf(path, "%s %q is not a host:port address: %v", path, addr, err)
		return false
	}
	// Port 0 (pick a free port) is allowed: tests rely on it.
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || port != strconv.FormatUint(n, 10) {
		v.errorf(path, "%s %q: port must be a number from 0 to 65535", path, addr)
		return false
	}
	return true
}

// addrsClash reports whether two valid listen addresses would compete for
// the same socket: same port, and the same host or a wildcard on either
// side. Port 0 never clashes since each listener gets a port of its own.
func addrsClash(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp || ap == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ah == bh || wildcard(ah) || wildcard(bh)
}

// validHost reports whether s is a DNS host name: dot-separated labels of
// letters, digits and hyphens, 1 to 63 bytes each, not starting or ending
// with a hyphen, 253 bytes at most. With wildcard, "*." followed by such a
// name is allowed too.
func validHost(s string, wildcard bool) bool {
	if wildcard {
		s = strings.TrimPrefix(s, "*.")
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validToken reports whether s is an RFC 9110 section 5.6.2 token, the
// syntax of method and header field names.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func (v *validator) positiveDuration(path string, d time.Duration) {
	if d <= 0 {
		v.errorf(path, "%s must be > 0, got %v", path, d)
	}
}

func (v *validator) positiveInt(path string, n int) {
	if n <= 0 {
		v.errorf(path, "%s must be > 0, got %d", path, n)
	}
}

func (v *validator) nonNegativeInt(path string, n int) {
	if n < 0 {
		v.errorf(path, "%s must be >= 0 (0 = unlimited), got %d", path, n)
	}
}

func (v *validator) atLeastOne(path string, n int) {
	if n < 1 {
		v.errorf(path, "%s must be >= 1, got %d", path, n)
	}
}

func (v *validator) nonEmpty(path, s string) {
	if s == "" {
		v.errorf(path, "%s must not be empty", path)
	}
}

func (v *validator) oneOf(path, s string, allowed ...string) {
	if !slices.Contains(allowed, s) {
		v.errorf(path, "%s must be one of %s; got %q", path, strings.Join(allowed, ", "), s)
	}
}
