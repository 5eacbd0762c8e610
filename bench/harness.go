package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

type harness struct {
	s         settings
	root      string // module root
	out       string // where the doc and charts go
	tmp       string // configs, logs, profiles, the sluice binary
	only      map[string]bool
	sluiceBin string
	versions  map[string]string
	havePeers bool
	sluiceEnv []string // extra environment of the sluice process (experiments: GOGC=...)

	res results
}

// results is everything the doc reports.
type results struct {
	Started, Finished time.Time
	Quick             bool
	Settings          settings
	Machine           string
	LoadBefore        string
	LoadAfter         string
	Versions          map[string]string
	Overhead          []overheadRow
	OverheadWork      []workRow // the floor with busy work per request, beside the overhead table
	OverheadOpen      []openRow // the floor, sluice and HAProxy at fixed rates, open loop
	Overload          []overloadRow
	UpstreamCeiling   float64 // req/s of the capacity upstream alone, 20 connections
	Profile           *profileResult
	Routing           []routingResult
	Keys              []keysResult
	Sluice9           *sluice9Result    // priority, adaptive, codel (sluice only)
	Global            *globalResult     // global rate limits through Redis (sluice only)
	Saturated         *saturatedResult  // the machine at its limit: plain upstream, 3× to 20×
	Notes             []string          // what was skipped or went wrong
	Ran               map[string]string // scenario → when it ran (UTC)
}

// resultsFile keeps a run's figures beside the doc, so that a run of one
// scenario (-only) rewrites the doc with the other scenarios' last figures.
const resultsFile = "bench-results.json"

type overheadRow struct {
	Target string
	Runs   []wrkResult
	RSS    int64 // peak RSS of the proxy, bytes (max over runs)
}

// workRow is the Go floor run with Work of busy CPU per request, in the
// same rounds as the overhead table's targets.
type workRow struct {
	Work time.Duration
	overheadRow
}

// floorWork are the amounts of work per request the floor runs with: the
// points of the curve from CPU per request to p99 on this machine.
var floorWork = []time.Duration{time.Microsecond, 2 * time.Microsecond, 4 * time.Microsecond, 8 * time.Microsecond}

// openRates are the offered rates of the overhead scenario's open-loop
// part: about a twelfth, a sixth and a third of what sluice passes in the
// closed loop on this machine.
var openRates = []float64{5000, 10000, 20000}

// openWarmup and openDuration are how long each rate of the open-loop
// part runs uncounted and counted: shorter than a closed-loop cell, as the
// part runs three rates per target.
func (s settings) openWarmup() time.Duration   { return s.WrkWarmup / 2 }
func (s settings) openDuration() time.Duration { return s.WrkDuration * 5 / 8 }

// openTargets are the targets of the open-loop part, by overhead row name.
var openTargets = []string{floorRow, "sluice", "HAProxy"}

// openRow is one target at one fixed rate, open loop: the latency it adds
// below saturation, where the closed loop measures it at saturation.
type openRow struct {
	Target string
	Rate   float64
	Runs   []openRun
}

// openRun is one open-loop run's 2xx latencies, from each request's
// scheduled time.
type openRun struct {
	P50, P99   time.Duration
	Late       time.Duration // how far the generator fell behind its schedule at worst
	Sent, Lost int
}

// workTarget names the floor with work in the harness's log.
func workTarget(work time.Duration) string { return fmt.Sprintf("%s + %v of work", floorRow, work) }

type overloadRow struct {
	Proxy   string
	Factor  float64 // offered load ÷ capacity
	Offered float64
	Res     *openResult
	RSS     int64
	Err     string
}

type profileResult struct {
	RPS      float64
	Shares   []cpuShare
	Top      string
	AllocTop string
}

func newHarness(s settings, out string, noInstall bool, only string) (*harness, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	h := &harness{s: s, root: root, out: out, versions: map[string]string{}}
	if only != "" {
		h.only = map[string]bool{}
		for _, o := range strings.Split(only, ",") {
			h.only[strings.TrimSpace(o)] = true
		}
	}
	if h.out == "" {
		if s.Quick {
			if h.out, err = os.MkdirTemp("", "sluice-bench-quick-"); err != nil {
				return nil, err
			}
		} else {
			h.out = filepath.Join(root, "docs")
		}
	}
	if h.tmp, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
		return nil, err
	}
	// nginx's workers run as nobody and must reach their temp paths.
	if err := os.Chmod(h.tmp, 0o755); err != nil {
		return nil, err
	}
	h.havePeers = true
	if noInstall {
		for bin := range tools {
			if _, err := exec.LookPath(bin); err != nil {
				h.havePeers = false
			}
		}
	} else if err := installPeers(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *harness) cleanup() { os.RemoveAll(h.tmp) }

