// Package config loads, defaults and validates sluice's YAML configuration.
//
// The field comments in this file are the user documentation of each key:
// they state the key, its default and its meaning. Every error found while
// loading is reported as FILE:LINE:COL: message (see Error), and a config is
// validated completely at load time so nothing is discovered per request.
package config

import (
	"net/url"
	"time"
)

// Config is the whole sluice configuration. Use Load or Parse to build one:
// they apply the defaults documented on each field before decoding.
type Config struct {
	// Server configures the plain-HTTP proxy listener.
	Server Server `yaml:"server"`
	// TLS configures the optional HTTPS listener. Omitted = no HTTPS listener.
	TLS *TLS `yaml:"tls"`
	// Admin configures the admin listener (health, metrics, API, dashboard).
	Admin Admin `yaml:"admin"`
	// Tracing configures OpenTelemetry tracing.
	Tracing Tracing `yaml:"tracing"`
	// Monitoring configures backpressure sampling.
	Monitoring Monitoring `yaml:"monitoring"`
	// Upstreams are the pools of targets routes forward to. Names are unique.
	Upstreams []Upstream `yaml:"upstreams"`
	// Routes are tried in order; the first match wins. At least one is required.
	Routes []Route `yaml:"routes"`
	// Redis is the store replicas share global rate limits and breaker
	// trips through. Omitted = every limit and breaker is local.
	Redis *Redis `yaml:"redis"`

	// File is the name the config was loaded from, used in error messages.
	File string `yaml:"-"`

	// pos maps a key path ("routes[0].upstream") to where it was written.
	pos positions
}

// Server configures the plain-HTTP proxy listener.
type Server struct {
	// Listen is the proxy's plain-HTTP address. Default ":8080".
	Listen string `yaml:"listen"`
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers (slowloris protection). Default 5s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps the size of request headers. Default 1048576 (1 MiB).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ShutdownGrace is how long in-flight requests may run after SIGTERM or
	// SIGINT before connections are closed. Default 30s; 0 closes at once.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// AccessLog writes one JSON line per request to stderr. Default true.
	AccessLog bool `yaml:"access_log"`
	// MaxConnections caps the client connections open on the proxy
	// listeners, plain and TLS together (HAProxy's global maxconn). A
	// connection beyond it is accepted and closed at once: on the plain
	// listener after a 503 overloaded answer, on the TLS listener before
	// the handshake. Default 0 (unlimited). Reloads.
	MaxConnections int `yaml:"max_connections"`
	// MaxInflight caps the requests in flight across all routes, queued
	// ones included; a request beyond it is refused 503 overloaded before
	// routing. Default 0 (unlimited). Reloads.
	MaxInflight int `yaml:"max_inflight"`
	// MemoryLimit is the heap size above which new requests are refused 503
	// overloaded until it falls below 95 % of it again: bytes (an integer,
	// or with a unit: 512MiB, 2GiB), or a percentage ("80%") of GOMEMLIMIT
	// if set, else of the cgroup's memory limit. Default 0 (off). Reloads.
	MemoryLimit MemoryLimit `yaml:"memory_limit"`
	// SchedLatencyLimit is the saturation detector's threshold: the p99
	// of the Go scheduler's latency (how long runnable goroutines wait for
	// a CPU) above which the process counts as saturated and sheds the
	// waiting of its lowest priority classes. Default 10ms; 0 turns the
	// detector off. Reloads.
	SchedLatencyLimit time.Duration `yaml:"sched_latency_limit"`
}

// MemoryLimit is server.memory_limit: a size, or a share of the process's
// memory limit, resolved to bytes when the config is loaded.
type MemoryLimit struct {
	// Bytes is the limit as written when written as a size; 0 otherwise.
	Bytes int64 `yaml:"-"`
	// Percent is the limit as written when written as a percentage, in
	// (0, 100]; 0 otherwise.
	Percent float64 `yaml:"-"`
	// Resolved is the limit in bytes, filled in by validation: Bytes, or
	// Percent of the memory limit found at load. 0 = off.
	Resolved int64 `yaml:"-"`
	// Of names what Percent was taken of: "GOMEMLIMIT" or the cgroup file
	// read; "" for a size.
	Of string `yaml:"-"`
}

