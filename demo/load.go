package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sluice/clock"
)

// Point is a request rate at a moment of a Schedule.
type Point struct {
	At  time.Duration // since the start of the run
	RPS float64
}

// Schedule is a request rate over time: linear between its points, the
// first point's rate before it and the last point's after. Points are in
// time order; two at the same moment make a step.
type Schedule []Point

// Constant is a schedule of rps requests a second throughout.
func Constant(rps float64) Schedule { return Schedule{{0, rps}} }

// Rate is the schedule's rate at t, in requests per second.
func (s Schedule) Rate(t time.Duration) float64 {
	if len(s) == 0 {
		return 0
	}
	prev := Point{0, s[0].RPS}
	for _, p := range s {
		if t < p.At {
			return prev.RPS + (p.RPS-prev.RPS)*float64(t-prev.At)/float64(p.At-prev.At)
		}
		prev = p
	}
	return prev.RPS
}

// Count is how many requests the schedule sends from the start to t: the
// integral of its rate, rounded down. The generator sends request n (from
// 1) as soon as Count reaches n, so Count is also what a run has sent.
func (s Schedule) Count(t time.Duration) int {
	if len(s) == 0 || t <= 0 {
		return 0
	}
	total := 0.0
	prev := Point{0, s[0].RPS}
	for _, p := range s {
		if p.At <= prev.At {
			prev.RPS = p.RPS // a step, or a first point at 0
			continue
		}
		if t <= p.At {
			r := s.Rate(t)
			total += (prev.RPS + r) / 2 * (t - prev.At).Seconds()
			return roundDown(total)
		}
		total += (prev.RPS + p.RPS) / 2 * (p.At - prev.At).Seconds()
		prev = p
	}
	return roundDown(total + prev.RPS*(t-prev.At).Seconds())
}

// roundDown forgives float error: 0.1 × 30 s must count 3 requests, not 2.
func roundDown(x float64) int { return int(math.Floor(x + 1e-9)) }

// String shows the rates a schedule passes through: "40 → 240 → 40 req/s".
func (s Schedule) String() string {
	var parts []string
	for i, p := range s {
		if i > 0 && p.RPS == s[i-1].RPS {
			continue
		}
		parts = append(parts, strconv.FormatFloat(p.RPS, 'f', -1, 64))
	}
	return strings.Join(parts, " → ") + " req/s"
}

// Stream is one path's share of a load.
type Stream struct {
	Path string // absolute path on Load.Base, with an optional query: "/slow/work"
	Rate Schedule
}

// Load is an open-loop load generator for the demo: requests go out on
// their schedule whatever became of the earlier ones, each in its own
// goroutine, as independent users send them. A closed loop (N workers,
// each waiting for its answer) slows down when the service does and so
// never overloads it; arrivals that keep coming are what admission
// control is for.
//
// It only ever sends to Base, which must be a loopback address: it is for
// the demo's own proxy, not a tool to point at other people's services.
type Load struct {
	// Base is the proxy's base URL, such as "http://127.0.0.1:8080". Its
	// host must be a loopback address or "localhost".
	Base    string
	Streams []Stream
	// Duration bounds the run: nothing is sent after it. Must be positive.
	Duration time.Duration
	// Timeout is each request's client timeout. If zero, 5 s.
	Timeout time.Duration
	// Tick is how often the schedule is consulted; requests due within a
	// tick go out together at its end. If zero, 5 ms.
	Tick time.Duration
	// MaxInFlight bounds the requests outstanding at once: one that falls
	// due while this many are outstanding is counted in Result.Skipped
	// instead of sent. If zero, 4096.
	MaxInFlight int
	// Clock paces the schedule. If nil, the wall clock is used.
	Clock clock.Clock
}

// Result counts what a run did.
type Result struct {
	Sent    int         // requests sent
	Skipped int         // due while MaxInFlight were outstanding, not sent
	Codes   map[int]int // answers by status
	Errors  int         // requests that got no answer (timeout, refused)
}

func (r Result) String() string {
	codes := slices.Sorted(maps.Keys(r.Codes))
	var b strings.Builder
	fmt.Fprintf(&b, "%d sent", r.Sent)
	for i, c := range codes {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%s%d × %d", sep, r.Codes[c], c)
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, "; %d without an answer", r.Errors)
	}
	if r.Skipped > 0 {
		fmt.Fprintf(&b, "; %d skipped (too many outstanding)", r.Skipped)
	}
	return b.String()
}

