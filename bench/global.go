package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The global scenario, sluice only: global rate limits shared through a
// real redis-server started by the harness. (a) The overhead of a global
// limit that never triggers against the same limit kept locally, with
// Redis's commands per request. (b) Three replicas sharing one limit at 5×
// its rate: the admitted total against the bucket's bound.

type globalResult struct {
	Local, Global   wrkResult
	LocalN, GlobalN float64 // requests wrk sent in the counted runs
	OverheadCmds    int64   // Redis script calls during the global runs
	Rounds          int     // wrk runs per limit, alternating
	ReplicaRate     float64 // R: the shared limit's rps
	ReplicaBurst    int     // B
	ReplicaOffered  float64 // req/s over all replicas
	ReplicaWarmup   time.Duration
	Runs            []replicaRun // one per redis.timeout
	Err             string
}

// replicaRun is the three replicas' run with one decision timeout.
type replicaRun struct {
	Timeout    time.Duration // redis.timeout
	Replicas   []*openResult
	Cmds       int64 // Redis script calls during the run
	Measured   time.Duration
	Tolerance  float64 // N × 1.5 × lease cap
	RetryShare float64
	StoreDowns int // "redis store down" lines in the replicas' logs
}

const (
	gRate, gBurst, gReplicas = 300, 150, 3
)

func (h *harness) runGlobal(ctx context.Context) error {
	r := &globalResult{ReplicaRate: gRate, ReplicaBurst: gBurst}
	h.res.Global = r
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		r.Err = "redis-server is not installed"
		return fmt.Errorf("global: %s", r.Err)
	}
	redisAddr, err := freePort()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(redisAddr)
	rp, err := startGuarded("redis", filepath.Join(h.tmp, "redis.log"), bin,
		[]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", h.tmp}, nil)
	if err != nil {
		return err
	}
	defer rp.stop()
	if err := waitRedis(redisAddr); err != nil {
		return err
	}
	redisBlock := fmt.Sprintf("redis: {addrs: [%q]}", redisAddr)

	// (a) Overhead: fast upstream, closed-loop wrk as in the overhead scenario.
	if h.havePeers {
		up, err := h.startUpstream(0, 0)
		if err != nil {
			return err
		}
		type variant struct {
			name, route string
			res         *wrkResult
			n           *float64
			p           *proc
			addr        string
			runs        []wrkResult
		}
		vs := []*variant{
			{name: "local", route: "    rate_limit: {rps: 1000000000, burst: 1000000000}", res: &r.Local, n: &r.LocalN},
			{name: "global", route: "    rate_limit: {rps: 1000000000, burst: 1000000000, scope: global}\n" + redisBlock, res: &r.Global, n: &r.GlobalN},
		}
		stopAll := func() {
			up.stop()
			for _, v := range vs {
				if v.p != nil {
					v.p.stop()
				}
			}
		}
		for _, v := range vs {
			if v.p, v.addr, _, err = runSluice(h, "global-"+v.name, up.line, v.route, false, nil); err != nil {
				stopAll()
				return err
			}
		}
		// The two limits alternate, WrkReps rounds each, so that whatever
		// else loads the machine falls on both alike; the table shows the
		// medians.
		for i := 0; i < max(1, h.s.WrkReps); i++ {
			for _, v := range vs {
				before := redisCalls(redisAddr)
				res, err := h.wrkCell("http://"+v.addr+"/", v.p)
				after := redisCalls(redisAddr)
				if err != nil {
					stopAll()
					return err
				}
				v.runs = append(v.runs, res)
				*v.n += res.RPS * h.s.WrkDuration.Seconds()
				if v.name == "global" {
					r.OverheadCmds += after - before
				}
				h.logf("global overhead %-6s %8.0f req/s p50 %v p99 %v", v.name, res.RPS, res.P50, res.P99)
			}
		}
		for _, v := range vs {
			*v.res = medianLatencies(v.runs)
		}
		r.Rounds = len(vs[0].runs)
		stopAll()
	} else {
		h.note("global overhead skipped: wrk is not installed (-no-install)")
	}

	// (b) Three replicas at 5× the shared limit, with the default decision
	// timeout and a looser one.
	r.ReplicaOffered = 5 * gRate
	r.ReplicaWarmup = h.s.LoadWarmup
	for _, timeout := range []time.Duration{5 * time.Millisecond, 50 * time.Millisecond} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		run, err := h.globalReplicas(ctx, redisAddr, timeout, r.ReplicaOffered)
		if err != nil {
			return err
		}
		r.Runs = append(r.Runs, run)
		ok, rej := 0, 0
		for _, x := range run.Replicas {
			ok, rej = ok+x.OK, rej+x.Rejected
		}
		h.logf("global replicas, timeout %v: admitted %d in %v (bound %.0f), refused %d, %d Redis calls, %d store-down events",
			timeout, ok, run.Measured, run.bound(gRate, gBurst), rej, run.Cmds, run.StoreDowns)
	}
	return nil
}

