package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"sluice/breaker"
	"sluice/clock"
	"sluice/config"
	"sluice/monitor"
	"sluice/proxy/internal/direct"
	"sluice/proxy/internal/h1"
)

// Target is one backend address of an upstream.
type Target struct {
	URL      *url.URL
	inflight atomic.Int64 // requests forwarded and not yet finished
	healthy  atomic.Bool  // written by the health checker only

	// Health-check streaks, touched only by the checker's apply step.
	okStreak, failStreak int
}

// Inflight returns the number of requests in flight to the target.
func (t *Target) Inflight() int64 { return t.inflight.Load() }

// Healthy reports whether the target is in rotation.
func (t *Target) Healthy() bool { return t.healthy.Load() }

// Upstream is a named pool of targets with its own transport, balancer and
// health checker.
type Upstream struct {
	cfg      config.Upstream // as configured, to tell an unchanged upstream on reload
	name     string
	balance  string
	targets  []*Target
	healthy  atomic.Pointer[[]*Target] // snapshot of the targets in rotation
	balancer Balancer
	tr       *http.Transport // for health checks, and what h1 hands on
	h1       *h1.Transport   // forwards requests: the common ones itself
	rp       *httputil.ReverseProxy
	health   *healthChecker     // nil without health_check
	br       *breaker.Breaker   // nil without breaker
	codes    codeCounts         // upstream answers by status; 502/504 for no answer
	errs     *monitor.ErrorRing // its recent failures, for the admin API

	stopMu       sync.Mutex // guards healthCancel, healthDone
	healthCancel context.CancelFunc
	healthDone   chan struct{} // closed when the health loop has returned
}

// startHealth runs the upstream's health checks under ctx until stopHealth.
func (u *Upstream) startHealth(ctx context.Context, wg *sync.WaitGroup) {
	if u.health == nil {
		return
	}
	u.stopMu.Lock()
	defer u.stopMu.Unlock()
	if u.healthCancel != nil {
		return // already running: an upstream carried over by a reload
	}
	ctx, u.healthCancel = context.WithCancel(ctx)
	done := make(chan struct{})
	u.healthDone = done
	wg.Go(func() {
		defer close(done)
		u.health.run(ctx)
	})
}

// stopHealth ends the health checks of an upstream a reload removed, and
// returns once the loop has: no probe is sent after it.
func (u *Upstream) stopHealth() {
	u.stopMu.Lock()
	cancel, done := u.healthCancel, u.healthDone
	u.stopMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Codes calls f for each status code the upstream answered, in order.
func (u *Upstream) Codes(f func(code int, n uint64)) { u.codes.each(f) }

// Balance returns the balancing policy's name.
func (u *Upstream) Balance() string { return u.balance }

// Name returns the upstream's configured name.
func (u *Upstream) Name() string { return u.name }

// Targets returns the upstream's targets, healthy or not.
func (u *Upstream) Targets() []*Target { return u.targets }

// Breaker returns the upstream's circuit breaker, or nil.
func (u *Upstream) Breaker() *breaker.Breaker { return u.br }

// SharedBreaker reports whether the breaker's trips are shared with the
// other replicas (breaker.shared with a redis block).
func (u *Upstream) SharedBreaker() bool { return u.br != nil && u.cfg.Breaker.Shared }

func newUpstream(c config.Upstream, log *slog.Logger, clk clock.Clock) (*Upstream, error) {
	bal, err := newBalancer(c.Balance)
	if err != nil {
		return nil, err
	}
	u := &Upstream{cfg: c, name: c.Name, balancer: bal, balance: c.Balance, errs: monitor.NewErrorRing(clk)}
	urls := c.TargetURLs
	if urls == nil { // config not validated by Parse (e.g. built in code)
		for _, s := range c.Targets {
			pu, err := url.Parse(s)
			if err != nil {
				return nil, err
			}
			urls = append(urls, pu)
		}
	}
	for _, pu := range urls {
		t := &Target{URL: pu}
		t.healthy.Store(true) // in rotation until health checks say otherwise
		u.targets = append(u.targets, t)
	}
	u.refreshHealthy()
	u.tr = newTransport(c, u.targets)
	u.h1 = h1.NewTransport(u.tr, c.MaxIdleConns, c.ResponseHeaderTimeout)
	u.rp = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		ModifyResponse: recordStatus,
		Transport:      u.h1,
		BufferPool:     direct.BufferPool{},
		ErrorHandler:   errorHandler,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if c.HealthCheck != nil {
		u.health = newHealthChecker(u, *c.HealthCheck, log)
	}
	if c.Breaker != nil {
		u.br = breaker.New(c.Name, *c.Breaker, clk)
	}
	return u, nil
}

// newTransport builds the upstream's own transport so that one slow pool
// cannot exhaust another's connections.
func newTransport(c config.Upstream, targets []*Target) *http.Transport {
	d := &net.Dialer{Timeout: c.ConnectTimeout, KeepAlive: 30 * time.Second}
	// Defence in depth: whatever a request says, this transport dials only
	// the upstream's configured targets (the rewrite already guarantees it).
	allowed := make(map[string]bool, len(targets))
	for _, t := range targets {
		allowed[h1.CanonicalAddr(t.URL)] = true
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !allowed[addr] {
			return nil, fmt.Errorf("proxy: refusing to dial %s: not a configured target of upstream %q", addr, c.Name)
		}
		return d.DialContext(ctx, network, addr)
	}
	return &http.Transport{
		Proxy:                 nil, // never route upstream traffic through $HTTP_PROXY
		DialContext:           dial,
		ForceAttemptHTTP2:     true, // h2 to https targets that offer it
		TLSHandshakeTimeout:   c.ConnectTimeout,
		ResponseHeaderTimeout: c.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          c.MaxIdleConns * len(targets),
		MaxIdleConnsPerHost:   c.MaxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		// Pass the client's Accept-Encoding through untouched: the transport
		// must not add gzip and transparently decompress on the proxy's CPU.
		DisableCompression: true,
	}
}

// pick returns a healthy target. If health checks took the last target out
// of rotation after the request was admitted (a race of nanoseconds, since
// serveRoute checks first), it picks among all targets rather than refuse an
// admitted request: every admitted request is forwarded, which keeps the
// accounting exact.
func (u *Upstream) pick() *Target {
	ts := *u.healthy.Load()
	if len(ts) == 0 {
		ts = u.targets
	}
	return u.balancer.Pick(ts)
}

// anyHealthy reports whether some target is in rotation.
func (u *Upstream) anyHealthy() bool { return len(*u.healthy.Load()) > 0 }

// refreshHealthy rebuilds the snapshot of targets in rotation.
func (u *Upstream) refreshHealthy() {
	hs := make([]*Target, 0, len(u.targets))
	for _, t := range u.targets {
		if t.healthy.Load() {
			hs = append(hs, t)
		}
	}
	u.healthy.Store(&hs)
}

func (u *Upstream) close() {
	u.h1.CloseIdleConnections()
}

// noHealthyRetryAfter is the Retry-After of no_healthy_upstream: the time
// until the next round of health checks.
func (u *Upstream) noHealthyRetryAfter() time.Duration {
	if u.health == nil {
		return time.Second
	}
	return u.health.retryAfter()
}