// TLS configures the HTTPS listener: either ACME or a static cert_file/key_file pair.
type TLS struct {
	// Listen is the HTTPS address (HTTP/1.1 and HTTP/2). Default ":8443".
	Listen string `yaml:"listen"`
	// ACME obtains and renews certificates automatically. Omitted = static pair.
	ACME *ACME `yaml:"acme"`
	// CertFile is a PEM certificate chain, used instead of ACME. Default "".
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key for CertFile. Default "".
	KeyFile string `yaml:"key_file"`
	// RedirectHTTP makes server.listen answer 308 to https, except for ACME
	// HTTP-01 challenges. Default true.
	RedirectHTTP bool `yaml:"redirect_http"`
}

// ACME configures automatic certificates.
type ACME struct {
	// Domains to obtain certificates for. Required, at least one.
	Domains []string `yaml:"domains"`
	// Email is the ACME account contact. Default "".
	Email string `yaml:"email"`
	// CA is the ACME directory URL. Default Let's Encrypt production,
	// "https://acme-v02.api.letsencrypt.org/directory".
	CA string `yaml:"ca"`
	// CARoot is a PEM file of roots to trust when talking to a private ACME CA.
	// Default "" (system roots).
	CARoot string `yaml:"ca_root"`
	// Storage is the directory for certificates and account keys.
	// Default "./sluice-data/certs".
	Storage string `yaml:"storage"`
}

// Admin configures the admin listener. It is never the proxy listener.
type Admin struct {
	// Listen is the admin address. Default "127.0.0.1:9901" (loopback only).
	Listen string `yaml:"listen"`
	// TokenFile, if set, names a file holding a bearer token that /api/* and
	// the dashboard require. /healthz and /readyz stay open. Default "".
	TokenFile string `yaml:"token_file"`
}

// Tracing configures OpenTelemetry tracing.
type Tracing struct {
	// Exporter is none, stdout or otlp. Default none.
	Exporter string `yaml:"exporter"`
	// Endpoint is the OTLP collector address. Default "localhost:4317".
	Endpoint string `yaml:"endpoint"`
	// Protocol is the OTLP protocol: grpc or http/protobuf. Default grpc.
	Protocol string `yaml:"protocol"`
	// SampleRatio is the share of new traces sampled, 0 to 1, parent-based.
	// Default 1.0.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName is the OTel service.name resource attribute. Default "sluice".
	ServiceName string `yaml:"service_name"`
}

// Monitoring configures the backpressure sampler.
type Monitoring struct {
	// SampleInterval is the backpressure sampling period. Default 50ms.
	SampleInterval time.Duration `yaml:"sample_interval"`
	// Samples is the window of samples behind the backpressure ratio. Default 100.
	Samples int `yaml:"samples"`
}

// Upstream is a named pool of targets.
type Upstream struct {
	// Name identifies the upstream in routes, metrics and the API. Required, unique.
	Name string `yaml:"name"`
	// Targets are base URLs (http or https, host and port, optional path).
	// Required, at least one.
	Targets []string `yaml:"targets"`
	// Balance picks a target: round_robin, least_inflight or p2c (power of
	// two random choices by in-flight count). Default round_robin.
	Balance string `yaml:"balance"`
	// ConnectTimeout bounds dialing a target. Default 2s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ResponseHeaderTimeout bounds the wait for response headers once the
	// request is written. Default 10s.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// MaxIdleConns is the idle keep-alive pool per target. Default 256.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// HealthCheck enables active health checks. Omitted = targets are always
	// considered healthy.
	HealthCheck *HealthCheck `yaml:"health_check"`
	// Breaker enables a circuit breaker for the upstream. Omitted = no breaker.
	Breaker *Breaker `yaml:"breaker"`

	// TargetURLs are the parsed Targets, filled in by validation.
	TargetURLs []*url.URL `yaml:"-"`
}

