// Command redisclients compares github.com/redis/go-redis/v9 and
// github.com/redis/rueidis on sluice's global rate-limit hot path: one
// EVALSHA of take.lua per decision, against a redis-server it starts on a
// free loopback port and kills at the end. It prints markdown tables of
// medians over several alternating runs, then what each client does when a
// call times out, when Redis is killed and restarted, and when it stalls.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	runs := flag.Int("runs", 5, "timed runs per configuration (medians are reported)")
	dur := flag.Duration("dur", 2*time.Second, "length of one timed run")
	concList := flag.String("conc", "1,16,64,256", "caller counts")
	load := flag.Bool("load", true, "run the load comparison")
	faults := flag.Bool("faults", true, "run the timeout, kill/restart and stall checks")
	reps := flag.Int("fault-reps", 3, "repetitions of each fault check")
	flag.Parse()
	script, err := os.ReadFile(takeLuaPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "redisclients runs from its own directory (bench/redisclients): %v\n", err)
		os.Exit(2)
	}
	takeLua = string(script)
	var concs []int
	for _, f := range strings.Split(*concList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bad -conc %q\n", f)
			os.Exit(2)
		}
		concs = append(concs, n)
	}
	s, err := startServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The server must not outlive this process, however it ends.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; s.close(); os.Exit(1) }()
	err = run(os.Stdout, s, *runs, *dur, concs, *load, *faults, *reps)
	s.close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(w io.Writer, s *server, runs int, dur time.Duration, concs []int, load, faults bool, reps int) error {
	ver, _ := s.info("server")
	fmt.Fprintf(w, "machine: nproc=%d GOMAXPROCS=%d %s %s/%s, redis-server %s; %d runs × %v per configuration, clients alternating\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		ver["redis_version"], runs, dur)
	takers := map[string]taker{}
	for _, k := range clientKinds {
		t, err := newTaker(k, s.addr)
		if err != nil {
			return err
		}
		defer t.close()
		takers[k] = t
	}
	for _, deadline := range []time.Duration{0, budget} {
		if !load {
			break
		}
		all := map[string][]*result{}
		for r := range runs {
			for _, conc := range concs {
				order := slices.Clone(clientKinds)
				if r%2 == 1 {
					slices.Reverse(order)
				}
				for _, k := range order {
					res, err := runLoad(takers[k], s, conc, dur, deadline)
					if err != nil {
						return fmt.Errorf("%s conc=%d: %w", k, conc, err)
					}
					key := k + "/" + strconv.Itoa(conc)
					all[key] = append(all[key], res)
					fmt.Fprintf(os.Stderr, "run %d %s conc=%d deadline=%v: %.0f/s p99=%v errs=%d\n",
						r+1, k, conc, deadline, res.throughput(), res.lat.quantile(0.99), res.errs)
				}
			}
		}
		printLoad(w, all, concs, deadline)
	}
	if !faults {
		return nil
	}
	fmt.Fprintf(w, "### A call whose 5 ms deadline expires (Redis paused with SIGSTOP for 20 ms), then the next calls on the same client\n\n")
	fmt.Fprintf(w, "| client | expiring call took | its error | next call | next ok | max of 10 after | errors in 10 after | conns opened | reply mix-up |\n|---|---|---|---|---|---|---|---|---|\n")
	for i := range reps * len(clientKinds) {
		k := clientKinds[i%len(clientKinds)]
		rep, err := checkTimeout(k, s)
		if err != nil {
			return fmt.Errorf("timeout check %s: %w", k, err)
		}
		fmt.Fprintf(w, "| %s | %v | `%s` | %v | %v | %v | %d | %d | %v |\n", rep.client, rd(rep.timedOut), rep.timedOutErr,
			rd(rep.next), rep.nextOK, rd(rep.after10Max), rep.after10Errs, rep.connsOpened, rep.lateReplyMixd)
	}
	fmt.Fprintf(w, "\n### Redis killed (SIGKILL) and restarted on the same port after 1 s, or stalled (SIGSTOP) for 1 s; callers use a 5 ms deadline, 200 µs apart\n\n")
	fmt.Fprintf(w, "| client | fault | callers | fault lasted | calls during | failed | p50 during | max during | > 6 ms | first error | back → first ok | failed after | max after | conns after |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, fault := range []string{"kill", "stall"} {
		for _, conc := range []int{1, 16} {
			for i := range reps * len(clientKinds) {
				k := clientKinds[i%len(clientKinds)]
				rep, err := checkOutage(k, fault, s, conc, time.Second)
				if err != nil {
					return fmt.Errorf("%s check %s: %w", fault, k, err)
				}
				if len(rep.slow) > 0 {
					fmt.Fprintf(os.Stderr, "%s %s conc=%d slow calls: %s\n", k, fault, conc, strings.Join(rep.slow, "; "))
				}
				first := "never"
				if rep.recovered {
					first = rd(rep.toFirstOK).String()
				}
				fmt.Fprintf(w, "| %s | %s | %d | %v | %d | %d | %v | %v | %d | `%s` | %s | %d | %v | %d |\n",
					rep.client, rep.fault, rep.conc, rd(rep.down), rep.callsDuring, rep.failsDuring, rd(rep.p50During),
					rd(rep.maxDuring), rep.overBudgetDuring, rep.errSample, first, rep.failsAfter, rd(rep.maxAfter), rep.connsAfter)
			}
		}
	}
	fmt.Fprintln(w)
	return nil
}

// rd rounds a duration for a table.
func rd(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d
}

func median(rs []*result, f func(*result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func printLoad(w io.Writer, all map[string][]*result, concs []int, deadline time.Duration) {
	title := "no per-call deadline"
	if deadline > 0 {
		title = fmt.Sprintf("%v context deadline per call", deadline)
	}
	fmt.Fprintf(w, "### Load, %s (medians; min–max of throughput in brackets)\n\n", title)
	fmt.Fprintf(w, "| callers | client | decisions/s | p50 | p99 | p999 | allocs/call | client CPU per 1000 | Redis CPU per 1000 | EVALSHA per read(2) | Redis EVALSHA / client calls | net in B/call | inst. ops/s | conns opened | errors | > deadline |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, conc := range concs {
		for _, k := range clientKinds {
			rs := all[k+"/"+strconv.Itoa(conc)]
			if len(rs) == 0 {
				continue
			}
			tp := func(r *result) float64 { return r.throughput() }
			lo, hi := rs[0].throughput(), rs[0].throughput()
			for _, r := range rs {
				lo, hi = min(lo, r.throughput()), max(hi, r.throughput())
			}
			q := func(p float64) time.Duration {
				return rd(time.Duration(median(rs, func(r *result) float64 { return float64(r.lat.quantile(p)) })))
			}
			per1000 := func(f func(*result) time.Duration) time.Duration {
				return rd(time.Duration(median(rs, func(r *result) float64 { return float64(f(r)) * 1000 / float64(max(r.calls, 1)) })))
			}
			over := "–"
			if deadline > 0 {
				over = fmt.Sprintf("%.0f (%.3f%%)", median(rs, func(r *result) float64 { return float64(r.overBudget) }),
					median(rs, func(r *result) float64 { return 100 * float64(r.overBudget) / float64(max(r.calls, 1)) }))
			}
			fmt.Fprintf(w, "| %d | %s | %.0f [%.0f–%.0f] | %v | %v | %v | %.1f | %v | %v | %.2f | %.3f | %.0f | %.0f | %.0f | %.0f | %s |\n",
				conc, k, median(rs, tp), lo, hi, q(0.50), q(0.99), q(0.999),
				median(rs, (*result).allocsPerCall),
				per1000(func(r *result) time.Duration { return r.cpu }),
				per1000(func(r *result) time.Duration { return r.redisCPU }),
				median(rs, func(r *result) float64 { return float64(r.redisCalls) / float64(max(r.redisReads, 1)) }),
				median(rs, func(r *result) float64 { return float64(r.redisCalls) / float64(max(r.calls, 1)) }),
				median(rs, func(r *result) float64 { return float64(r.netIn) / float64(max(r.calls, 1)) }),
				median(rs, func(r *result) float64 { return float64(r.instOps) }),
				median(rs, func(r *result) float64 { return float64(r.connsOpened) }),
				median(rs, func(r *result) float64 { return float64(r.errs) }),
				over)
		}
	}
	fmt.Fprintln(w)
}