func (h *harness) wants(scenario string) bool { return h.only == nil || h.only[scenario] }

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (h *harness) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.logf("%s", msg)
	h.res.Notes = append(h.res.Notes, msg)
}

func (h *harness) run(ctx context.Context) error {
	if h.only != nil {
		if b, err := os.ReadFile(filepath.Join(h.out, resultsFile)); err == nil {
			if err := json.Unmarshal(b, &h.res); err != nil {
				return fmt.Errorf("%s: %w", resultsFile, err)
			}
			h.res.Notes = nil
		}
	}
	// A run of scenarios with sections of their own alone (sluice9,
	// global, saturated: minutes) keeps the header of the run it adds to: its section says when it
	// ran.
	sluiceOnly := h.only != nil && len(h.only) > 0
	for o := range h.only {
		sluiceOnly = sluiceOnly && (o == "sluice9" || o == "global" || o == "saturated")
	}
	keep := sluiceOnly && !h.res.Started.IsZero()
	prev := h.res
	if h.res.Ran == nil {
		h.res.Ran = map[string]string{}
	}
	h.res.Started = time.Now()
	ran := func(scenario string) { h.res.Ran[scenario] = h.res.Started.UTC().Format("2006-01-02 15:04") }
	h.res.Quick = h.s.Quick
	h.res.Settings = h.s
	h.res.Machine = machine()
	h.res.LoadBefore = loadavg()
	h.versions["Go"] = runtime.Version()
	h.readVersions()
	h.res.Versions = h.versions

	h.logf("building sluice")
	h.sluiceBin = filepath.Join(h.tmp, "sluice")
	build := exec.Command("go", "build", "-o", h.sluiceBin, "./cmd/sluice")
	build.Dir, build.Stderr = h.root, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/sluice: %w", err)
	}

	if h.wants("overhead") {
		if !h.havePeers {
			h.note("overhead skipped: wrk and the peers are not installed (-no-install)")
		} else if err := h.runOverhead(ctx); err != nil {
			return err
		} else {
			ran("overhead")
		}
	}
	if h.wants("overload") {
		h.res.Overload = nil
		if err := h.runOverload(ctx); err != nil {
			return err
		}
		ran("overload")
	}
	if h.wants("saturated") {
		if err := h.runSaturated(ctx); err != nil {
			h.note("saturated failed: %v", err)
		} else {
			ran("saturated")
		}
	}
	if h.wants("profile") {
		if !h.havePeers {
			h.note("profile skipped: wrk is not installed (-no-install)")
		} else if err := h.runProfile(ctx); err != nil {
			// Keep what the other scenarios measured: note it, go on.
			h.note("profile failed: %v", err)
		} else {
			ran("profile")
		}
	}
	if h.wants("scaling") {
		h.res.Keys = nil
		if err := h.runScaling(ctx); err != nil {
			h.note("scaling failed: %v", err)
		} else {
			ran("scaling")
		}
	}
	// Not part of the timing of the peer scenarios, but
	// run with them unless -only leaves it out.
	if h.wants("sluice9") {
		if err := h.runSluice9(ctx); err != nil {
			h.note("sluice9 failed: %v", err)
		} else {
			ran("sluice9")
		}
	}
	if h.wants("global") {
		if err := h.runGlobal(ctx); err != nil {
			h.note("global failed: %v", err)
		} else {
			ran("global")
		}
	}
	h.res.LoadAfter = loadavg()
	h.res.Finished = time.Now()
	if keep {
		h.res.Started, h.res.Finished, h.res.LoadBefore, h.res.LoadAfter = prev.Started, prev.Finished, prev.LoadBefore, prev.LoadAfter
		h.res.Quick, h.res.Settings, h.res.Machine = prev.Quick, prev.Settings, prev.Machine
	}
	return h.write()
}

// render rewrites the doc and charts from the saved results, running
// nothing: for changes to the doc's template.
func (h *harness) render() error {
	b, err := os.ReadFile(filepath.Join(h.out, resultsFile))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &h.res); err != nil {
		return fmt.Errorf("%s: %w", resultsFile, err)
	}
	h.s = h.res.Settings
	return h.write()
}

