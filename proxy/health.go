package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"sluice/config"
)

// healthChecker actively checks every target of one upstream. A target
// leaves rotation after unhealthy_after failed checks in a row and returns
// after healthy_after good ones. Targets start in rotation (as Envoy treats
// new hosts), so a restart does not refuse traffic for the first intervals.
type healthChecker struct {
	up     *Upstream
	cfg    config.HealthCheck
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	nextRound atomic.Int64 // Unix nanoseconds of the next scheduled round
	mu        sync.Mutex   // serialises rounds: guards the targets' streaks
}

func newHealthChecker(u *Upstream, c config.HealthCheck, log *slog.Logger) *healthChecker {
	return &healthChecker{
		up:  u,
		cfg: c,
		client: &http.Client{
			Transport: u.tr,
			Timeout:   c.Timeout,
			// A redirect is an answer: 3xx counts as healthy, never followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log: log.With("upstream", u.name),
		now: time.Now,
	}
}

// run checks all targets every interval until ctx is done. A panic in a
// round is logged and the loop goes on: a bug in checking must not take the
// targets' health state down with it.
func (h *healthChecker) run(ctx context.Context) {
	tick := time.NewTicker(h.cfg.Interval)
	defer tick.Stop()
	for {
		h.nextRound.Store(h.now().Add(h.cfg.Interval).UnixNano())
		h.safeRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (h *healthChecker) safeRound(ctx context.Context) {
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("health check panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	h.CheckNow(ctx)
}

// CheckNow runs one round of checks on every target concurrently and applies
// the results. Tests call it to drive checks by hand.
func (h *healthChecker) CheckNow(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ok := make([]bool, len(h.up.targets))
	var wg sync.WaitGroup
	for i, t := range h.up.targets {
		wg.Go(func() { ok[i] = h.check(ctx, t) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // a cancelled round says nothing about the targets
	}
	changed := false
	for i, t := range h.up.targets {
		if h.applyLocked(t, ok[i]) {
			changed = true
		}
	}
	if changed {
		h.up.refreshHealthy()
	}
}

// applyLocked records one result and reports whether the target moved in
// or out of rotation.
func (h *healthChecker) applyLocked(t *Target, ok bool) bool {
	if ok {
		t.okStreak++
		t.failStreak = 0
		if !t.healthy.Load() && t.okStreak >= h.cfg.HealthyAfter {
			t.healthy.Store(true)
			h.log.Info("target healthy again", "target", t.URL.String(), "after_checks", t.okStreak)
			return true
		}
		return false
	}
	t.failStreak++
	t.okStreak = 0
	if t.healthy.Load() && t.failStreak >= h.cfg.UnhealthyAfter {
		t.healthy.Store(false)
		h.log.Warn("target unhealthy, out of rotation", "target", t.URL.String(), "after_checks", t.failStreak)
		return true
	}
	return false
}

func (h *healthChecker) check(ctx context.Context, t *Target) bool {
	u := *t.URL
	u.Path = singleJoin(u.Path, h.cfg.Path)
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "sluice-health-check")
	resp, err := h.client.Do(req)
	if err != nil {
		return false
	}
	// Drain a little so the connection can be reused, then close.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// retryAfter is the time until the next round of checks, the earliest a
// target can come back: the Retry-After of no_healthy_upstream.
func (h *healthChecker) retryAfter() time.Duration {
	d := time.Duration(h.nextRound.Load() - h.now().UnixNano())
	if d <= 0 {
		return h.cfg.Interval
	}
	return d
}

func singleJoin(a, b string) string {
	switch {
	case a == "" || a == "/":
		return b
	case a[len(a)-1] == '/' && b[0] == '/':
		return a + b[1:]
	case a[len(a)-1] != '/' && b[0] != '/':
		return a + "/" + b
	}
	return a + b
}
