// Command soak runs sluice in-process under mixed load and faults for a
// bounded time, and reports goroutines, open file descriptors and RSS at
// the start and the end. It exits non-zero if goroutines or descriptors do
// not come back to where they started: a leak under faults.
//
//	go run ./soak -duration 2m
//
// Everything runs on loopback: synthetic upstreams (fast, slow and small,
// flaky, hanging), sluice, and an open-loop load that also abandons some
// requests while they are queued. Faults during the run: the config is
// reloaded every few seconds, and the flaky upstream is killed and
// restarted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sluice/config"
	"sluice/server"
)

func main() {
	duration := flag.Duration("duration", 2*time.Minute, "how long to load (bounded: at most 30m)")
	rps := flag.Int("rps", 300, "offered requests per second, open loop")
	flag.Parse()
	if *duration <= 0 || *duration > 30*time.Minute {
		fmt.Fprintln(os.Stderr, "soak: -duration must be in (0, 30m]")
		os.Exit(2)
	}
	rep, err := run(context.Background(), *duration, *rps, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
	if !rep.flat() {
		fmt.Fprintln(os.Stderr, "soak: resources did not come back to their start: a leak")
		os.Exit(1)
	}
}

// snapshot is the process's resources at one moment.
type snapshot struct {
	goroutines, fds int
	rssKiB          int64
}

func take() snapshot {
	runtime.GC()
	s := snapshot{goroutines: runtime.NumGoroutine()}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.fds = len(ents)
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				s.rssKiB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			}
		}
	}
	return s
}

type report struct {
	start, end        snapshot
	sent, answered    int64
	abandoned, errors int64
	byCode            map[int]int64
	reloads           int
	restarts          int
}

// Small slack: runtime and net/http keep a few goroutines and descriptors
// (timers, the GC's workers) whose number varies run to run.
const slack = 4

func (r *report) flat() bool {
	return r.end.goroutines <= r.start.goroutines+slack && r.end.fds <= r.start.fds+slack
}

// upstream is a restartable synthetic backend on a fixed loopback address.
type upstream struct {
	addr string
	h    http.Handler
	mu   sync.Mutex // guards srv
	srv  *http.Server
}

func (u *upstream) start() error {
	ln, err := net.Listen("tcp", u.addr)
	if err != nil {
		return err
	}
	u.addr = ln.Addr().String()
	srv := &http.Server{Handler: u.h, ReadHeaderTimeout: 5 * time.Second}
	u.mu.Lock()
	u.srv = srv
	u.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

func (u *upstream) kill() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv != nil {
		u.srv.Close() // every connection dropped, as a crash would
		u.srv = nil
	}
}

func newUpstream(h http.Handler) (*upstream, error) {
	u := &upstream{addr: "127.0.0.1:0", h: h}
	return u, u.start()
}

const configTemplate = `
server: {listen: "127.0.0.1:0", access_log: false, shutdown_grace: 5s}
admin: {listen: "127.0.0.1:0"}
upstreams:
  - {name: fast, targets: ["http://%s"]}
  - {name: slow, targets: ["http://%s"], balance: least_inflight}
  - {name: flaky, targets: ["http://%s"], connect_timeout: 200ms, breaker: {consecutive_failures: 5, open_timeout: 1s}}
  - {name: hang, targets: ["http://%s"], response_header_timeout: 200ms}
routes:
  - {name: fast, match: {path_prefix: /fast}, upstream: fast, rate_limit: {rps: %d, burst: 50, key: "header:X-Client"}}
  - {name: slow, match: {path_prefix: /slow}, upstream: slow, bulkhead: {max_concurrent: 8}, queue: {max_depth: 16, max_wait: 100ms}}
  - {name: flaky, match: {path_prefix: /flaky}, upstream: flaky, timeout: 1s}
  - {name: hang, match: {path_prefix: /hang}, upstream: hang, timeout: 300ms}
`