// HealthCheck configures active health checks of each target of an upstream.
type HealthCheck struct {
	// Path is requested with GET on each target; 2xx and 3xx are healthy.
	// Default "/healthz".
	Path string `yaml:"path"`
	// Interval between checks of one target. Default 5s.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one check; must not exceed Interval. Default 1s.
	Timeout time.Duration `yaml:"timeout"`
	// UnhealthyAfter consecutive failures take a target out of rotation. Default 3.
	UnhealthyAfter int `yaml:"unhealthy_after"`
	// HealthyAfter consecutive successes put it back. Default 2.
	HealthyAfter int `yaml:"healthy_after"`
}

// Breaker configures an upstream's circuit breaker.
type Breaker struct {
	// ConsecutiveFailures trips the breaker after this many failures in a row. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// FailureRatio trips the breaker when this share of the window's requests
	// failed, once the window holds MinRequests. Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio"`
	// MinRequests is the window size below which FailureRatio is not applied. Default 20.
	MinRequests int `yaml:"min_requests"`
	// Window is the rolling counting window while closed. Default 10s.
	Window time.Duration `yaml:"window"`
	// OpenTimeout is how long the breaker stays open before half-open. Default 30s.
	OpenTimeout time.Duration `yaml:"open_timeout"`
	// HalfOpenRequests is the number of probes allowed while half-open. Default 3.
	HalfOpenRequests int `yaml:"half_open_requests"`
	// FailureStatuses are upstream statuses counted as failures, in addition
	// to connect errors and timeouts. Default [502, 503, 504].
	FailureStatuses []int `yaml:"failure_statuses"`
	// Shared publishes each trip through redis, so that every replica opens
	// the upstream's breaker for the same time. Default false. Needs redis.
	Shared bool `yaml:"shared"`
}

// Route maps matching requests to an upstream, with admission control.
type Route struct {
	// Name identifies the route in metrics, headers and the API. Required, unique.
	Name string `yaml:"name"`
	// Match selects requests. Required: at least one of host, path_prefix, path.
	Match Match `yaml:"match"`
	// Upstream names the upstream to forward to. Required.
	Upstream string `yaml:"upstream"`
	// StripPrefix removes match.path_prefix from the path before forwarding.
	// Default false. Needs path_prefix.
	StripPrefix bool `yaml:"strip_prefix"`
	// Timeout is the whole-request deadline, queue wait included; when it
	// passes the client gets 504. Default 30s; 0 = no deadline (for
	// WebSocket and long streams).
	Timeout time.Duration `yaml:"timeout"`
	// MaxBodyBytes caps the request body: a larger Content-Length is refused
	// with 413 before admission, and a streamed body that grows past it is
	// cut and answered 413. Default 0 (no limit).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// RateLimit is a token bucket in front of the route. Omitted = none.
	RateLimit *RateLimit `yaml:"rate_limit"`
	// Bulkhead caps the requests in flight to the upstream. Omitted =
	// unlimited concurrency, and no queue.
	Bulkhead *Bulkhead `yaml:"bulkhead"`
	// Queue is the bounded wait queue in front of the bulkhead. Only valid
	// with a bulkhead.
	Queue Queue `yaml:"queue"`
	// Priority classes the route's requests for the queue: higher classes
	// are served first and lower ones shed earlier. Omitted = every request
	// is "default" and only a full queue refuses. Needs a bulkhead.
	Priority *Priority `yaml:"priority"`
	// Fault injects failures into the route's requests after admission,
	// for testing overload behaviour (Envoy's fault filter). Omitted = no
	// fault; the admin API can also turn one on for a while at run time.
	Fault *Fault `yaml:"fault"`
}