func (h *harness) readVersions() {
	// Some print their version on stderr, wrk -v exits 1: take the first
	// line whatever the exit code, and keep the part that names the version.
	ver := func(name string, args ...string) {
		out, _ := exec.Command(args[0], args[1:]...).CombinedOutput()
		line := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		if line == "" {
			return
		}
		line = strings.TrimPrefix(line, "nginx version: ")
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "HAProxy" && f[1] == "version" {
			line = "HAProxy " + f[2]
		}
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "wrk" {
			line = "wrk " + f[1]
		}
		h.versions[name] = line
	}
	ver("nginx", "nginx", "-v")
	ver("HAProxy", "haproxy", "-v")
	ver("Caddy", "caddy", "version")
	ver("wrk", "wrk", "-v")
}

// startUpstream runs a synthetic upstream: fast (slots 0) or of limited
// capacity.
func (h *harness) startUpstream(slots int, service time.Duration) (*proc, error) {
	return h.startUpstreamFor(slots, service, childLife)
}

// startUpstreamFor is startUpstream for a scenario that keeps one
// upstream longer than childLife: it lives at most life.
func (h *harness) startUpstreamFor(slots int, service, life time.Duration) (*proc, error) {
	return startSelf("upstream", "-role", "upstream", "-slots", fmt.Sprint(slots), "-service", service.String(), "-life", life.String())
}

// startPlainUpstream runs the capacity upstream without lateness
// compensation: each worker sleeps the service time.
func (h *harness) startPlainUpstream(slots int, service time.Duration) (*proc, error) {
	return startSelf("upstream", "-role", "upstream", "-slots", fmt.Sprint(slots), "-service", service.String(), "-plain", "-life", childLife.String())
}

// overheadTargets are the rows of the overhead table: the upstream alone,
// the floor of Go's runtime (a minimal forwarder, floor.go), then each
// proxy; sluice also with its access log (on by default).
func (h *harness) overheadTargets() []peer {
	ts := []peer{{"direct (no proxy)", nil}, {floorRow, forwarderRole("Go floor", "floor")}, {"sluice", startSluice},
		{"sluice, access log on", func(h *harness, m mode, up string) (*proc, string, error) {
			return startSluiceWith(h, m, up, true, nil)
		}},
		{"sluice, GOGC=400", func(h *harness, m mode, up string) (*proc, string, error) {
			return startSluiceWith(h, m, up, false, []string{"GOGC=400"})
		}}}
	for _, p := range peers()[1:] {
		ts = append(ts, p)
	}
	return ts
}

func (h *harness) runOverhead(ctx context.Context) error {
	targets := h.overheadTargets()
	main := len(targets)
	for _, w := range floorWork {
		targets = append(targets, peer{workTarget(w), forwarderRole("Go floor", "floor", "-work", w.String())})
	}
	// One upstream serves every target of every round: it must outlive
	// them all (each cell is a warm-up, the counted run and a start).
	cell := h.s.WrkWarmup + h.s.WrkDuration + 10*time.Second
	openCell := h.s.openWarmup() + h.s.openDuration() + 5*time.Second
	life := childLife + time.Duration(len(targets)*h.s.WrkReps)*cell + time.Duration(len(openTargets)*len(openRates)*h.s.WrkReps)*openCell
	up, err := h.startUpstreamFor(0, 0, life)
	if err != nil {
		return err
	}
	defer up.stop()
	rows := make([]overheadRow, len(targets))
	// Repetitions go round the targets rather than repeating one target
	// back to back, so that a burst of other work on the machine spreads
	// over all of them.
	for rep := 0; rep < h.s.WrkReps; rep++ {
		for i, t := range targets {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rows[i].Target = t.name
			addr := up.line
			var p *proc
			if t.start != nil {
				if p, addr, err = t.start(h, overhead, up.line); err != nil {
					return fmt.Errorf("overhead %s: %w", t.name, err)
				}
			}
			res, err := h.wrkCell("http://"+addr+"/", p)
			if p != nil {
				rows[i].RSS = max(rows[i].RSS, p.peakRSS())
				p.stop()
			}
			if err != nil {
				return fmt.Errorf("overhead %s: %w", t.name, err)
			}
			h.logf("overhead %-24s %8.0f req/s  p50 %-8v p99 %v", t.name, res.RPS, res.P50, res.P99)
			rows[i].Runs = append(rows[i].Runs, res)
		}
	}
	h.res.Overhead = rows[:main]
	h.res.OverheadWork = nil
	for i, w := range floorWork {
		h.res.OverheadWork = append(h.res.OverheadWork, workRow{Work: w, overheadRow: rows[main+i]})
	}
	return h.runOverheadOpen(ctx, targets, up.line)
}