func (h *harness) globalReplicas(ctx context.Context, redisAddr string, timeout time.Duration, offered float64) (replicaRun, error) {
	run := replicaRun{Timeout: timeout, Tolerance: gReplicas * 1.5 * float64(max(1, gBurst/(8*gReplicas)))}
	up, err := h.startUpstream(0, 0)
	if err != nil {
		return run, err
	}
	defer up.stop()
	if err := redisFlush(redisAddr); err != nil {
		return run, err
	}
	route := fmt.Sprintf("    rate_limit: {rps: %d, burst: %d, scope: global, replicas: %d}\nredis: {addrs: [%q], timeout: %s}",
		gRate, gBurst, gReplicas, redisAddr, timeout)
	var addrs, logs []string
	for i := range gReplicas {
		name := fmt.Sprintf("global-%s-replica-%d", timeout, i)
		p, addr, _, err := runSluice(h, name, up.line, route, false, nil)
		if err != nil {
			return run, err
		}
		defer p.stop()
		if err := waitReady("http://" + addr + "/"); err != nil {
			return run, err
		}
		addrs = append(addrs, addr)
		logs = append(logs, filepath.Join(h.tmp, name+".log"))
	}
	dur := 10 * time.Second
	if h.s.Quick {
		dur = 3 * time.Second
	}
	before := redisCalls(redisAddr)
	run.Replicas = make([]*openResult, gReplicas)
	var wg sync.WaitGroup
	errs := make([]error, gReplicas)
	for i, addr := range addrs {
		wg.Go(func() {
			run.Replicas[i], errs[i] = runOpen(ctx, openLoad{Addr: addr, Path: "/", Rate: offered / gReplicas,
				Warmup: h.s.LoadWarmup, Duration: dur, Timeout: h.s.LoadTimeout, MaxConns: h.s.LoadMaxConns})
		})
	}
	wg.Wait()
	run.Cmds = redisCalls(redisAddr) - before
	for _, err := range errs {
		if err != nil {
			return run, err
		}
	}
	run.Measured = run.Replicas[0].Measured
	rej, hint := 0, 0
	for _, x := range run.Replicas {
		rej, hint = rej+x.Rejected, hint+x.RetryHint
	}
	run.RetryShare = 1
	if rej > 0 {
		run.RetryShare = float64(hint) / float64(rej)
	}
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			run.StoreDowns += strings.Count(string(b), "redis store down")
		}
	}
	return run, nil
}

// bound is the most the replicas may admit in the counted window: the
// bucket's rps × t + burst, plus the lease tolerance. Requests of the
// warm-up drain the bucket first, so the burst is an upper allowance.
func (r replicaRun) bound(rps float64, burst int) float64 {
	return rps*r.Measured.Seconds() + float64(burst) + r.Tolerance
}

// waitRedis waits until Redis answers PING.
func waitRedis(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s did not answer", addr)
}

// redisFlush empties Redis, so that a run starts from full buckets.
func redisFlush(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.FlushAll(ctx).Err()
}

// redisCalls is the script calls (EVALSHA and EVAL) Redis has served, from
// INFO commandstats; -1 if it cannot tell.
func redisCalls(addr string) int64 {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return -1
	}
	var n int64
	for _, line := range strings.Split(v, "\n") {
		for _, c := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), c); ok {
				k, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
				n += k
			}
		}
	}
	return n
}

// medianLatencies is the median of each figure over runs taken apart:
// throughput, p50 and p99.
func medianLatencies(runs []wrkResult) wrkResult {
	if len(runs) == 0 {
		return wrkResult{}
	}
	mid := func(f func(wrkResult) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		return median(v)
	}
	m := runs[0]
	m.RPS = mid(func(r wrkResult) float64 { return r.RPS })
	m.P50 = time.Duration(mid(func(r wrkResult) float64 { return float64(r.P50) }))
	m.P99 = time.Duration(mid(func(r wrkResult) float64 { return float64(r.P99) }))
	return m
}