func run(ctx context.Context, duration time.Duration, rps int, out io.Writer) (*report, error) {
	fast, err := newUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	if err != nil {
		return nil, err
	}
	defer fast.kill()
	slots := make(chan struct{}, 10)
	slow, err := newUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		defer func() { <-slots }()
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "ok")
	}))
	if err != nil {
		return nil, err
	}
	defer slow.kill()
	flaky, err := newUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rand.IntN(4) == 0 {
			http.Error(w, "flaky", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	if err != nil {
		return nil, err
	}
	defer flaky.kill()
	hang, err := newUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	if err != nil {
		return nil, err
	}
	defer hang.kill()

	dir, err := os.MkdirTemp("", "sluice-soak")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "sluice.yaml")
	writeConfig := func(fastRPS int) error {
		tmp := path + ".tmp"
		body := fmt.Sprintf(configTemplate, fast.addr, slow.addr, flaky.addr, hang.addr, fastRPS)
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	}
	if err := writeConfig(1000); err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	srv, err := server.New(cfg, server.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ConfigPath: path})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	base := "http://" + srv.ProxyAddr()

	rep := &report{byCode: map[int]int64{}}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 5 * time.Second}
	rep.start = take()

	// Faults on their own schedule.
	loadCtx, stopLoad := context.WithTimeout(ctx, duration)
	defer stopLoad()
	var faults sync.WaitGroup
	faults.Go(func() {
		tick := time.NewTicker(3 * time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
			}
			if writeConfig(500+i%3*500) == nil && srv.Reload() == nil {
				rep.reloads++
			}
			if i%2 == 1 {
				flaky.kill()
				time.Sleep(500 * time.Millisecond)
				if flaky.start() == nil {
					rep.restarts++
				}
			}
		}
	})

	// Open-loop load: requests leave on schedule whatever the answers.
	var mu sync.Mutex
	var inflight sync.WaitGroup
	paths := []string{"/fast", "/fast", "/slow", "/slow", "/flaky", "/hang"}
	interval := time.Second / time.Duration(rps)
	next := time.Now()
	for loadCtx.Err() == nil {
		next = next.Add(interval)
		time.Sleep(time.Until(next))
		p := paths[rand.IntN(len(paths))]
		abandon := rand.IntN(10) == 0 // a client that gives up quickly, often while queued
		atomic.AddInt64(&rep.sent, 1)
		inflight.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if abandon {
				rctx, cancel = context.WithTimeout(ctx, time.Duration(1+rand.IntN(30))*time.Millisecond)
			}
			defer cancel()
			req, _ := http.NewRequestWithContext(rctx, "GET", base+p, nil)
			req.Header.Set("X-Client", strconv.Itoa(rand.IntN(1000)))
			resp, err := client.Do(req)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) && abandon {
					atomic.AddInt64(&rep.abandoned, 1)
				} else {
					atomic.AddInt64(&rep.errors, 1)
				}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			atomic.AddInt64(&rep.answered, 1)
			mu.Lock()
			rep.byCode[resp.StatusCode]++
			mu.Unlock()
		})
	}
	inflight.Wait()
	faults.Wait()
	// Pools of idle keep-alive connections (client → sluice → upstreams)
	// are bounded, not leaks; close them so that what is left is.
	client.CloseIdleConnections()
	srv.Proxy().CloseIdleConnections()

	// Give connections and timers a moment to wind down, then measure.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep.end = take()
		if rep.flat() || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	srv.Shutdown()

	fmt.Fprintf(out, "soak: %s at %d req/s: sent %d, answered %d %v, abandoned by the client %d, client errors %d; %d reloads, %d upstream restarts\n",
		duration, rps, rep.sent, rep.answered, rep.byCode, rep.abandoned, rep.errors, rep.reloads, rep.restarts)
	fmt.Fprintf(out, "             start      end\n")
	fmt.Fprintf(out, "goroutines   %-10d %d\n", rep.start.goroutines, rep.end.goroutines)
	fmt.Fprintf(out, "open fds     %-10d %d\n", rep.start.fds, rep.end.fds)
	fmt.Fprintf(out, "rss          %-10s %s\n", kib(rep.start.rssKiB), kib(rep.end.rssKiB))
	return rep, nil
}

func kib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/1024) }