// runOverheadOpen runs the open-loop part of the overhead scenario: each
// of openTargets at each of openRates, a fresh process per target and
// round, the rates in rising order, rounds round-robin as above.
func (h *harness) runOverheadOpen(ctx context.Context, targets []peer, upstream string) error {
	var rows []openRow
	for rep := 0; rep < h.s.WrkReps; rep++ {
		i := 0
		for _, name := range openTargets {
			var t peer
			for _, c := range targets {
				if c.name == name {
					t = c
				}
			}
			if t.start == nil {
				continue
			}
			p, addr, err := t.start(h, overhead, upstream)
			if err != nil {
				return fmt.Errorf("overhead open loop %s: %w", name, err)
			}
			if err := waitReady("http://" + addr + "/"); err != nil {
				p.stop()
				return fmt.Errorf("overhead open loop %s: %w", name, err)
			}
			for _, rate := range openRates {
				if ctx.Err() != nil {
					p.stop()
					return ctx.Err()
				}
				res, err := runOpen(ctx, openLoad{Addr: addr, Path: "/", Rate: rate, Warmup: h.s.openWarmup(),
					Duration: h.s.openDuration(), Timeout: h.s.LoadTimeout, MaxConns: 256})
				if err != nil {
					p.stop()
					return fmt.Errorf("overhead open loop %s at %.0f/s: %w", name, rate, err)
				}
				res.summarize(h.s.LoadTimeout)
				if rep == 0 {
					rows = append(rows, openRow{Target: name, Rate: rate})
				}
				rows[i].Runs = append(rows[i].Runs, openRun{P50: res.OKP50, P99: res.OKP99, Late: res.Late, Sent: res.Sent, Lost: res.Lost})
				h.logf("overhead open loop %-24s %6.0f req/s  p50 %-8v p99 %v  lost %d", name, rate, res.OKP50, res.OKP99, res.Lost)
				i++
			}
			p.stop()
		}
	}
	h.res.OverheadOpen = rows
	return nil
}

// runCalibration measures the capacity-limited upstream alone with 20
// connections in a closed loop: no queue anywhere, each slot reused the
// moment it frees. That is the most any proxy that holds 20 requests at
// once can pass, the ceiling for sluice's and HAProxy's goodput (their
// slot is free again only once the answer has come back through them).
func (h *harness) runCalibration() error {
	up, err := h.startUpstream(capSlots, capServeMS*time.Millisecond)
	if err != nil {
		return err
	}
	defer up.stop()
	res, err := runWrk("http://"+up.line+"/", capSlots, h.s.LoadDuration)
	if err != nil {
		return err
	}
	h.res.UpstreamCeiling = res.RPS
	h.logf("upstream alone, %d connections closed-loop: %.0f req/s", capSlots, res.RPS)
	return nil
}

// wrkCell warms url up, then runs the counted wrk run against it; with
// the proxy p, it also measures p's CPU per request over that run.
func (h *harness) wrkCell(url string, p *proc) (wrkResult, error) {
	if err := waitReady(url); err != nil {
		return wrkResult{}, err
	}
	if _, err := runWrk(url, 64, h.s.WrkWarmup); err != nil { // warm pools, caches, JITs of none
		return wrkResult{}, err
	}
	var before time.Duration
	if p != nil {
		before = p.cpu()
	}
	res, err := runWrk(url, 64, h.s.WrkDuration)
	if err == nil && p != nil {
		if n := res.RPS * float64(wrkSeconds(h.s.WrkDuration)); n > 0 {
			res.CPUPerReq = time.Duration(float64(p.cpu()-before) / n)
		}
	}
	return res, err
}

func (h *harness) runOverload(ctx context.Context) error {
	if h.havePeers {
		if err := h.runCalibration(); err != nil {
			return err
		}
	}
	for _, pr := range peers() {
		if pr.name != "sluice" && pr.name != "httputil.ReverseProxy" && !h.havePeers {
			h.note("overload %s skipped: not installed (-no-install)", pr.name)
			continue
		}
		for _, f := range h.s.Rates {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			row := h.overloadCell(ctx, pr, f)
			h.res.Overload = append(h.res.Overload, row)
		}
	}
	return nil
}