// Priority sets the class of a route's requests (Google SRE's criticality).
type Priority struct {
	// Class is the route's class: critical, default or sheddable. Default "default".
	Class string `yaml:"class"`
	// Header, if set, names a request header whose value (critical, default
	// or sheddable) overrides Class. It is trusted only on routes that name
	// it; an absent or unknown value means Class. Default "" (no header).
	Header string `yaml:"header"`
	// ShedAt is the queue usage (depth ÷ max_depth) at which each class is
	// refused with queue_full instead of queued.
	ShedAt ShedAt `yaml:"shed_at"`
}

// ShedAt holds the queue usage at which each class is shed.
type ShedAt struct {
	// Critical: default 1.0 (refused only when the queue is full).
	Critical float64 `yaml:"critical"`
	// Default: default 0.8.
	Default float64 `yaml:"default"`
	// Sheddable: default 0.5.
	Sheddable float64 `yaml:"sheddable"`
}

// Match selects requests for a route. All given conditions must hold.
type Match struct {
	// Host is an exact host ("api.example.com") or a wildcard
	// ("*.example.com": any subdomain, not the apex). Compared without port,
	// case-insensitively. Default "" (any host).
	Host string `yaml:"host"`
	// PathPrefix matches the path and everything below it at a segment
	// boundary: "/users" matches /users and /users/7, not /usersx. A prefix
	// ending in "/" matches anything starting with it. Default "".
	PathPrefix string `yaml:"path_prefix"`
	// Path matches one exact path. Exclusive with PathPrefix. Default "".
	Path string `yaml:"path"`
	// Methods restricts the route to these methods. Default [] (any method).
	Methods []string `yaml:"methods"`
}

// RateLimit is a token bucket (golang.org/x/time/rate).
type RateLimit struct {
	// RPS is the refill rate in requests per second. Required, > 0.
	RPS float64 `yaml:"rps"`
	// Burst is the bucket size. Default: RPS rounded up, at least 1.
	Burst int `yaml:"burst"`
	// Key selects one bucket per: none (route-wide), client_ip, or
	// header:<Name> (one bucket per value of that request header; requests
	// without the header share one bucket). Default none.
	Key string `yaml:"key"`
	// MaxKeys bounds the table of per-key buckets for client_ip and header
	// keys; the least recently used key is evicted when it is full, so a
	// flood of distinct keys cannot grow memory. An evicted key starts again
	// with a full bucket. Default 100000.
	MaxKeys int `yaml:"max_keys"`
	// Scope is local (each replica its own bucket) or global (one bucket
	// per key shared by every replica through redis). Default local.
	Scope string `yaml:"scope"`
	// Replicas is how many replicas share a global bucket. While redis is
	// unreachable each replica limits alone to rps ÷ replicas (burst ÷
	// replicas, rounded up); unset, to the full rps and burst. Default 0
	// (unset). Only with scope global.
	Replicas int `yaml:"replicas"`
}

// Redis configures the shared store (a single server, or a Redis Cluster
// when addrs lists more than one node).
type Redis struct {
	// Addrs are host:port addresses. Required, at least one.
	Addrs []string `yaml:"addrs"`
	// PasswordFile names a file holding the password (AUTH); surrounding
	// white space is trimmed. Default "" (no password).
	PasswordFile string `yaml:"password_file"`
	// Username for Redis ACLs, with PasswordFile. Default "" (the default user).
	Username string `yaml:"username"`
	// DB is the database number. Default 0; must be 0 for a cluster.
	DB int `yaml:"db"`
	// TLS connects with TLS, verifying the server against the system roots
	// or CAFile. Default false.
	TLS bool `yaml:"tls"`
	// CAFile is a PEM file of roots to trust for TLS. Default "" (system roots).
	CAFile string `yaml:"ca_file"`
	// DialTimeout bounds connecting to a node. Default 200ms.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Timeout is the most a request may wait for a decision from redis;
	// when it passes the request is decided by the local fallback bucket
	// and the store is marked down. Default 5ms.
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is the most connections per node. Default 10 per CPU.
	PoolSize int `yaml:"pool_size"`
	// FailOpen starts sluice, and lets a reload succeed, when redis refuses
	// the credentials or the database: it logs the error and limits
	// locally until redis accepts them. Default false: a wrong password is
	// a startup (or reload) error. An unreachable redis is never an error:
	// limits fall back to local buckets until it answers.
	FailOpen bool `yaml:"fail_open"`
}

