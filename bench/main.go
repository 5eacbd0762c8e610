// Command bench measures sluice against the proxies people run today —
// nginx, HAProxy, Caddy and Go's plain httputil.ReverseProxy — on this
// machine's loopback, and writes docs/BENCHMARKS.md with its charts.
//
//	go run ./bench            the full run (about 9 minutes), into docs/
//	go run ./bench -quick     a short run (about 2 minutes) to check it works,
//	                          into a temporary directory unless -out is given
//
// Scenarios:
//   - overhead: a fast upstream, closed-loop wrk with 64 connections,
//     direct, through a minimal Go forwarder (the floor of Go's runtime,
//     bench/floor.go) and through each proxy; requests/s, p50, p99.
//   - overload: an upstream of capacity 1000 req/s (20 at once, 20 ms each),
//     open-loop arrivals at 0.5×, 2×, 5× and 10× capacity, each proxy with
//     its closest admission control; goodput, latencies of admitted and
//     refused requests, Retry-After, lost requests, peak RSS.
//   - profile: sluice under the overhead load with CPU and allocation
//     profiles.
//   - scaling: routing cost with 10, 1 000 and 10 000 routes, and memory
//     with 1 million distinct rate-limit keys.
//   - sluice9 (sluice only, about a minute): priority classes at
//     5× overload with 10 % critical traffic; adaptive concurrency
//     (gradient2, aimd) when the upstream's capacity halves mid-run (the
//     upstream's control endpoint POST /_bench/slots?n=N); the fifo and
//     codel queue disciplines at sustained 5× overload.
//   - global (sluice only, about half a minute): a global rate limit
//     through a real redis-server: its overhead against a local one, and
//     three replicas sharing one limit at 5× its rate.
//
// The peers are Debian's packages, installed with apt-get when missing,
// each run in the foreground with its own config on free loopback ports and
// stopped at the end of its scenario. All load goes to 127.0.0.1, and every
// process the harness starts ends by itself when the harness does.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type settings struct {
	Quick        bool
	WrkWarmup    time.Duration
	WrkDuration  time.Duration
	WrkReps      int
	LoadWarmup   time.Duration
	LoadDuration time.Duration
	LoadTimeout  time.Duration
	LoadMaxConns int
	Rates        []float64 // multiples of capacity
	ProfileFor   time.Duration
	RoutingCount int
	RoutingTime  string
	Keys         int
}

func fullSettings() settings {
	return settings{
		WrkWarmup: 2 * time.Second, WrkDuration: 8 * time.Second, WrkReps: 3,
		LoadWarmup: 2 * time.Second, LoadDuration: 8 * time.Second, LoadTimeout: 2 * time.Second, LoadMaxConns: 4000,
		Rates:      []float64{0.5, 2, 5, 10},
		ProfileFor: 10 * time.Second, RoutingCount: 6, RoutingTime: "500ms", Keys: 1_000_000,
	}
}

func quickSettings() settings {
	s := fullSettings()
	s.Quick = true
	s.WrkWarmup, s.WrkDuration, s.WrkReps = time.Second, 2*time.Second, 1
	s.LoadWarmup, s.LoadDuration = 500*time.Millisecond, time.Second
	s.Rates = []float64{0.5, 2, 10}
	s.ProfileFor = 3 * time.Second
	s.RoutingCount, s.RoutingTime = 1, "100ms"
	return s
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	quick := flag.Bool("quick", false, "short run to check the harness works (about 2 minutes)")
	out := flag.String("out", "", "directory for BENCHMARKS.md and the charts (default: docs/ of the module, or a temporary directory with -quick)")
	noInstall := flag.Bool("no-install", false, "do not apt-get install missing peers; skip the scenarios that need them")
	only := flag.String("only", "", "comma-separated scenarios to run (overhead, overload, saturated, profile, scaling, sluice9, global); default all")
	render := flag.Bool("render", false, "rewrite the doc and charts from the saved bench-results.json; run nothing")
	// Child roles: this binary started again by the harness.
	role := flag.String("role", "", "internal: run as a child role (upstream, plainproxy, floor, guard, profile)")
	listen := flag.String("listen", "127.0.0.1:0", "internal: listen address of a role")
	slots := flag.Int("slots", 0, "internal: upstream concurrency (0 = unlimited, no service time)")
	service := flag.Duration("service", 0, "internal: upstream service time")
	plain := flag.Bool("plain", false, "internal: upstream workers sleep the service time without paying back timer lateness")
	target := flag.String("target", "", "internal: plainproxy's and floor's upstream URL")
	life := flag.Duration("life", childLife, "internal: a role's longest life")
	work := flag.Duration("work", 0, "internal: floor's busy CPU per request")
	logPath := flag.String("log", "", "internal: guard's log file")
	cfgPath := flag.String("config", "", "internal: profile role's sluice config")
	cpuOut := flag.String("cpuprofile", "", "internal: profile role's CPU profile")
	memOut := flag.String("memprofile", "", "internal: profile role's allocation profile")
	var env, sluiceEnv multiFlag
	flag.Var(&env, "env", "internal: guard's extra environment (repeatable)")
	flag.Var(&sluiceEnv, "sluice-env", "extra environment for the sluice process, e.g. GOGC=400 (repeatable; for experiments)")
	flag.Parse()

	if *role != "" {
		var err error
		switch *role {
		case "upstream":
			err = runUpstreamRole(*listen, *slots, *service, *plain, *life)
		case "plainproxy":
			err = runPlainProxyRole(*listen, *target, *life)
		case "floor":
			err = runFloorRole(*listen, *target, *life, *work)
		case "guard":
			err = runGuard(*logPath, *life, env, flag.Arg(0), flag.Args()[1:])
		case "profile":
			err = runProfileRole(*cfgPath, *cpuOut, *memOut, *life)
		default:
			err = fmt.Errorf("unknown role %q", *role)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", *role, err)
			os.Exit(1)
		}
		return
	}

	s := fullSettings()
	if *quick {
		s = quickSettings()
	}
	if *render {
		h := &harness{s: s, out: *out}
		if h.out == "" {
			root, err := moduleRoot()
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: %v\n", err)
				os.Exit(1)
			}
			h.out = filepath.Join(root, "docs")
		}
		if err := h.render(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	h, err := newHarness(s, *out, *noInstall, *only)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	h.sluiceEnv = sluiceEnv
	// A signal ends the run: children see their stdin close and stop.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The whole run is bounded whatever happens.
	ctx, cancel := context.WithTimeout(ctx, 14*time.Minute)
	defer cancel()
	err = h.run(ctx)
	h.cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// moduleRoot is the directory of sluice's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run bench from inside the sluice module")
	}
	return filepath.Dir(mod), nil
}