// overloadCell runs one proxy at one load with a fresh upstream and a fresh
// proxy, so that no queue or memory carries over from the previous cell.
func (h *harness) overloadCell(ctx context.Context, pr peer, factor float64) overloadRow {
	row := overloadRow{Proxy: pr.name, Factor: factor, Offered: factor * capacityRPS}
	fail := func(err error) overloadRow {
		row.Err = err.Error()
		h.note("overload %s at %.1f×: %v", pr.name, factor, err)
		return row
	}
	up, err := h.startUpstream(capSlots, capServeMS*time.Millisecond)
	if err != nil {
		return fail(err)
	}
	defer up.stop()
	p, addr, err := pr.start(h, overload, up.line)
	if err != nil {
		return fail(err)
	}
	defer p.stop()
	if err := waitReady("http://" + addr + "/"); err != nil {
		return fail(err)
	}
	res, err := runOpen(ctx, openLoad{
		Addr: addr, Path: "/", Rate: row.Offered,
		Warmup: h.s.LoadWarmup, Duration: h.s.LoadDuration, Timeout: h.s.LoadTimeout, MaxConns: h.s.LoadMaxConns,
	})
	if err != nil {
		return fail(err)
	}
	row.Res = res
	row.RSS = p.peakRSS()
	h.logf("overload %-22s %4.1f× goodput %6.0f/s  admitted p99 %-10v reject p99 %-10v rejected %d (RA %.0f%%) lost %d  RSS %d MiB  late %v",
		pr.name, factor, res.Goodput(), res.OKP99.Round(time.Microsecond), res.RejP99.Round(time.Microsecond),
		res.Rejected, 100*res.RetryShare(), res.Lost, row.RSS>>20, res.Late.Round(time.Microsecond))
	return row
}

func (h *harness) runProfile(ctx context.Context) error {
	up, err := h.startUpstream(0, 0)
	if err != nil {
		return err
	}
	defer up.stop()
	addr, err := freePort()
	if err != nil {
		return err
	}
	admin, err := freePort()
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`server: {listen: %q, access_log: false}
admin: {listen: %q}
upstreams: [{name: up, targets: ["http://%s"], max_idle_conns: 1024}]
routes:
  - name: bench
    match: {path_prefix: /}
    upstream: up
    rate_limit: {rps: 1000000000, burst: 1000000000}
    bulkhead: {max_concurrent: 100000}
`, addr, admin, up.line)
	cfgPath := filepath.Join(h.tmp, "profile.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	cpu, mem := filepath.Join(h.tmp, "cpu.pprof"), filepath.Join(h.tmp, "allocs.pprof")
	p, err := startSelf("sluice (profiled)", "-role", "profile", "-config", cfgPath, "-cpuprofile", cpu, "-memprofile", mem, "-life", childLife.String())
	if err != nil {
		return err
	}
	if err := waitReady("http://" + addr + "/"); err != nil {
		p.stop()
		return err
	}
	res, err := runWrk("http://"+addr+"/", 64, h.s.ProfileFor)
	p.stop()
	if err != nil {
		return err
	}
	shares, top, err := profileShares(cpu)
	if err != nil {
		return err
	}
	at, err := allocTop(mem)
	if err != nil {
		return err
	}
	if keep := os.Getenv("BENCH_KEEP_PROFILES"); keep != "" {
		for _, f := range []string{cpu, mem} {
			b, _ := os.ReadFile(f)
			os.WriteFile(filepath.Join(keep, filepath.Base(f)), b, 0o644)
		}
	}
	h.res.Profile = &profileResult{RPS: res.RPS, Shares: shares, Top: top, AllocTop: at}
	h.logf("profile: %.0f req/s under the profiler", res.RPS)
	return nil
}

func (h *harness) runScaling(ctx context.Context) error {
	h.logf("routing benchmark")
	rr, out, err := runRouting(h.root, h.s.RoutingCount, h.s.RoutingTime)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	h.res.Routing = rr
	for _, mk := range []int{100_000, h.s.Keys} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.logf("rate-limit keys: %d distinct, max_keys %d", h.s.Keys, mk)
		h.res.Keys = append(h.res.Keys, runKeys(h.s.Keys, mk))
	}
	return nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := statusKiBFile("/proc/meminfo", "MemTotal:")
	return fmt.Sprintf("%d × %s, %.0f GiB, %s", runtime.NumCPU(), model, float64(mem)/(1<<20), kernel())
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "Linux"
	}
	return "Linux " + strings.TrimSpace(string(b))
}

func statusKiBFile(path, field string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			var n int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &n)
			return n
		}
	}
	return 0
}