// Bulkhead caps concurrency to the upstream.
type Bulkhead struct {
	// MaxConcurrent is the most requests in flight to the upstream (with
	// adaptive: the starting limit). Default 50.
	MaxConcurrent int `yaml:"max_concurrent"`
	// Adaptive lets the limit follow the upstream's measured latency, so
	// nobody has to hand-tune max_concurrent. Omitted = a fixed limit.
	Adaptive *Adaptive `yaml:"adaptive"`
}

// Adaptive configures an adaptive concurrency limit (Netflix
// concurrency-limits, Envoy's adaptive concurrency filter).
type Adaptive struct {
	// Algorithm is gradient2 (follows the ratio of long- to short-term
	// latency) or aimd (additive increase, multiplicative decrease on
	// timeouts, overload answers and latency spikes). Default gradient2.
	Algorithm string `yaml:"algorithm"`
	// Min is the lowest the limit goes. Default 1.
	Min int `yaml:"min"`
	// Max is the highest the limit goes. Default 1000.
	Max int `yaml:"max"`
}

// Queue is the bounded FIFO wait queue in front of a route's bulkhead.
type Queue struct {
	// MaxDepth is the most requests waiting; a full queue rejects at once.
	// 0 = reject as soon as the bulkhead is full. Default 100.
	MaxDepth int `yaml:"max_depth"`
	// MaxWait is the longest a request waits in the queue. Default 250ms.
	MaxWait time.Duration `yaml:"max_wait"`
	// Discipline is fifo, or codel: adaptive LIFO with CoDel-style sojourn
	// control, which absorbs bursts but keeps a standing queue short under
	// sustained overload. Default fifo.
	Discipline string `yaml:"discipline"`
	// CoDel tunes the codel discipline.
	CoDel CoDel `yaml:"codel"`
}

// CoDel tunes the codel queue discipline (Meta's defaults).
type CoDel struct {
	// Target is the queue sojourn time tolerated. Default 5ms.
	Target time.Duration `yaml:"target"`
	// Interval is how long sojourn must stay above target before the queue
	// counts as overloaded. Default 100ms.
	Interval time.Duration `yaml:"interval"`
}

// Default returns the configuration with every default applied and no
// upstreams or routes.
func Default() *Config {
	c := &Config{}
	c.setDefaults()
	return c
}

// defaulter is implemented by every config struct; the decoder calls it on
// each struct it creates before decoding keys into it, so keys absent from
// the YAML keep their documented default.
type defaulter interface{ setDefaults() }

func (c *Config) setDefaults() {
	c.Server.setDefaults()
	c.Admin.setDefaults()
	c.Tracing.setDefaults()
	c.Monitoring.setDefaults()
}

func (s *Server) setDefaults() {
	*s = Server{
		Listen:            ":8080",
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ShutdownGrace:     30 * time.Second,
		AccessLog:         true,
		SchedLatencyLimit: 10 * time.Millisecond,
	}
}

func (m *MemoryLimit) setDefaults() { *m = MemoryLimit{} }

func (t *TLS) setDefaults() { *t = TLS{Listen: ":8443", RedirectHTTP: true} }

func (a *ACME) setDefaults() {
	*a = ACME{
		CA:      "https://acme-v02.api.letsencrypt.org/directory",
		Storage: "./sluice-data/certs",
	}
}

func (a *Admin) setDefaults() { *a = Admin{Listen: "127.0.0.1:9901"} }

