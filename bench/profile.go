package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"sluice/config"
	"sluice/server"
)

// runProfileRole is sluice as `sluice run` runs it (server.New on the same
// config), in this process so that it can write CPU and allocation
// profiles, which the sluice binary has no endpoint for. It serves until
// stdin closes or life passes.
func runProfileRole(cfgPath, cpuOut, memOut string, life time.Duration) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, server.Options{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	if err := srv.Start(context.Background()); err != nil {
		return err
	}
	runtime.MemProfileRate = 64 << 10 // enough samples in a short run
	f, err := os.Create(cpuOut)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	fmt.Println(srv.ProxyAddr())
	stdinGone := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdinGone) }()
	select {
	case <-stdinGone:
	case <-time.After(life):
	}
	pprof.StopCPUProfile()
	f.Close()
	mf, err := os.Create(memOut)
	if err != nil {
		return err
	}
	defer mf.Close()
	if err := pprof.Lookup("allocs").WriteTo(mf, 0); err != nil {
		return err
	}
	srv.Shutdown()
	return nil
}

// cpuShare is the share of CPU samples whose stack passes through some
// function matching a pattern: where the proxy's time goes.
type cpuShare struct {
	What    string
	Pattern string
	Self    bool // samples in the matching functions themselves, not below them
	Share   float64
}

// cpuBuckets overlap by nature (a syscall made by the transport counts in
// both): each row answers "how much of the time passes through this". The
// rows marked Self count only time spent in the functions' own code, not in
// what they call (the standard library, the runtime).
var cpuBuckets = []cpuShare{
	{What: "sluice's HTTP/1.1 loop (h1serve): reading and parsing requests", Pattern: `h1serve\.\(\*conn\)\.readHead`},
	{What: "sluice's HTTP/1.1 loop (h1serve): writing responses (flush at the end of each)", Pattern: `h1serve\.\(\*response\)\.finish`},
	{What: "net/http server (connections the loop hands off: bodies, upgrades, HTTP/1.0)", Pattern: `net/http\.\(\*conn\)\.serve`},
	{What: "forwarding: sluice's direct path (forwardDirect), with its syscalls", Pattern: `sluice/proxy\.\(\*Proxy\)\.forwardDirect`},
	{What: "forwarding: httputil.ReverseProxy.ServeHTTP (bodies, upgrades, https, traced)", Pattern: `httputil\.\(\*ReverseProxy\)\.ServeHTTP`},
	{What: "http.Transport: its writer and reader goroutines (requests with bodies)", Pattern: `net/http\.\(\*persistConn\)\.(writeLoop|readLoop)`},
	{What: "sluice's HTTP/1.1 upstream client (proxy/internal/h1), with its syscalls", Pattern: `sluice/proxy/internal/h1\.`},
	{What: "syscalls (read, write, epoll)", Pattern: `^syscall\.|internal/runtime/syscall|runtime\.netpoll`},
	{What: "allocation (mallocgc, with its GC assists)", Pattern: `runtime\.mallocgc`},
	{What: "background garbage collection", Pattern: `runtime\.gcBgMarkWorker|runtime\.bgsweep|runtime\.bgscavenge`},
	{What: "goroutine scheduling", Pattern: `runtime\.schedule$|runtime\.findRunnable|runtime\.park_m|runtime\.goready|runtime\.wakep`},
	{What: "sluice's own code (routing, admission, counters, headers), self", Pattern: `^sluice/`, Self: true},
	{What: "admission (sluice's admission, bulkhead, breaker; x/time/rate), self", Pattern: `^sluice/(admission|bulkhead|breaker)\.|golang\.org/x/time/rate`, Self: true},
	{What: "Prometheus histograms and sluice's latency windows, self", Pattern: `prometheus|^sluice/monitor\.`, Self: true},
}

var showingRE = regexp.MustCompile(`Showing nodes accounting for [^,]+, ([0-9.]+)% of`)

// profileShares reads the share of each bucket from go tool pprof: for a
// stack bucket, the share -focus reports (no node dropped, so "Showing
// nodes accounting for" is every sample whose stack passes through a
// matching function); for a Self bucket, the sum of the flat shares of the
// matching functions in the full -top listing.
func profileShares(cpuProfile string) ([]cpuShare, string, error) {
	all, err := exec.Command("go", "tool", "pprof", "-top", "-nodefraction=0", "-nodecount=1000000", cpuProfile).CombinedOutput()
	if err != nil {
		return nil, "", fmt.Errorf("pprof: %v: %s", err, all)
	}
	var out []cpuShare
	for _, b := range cpuBuckets {
		if b.Self {
			b.Share = flatShare(string(all), regexp.MustCompile(b.Pattern))
			out = append(out, b)
			continue
		}
		res, err := exec.Command("go", "tool", "pprof", "-top", "-nodefraction=0", "-nodecount=1000000", "-focus="+b.Pattern, cpuProfile).CombinedOutput()
		if err != nil {
			return nil, "", fmt.Errorf("pprof: %v: %s", err, res)
		}
		m := showingRE.FindSubmatch(res)
		if m == nil {
			b.Share = 0 // nothing matched
		} else {
			b.Share, _ = strconv.ParseFloat(string(m[1]), 64)
		}
		out = append(out, b)
	}
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=20", cpuProfile).CombinedOutput()
	if err != nil {
		return nil, "", fmt.Errorf("pprof: %v: %s", err, top)
	}
	return out, trimPprofHeader(string(top)), nil
}

// flatShare sums the flat% column of pprof -top rows whose function
// matches re.
func flatShare(top string, re *regexp.Regexp) float64 {
	var sum float64
	for _, l := range strings.Split(top, "\n") {
		f := strings.Fields(l)
		// flat flat% sum% cum cum% name [(inline)]
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") {
			continue
		}
		name := f[5]
		if !re.MatchString(name) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// allocTop is the top of the allocation profile by objects.
func allocTop(memProfile string) (string, error) {
	top, err := exec.Command("go", "tool", "pprof", "-sample_index=alloc_objects", "-top", "-nodecount=15", memProfile).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pprof: %v: %s", err, top)
	}
	return trimPprofHeader(string(top)), nil
}

// trimPprofHeader drops pprof's File/Build ID/Time lines, which change on
// every run and say nothing to a reader.
func trimPprofHeader(s string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") || strings.HasPrefix(l, "Type:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}