// ErrNotLoopback is returned for a Base, or refused for a connection,
// that is not on a loopback address.
var ErrNotLoopback = errors.New("the demo load only targets a loopback address")

// Run sends the load until Duration has passed or ctx is done, then waits
// for the requests still outstanding (each bounded by Timeout; cancelled
// at once if ctx is done). It returns ctx's error if ctx ended the run.
func (l *Load) Run(ctx context.Context) (Result, error) {
	base, err := l.check()
	if err != nil {
		return Result{}, err
	}
	clk, tick, timeout, maxInFlight := l.Clock, l.Tick, l.Timeout, l.MaxInFlight
	if clk == nil {
		clk = clock.Real()
	}
	if tick <= 0 {
		tick = 5 * time.Millisecond
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if maxInFlight <= 0 {
		maxInFlight = 4096
	}
	tr := loopbackTransport()
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// A redirect could point anywhere: the answer is counted, not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	urls := make([]string, len(l.Streams))
	for i, s := range l.Streams {
		urls[i] = base.Scheme + "://" + base.Host + s.Path
	}

	var (
		wg       sync.WaitGroup
		inflight atomic.Int64
		mu       sync.Mutex // guards res
		res      = Result{Codes: map[int]int{}}
	)
	send := func(u string) {
		if inflight.Load() >= int64(maxInFlight) {
			res.Skipped++
			return
		}
		res.Sent++
		inflight.Add(1)
		wg.Go(func() {
			defer inflight.Add(-1)
			code := get(ctx, client, u)
			mu.Lock()
			defer mu.Unlock()
			if code == 0 {
				res.Errors++
			} else {
				res.Codes[code]++
			}
		})
	}

	start := clk.Now()
	sent := make([]int, len(l.Streams))
	var runErr error
	for {
		elapsed := min(clk.Now().Sub(start), l.Duration)
		mu.Lock()
		for i, s := range l.Streams {
			for due := s.Rate.Count(elapsed); sent[i] < due; sent[i]++ {
				send(urls[i])
			}
		}
		mu.Unlock()
		if elapsed >= l.Duration {
			break
		}
		t := clk.NewTimer(min(tick, l.Duration-elapsed))
		select {
		case <-ctx.Done():
			t.Stop()
			runErr = ctx.Err()
		case <-t.C():
		}
		if runErr != nil {
			break
		}
	}
	wg.Wait()
	return res, runErr
}

// get sends one request and returns its status, or 0 without an answer.
func get(ctx context.Context, client *http.Client, u string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("User-Agent", "sluice-demo-load")
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// check validates the load before anything is sent.
func (l *Load) check() (*url.URL, error) {
	base, err := url.Parse(l.Base)
	if err != nil {
		return nil, fmt.Errorf("demo load: base URL: %w", err)
	}
	if (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.User != nil ||
		(base.Path != "" && base.Path != "/") || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("demo load: base %q: want http://host:port and nothing more", l.Base)
	}
	if !isLoopbackHost(base.Hostname()) {
		return nil, fmt.Errorf("demo load: base %q: %w", l.Base, ErrNotLoopback)
	}
	if l.Duration <= 0 {
		return nil, errors.New("demo load: the duration must be positive")
	}
	if len(l.Streams) == 0 {
		return nil, errors.New("demo load: no streams")
	}
	for _, s := range l.Streams {
		// "//host/x" would name another host: only a path on base will do.
		p, err := url.Parse(s.Path)
		if err != nil || !strings.HasPrefix(s.Path, "/") || strings.HasPrefix(s.Path, "//") ||
			p.Scheme != "" || p.Host != "" || strings.ContainsAny(s.Path, "\\ #") {
			return nil, fmt.Errorf("demo load: stream path %q: want an absolute path like /slow/work", s.Path)
		}
		for _, pt := range s.Rate {
			if pt.RPS < 0 || math.IsNaN(pt.RPS) || math.IsInf(pt.RPS, 0) {
				return nil, fmt.Errorf("demo load: stream %s: rate %v", s.Path, pt.RPS)
			}
		}
	}
	return base, nil
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// loopbackTransport dials loopback addresses only ("localhost" could be
// made to resolve elsewhere) and never goes through an HTTP proxy from the
// environment.
func loopbackTransport() *http.Transport {
	d := &net.Dialer{
		Timeout: 2 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("dial %s: %w", address, ErrNotLoopback)
			}
			return nil
		},
	}
	return &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024, // open loop at a few hundred a second: reuse, don't churn ports
		IdleConnTimeout:     30 * time.Second,
	}
}