func (t *Tracing) setDefaults() {
	*t = Tracing{Exporter: "none", Endpoint: "localhost:4317", Protocol: "grpc", SampleRatio: 1.0, ServiceName: "sluice"}
}

func (m *Monitoring) setDefaults() {
	*m = Monitoring{SampleInterval: 50 * time.Millisecond, Samples: 100}
}

func (u *Upstream) setDefaults() {
	*u = Upstream{
		Balance:               "round_robin",
		ConnectTimeout:        2 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConns:          256,
	}
}

func (r *Redis) setDefaults() {
	*r = Redis{DialTimeout: 200 * time.Millisecond, Timeout: 5 * time.Millisecond}
}

func (h *HealthCheck) setDefaults() {
	*h = HealthCheck{Path: "/healthz", Interval: 5 * time.Second, Timeout: time.Second, UnhealthyAfter: 3, HealthyAfter: 2}
}

func (b *Breaker) setDefaults() {
	*b = Breaker{
		ConsecutiveFailures: 5,
		FailureRatio:        0.5,
		MinRequests:         20,
		Window:              10 * time.Second,
		OpenTimeout:         30 * time.Second,
		HalfOpenRequests:    3,
		FailureStatuses:     []int{502, 503, 504},
	}
}

func (r *Route) setDefaults() {
	*r = Route{Timeout: 30 * time.Second}
	r.Queue.setDefaults()
}

func (m *Match) setDefaults() { *m = Match{} }

func (f *Fault) setDefaults()      { *f = Fault{} }
func (f *FaultDelay) setDefaults() { *f = FaultDelay{Percent: 100} }
func (f *FaultAbort) setDefaults() { *f = FaultAbort{Status: 503, Percent: 100} }
func (f *FaultReset) setDefaults() { *f = FaultReset{Percent: 100} }

// setDefaults leaves Burst at 0; validation fills it from RPS when the key
// was not written.
func (r *RateLimit) setDefaults() { *r = RateLimit{Key: "none", MaxKeys: 100000, Scope: "local"} }

func (b *Bulkhead) setDefaults() { *b = Bulkhead{MaxConcurrent: 50} }

func (a *Adaptive) setDefaults() { *a = Adaptive{Algorithm: "gradient2", Min: 1, Max: 1000} }

func (q *Queue) setDefaults() {
	*q = Queue{MaxDepth: 100, MaxWait: 250 * time.Millisecond, Discipline: "fifo"}
	q.CoDel.setDefaults()
}

func (c *CoDel) setDefaults() {
	*c = CoDel{Target: 5 * time.Millisecond, Interval: 100 * time.Millisecond}
}

func (p *Priority) setDefaults() {
	*p = Priority{Class: "default"}
	p.ShedAt.setDefaults()
}

func (s *ShedAt) setDefaults() { *s = ShedAt{Critical: 1.0, Default: 0.8, Sheddable: 0.5} }

// Compile-time guards: the decoder relies on these.
var (
	_ defaulter = (*Config)(nil)
	_ defaulter = (*Server)(nil)
	_ defaulter = (*MemoryLimit)(nil)
	_ defaulter = (*TLS)(nil)
	_ defaulter = (*ACME)(nil)
	_ defaulter = (*Admin)(nil)
	_ defaulter = (*Tracing)(nil)
	_ defaulter = (*Monitoring)(nil)
	_ defaulter = (*Upstream)(nil)
	_ defaulter = (*HealthCheck)(nil)
	_ defaulter = (*Breaker)(nil)
	_ defaulter = (*Route)(nil)
	_ defaulter = (*Match)(nil)
	_ defaulter = (*RateLimit)(nil)
	_ defaulter = (*Bulkhead)(nil)
	_ defaulter = (*Queue)(nil)
	_ defaulter = (*Adaptive)(nil)
	_ defaulter = (*CoDel)(nil)
	_ defaulter = (*Priority)(nil)
	_ defaulter = (*ShedAt)(nil)
)