func globalSection(r *globalResult, when string) string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## Global rate limits (Redis)\n\n")
	p("sluice only, with a real `redis-server` on loopback. Run with `go run ./bench -only global`")
	if when != "" {
		p(" (this run: %s UTC)", when)
	}
	p(". A global limit leases tokens from the shared\nbucket and spends them locally (README, \"Replicas\"), so Redis sees one script call per lease.\n\n")
	if r.Err != "" {
		p("Not run: %s.\n\n", r.Err)
		return b.String()
	}
	if r.Local.RPS > 0 {
		p("### (a) Overhead of a global limit that never triggers\n\n")
		p("The overhead scenario's fast upstream and closed-loop wrk (64 connections), one route with\n`rate_limit: {rps: 1e9, burst: 1e9}`, kept locally or `scope: global`; the two alternate, %d runs\neach, and the table shows each figure's median.\n\n", r.Rounds)
		p("| limit | req/s | p50 | p99 | Redis calls per request |\n|---|--:|--:|--:|--:|\n")
		p("| local | %s | %s | %s | – |\n", thousands(r.Local.RPS), ms(r.Local.P50), ms(r.Local.P99))
		per := "?"
		if r.GlobalN > 0 && r.OverheadCmds >= 0 {
			per = fmt.Sprintf("%.6f", float64(r.OverheadCmds)/r.GlobalN)
		}
		p("| global | %s | %s | %s | %s |\n\n", thousands(r.Global.RPS), ms(r.Global.P50), ms(r.Global.P99), per)
		p("Added p99: %s (target ≤ 1 ms). With one Redis call per thousands of requests, what a global\n", ms(r.Global.P99-r.Local.P99))
		p("limit adds to a request is the lease's local arithmetic: `BenchmarkGlobalAllow` in `admission/`\n")
		p("(about 150 ns, 0 allocations); the p99 difference between the rows is the closed loop's noise on\ntwo shared cores.\n\n")
	}
	p("### (b) Three replicas at 5× the shared limit\n\n")
	p("Three sluice processes, route `rate_limit: {rps: %.0f, burst: %d, scope: global, replicas: 3}`,\n", r.ReplicaRate, r.ReplicaBurst)
	p("open-loop arrivals of %.0f req/s split evenly over them (after %s of warm-up), an upstream with\n", r.ReplicaOffered, r.ReplicaWarmup)
	p("no limit of its own; once with the default `redis.timeout: 5ms`, once with 50ms. The bound is\n")
	p("rps × t + burst plus the lease tolerance (3 × 1.5 × lease cap %d).\n\n", max(1, r.ReplicaBurst/(8*3)))
	p("| redis.timeout | sent | admitted | bound | admitted ÷ rps × t | refused | lost | refusal p50 | refusal p99 | Retry-After | Redis calls per request | store-down events |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, run := range r.Runs {
		ok, sent, rej, lost := 0, 0, 0, 0
		var rp50, rp99 time.Duration
		for _, x := range run.Replicas {
			ok, sent, rej, lost = ok+x.OK, sent+x.Sent, rej+x.Rejected, lost+x.Lost
			rp50, rp99 = max(rp50, x.RejP50), max(rp99, x.RejP99)
		}
		per := 0.0
		if sent > 0 {
			per = float64(run.Cmds) / float64(sent)
		}
		p("| %s | %d | %d | %.0f | %.2f | %d | %d | %s | %s | %.0f %% | %.3f | %d |\n", run.Timeout, sent, ok, run.bound(r.ReplicaRate, r.ReplicaBurst),
			float64(ok)/(r.ReplicaRate*run.Measured.Seconds()), rej, lost, ms(rp50), ms(rp99), 100*run.RetryShare, per, run.StoreDowns)
	}
	p("\nRefusal p50 and p99 are the worst of the three replicas'. A store-down event is a Redis call\n")
	p("that overran `redis.timeout` or failed: the replica then limits to its local share (rps ÷ 3)\n")
	p("until a PING fits the budget again. What the shared bucket admitted is spent from that local\n")
	p("share too, so a switch does not grant the burst again; the excess over rps × t is what the\n")
	p("replicas' shares refill while they are down, above their real spending.\n\n")
	return b.String()
}
