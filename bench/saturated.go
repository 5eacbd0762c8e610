package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The saturated scenario: the machine itself is the bottleneck, as on a
// user's box. The upstream is plain (its 20 workers just sleep 20 ms and
// never pay back a timer's lateness, so its real capacity is a little under
// 1 000 req/s), the open-loop generator runs in this process on the same two
// cores, and sluice runs with its defaults (access log on). Offered 3×, 5×,
// 10× and 20× the nominal capacity, sluice with a FIFO and a CoDel queue
// side by side with HAProxy, each proxy's CPU is read from /proc over the
// counted window and split into admitted and refused requests: a
// calibration run below capacity, where nothing is refused, gives the CPU of
// an admitted request, and each overloaded run's remainder, divided by its
// refusals, that of a refused one.

type saturatedResult struct {
	Capacity float64 // the plain upstream's real capacity, closed loop
	Rows     []saturatedRow
	Err      string
}

type saturatedRow struct {
	Proxy   string
	Factor  float64 // of the nominal capacity; 0.8 is the calibration run
	Offered float64
	Res     *openResult
	CPU     time.Duration // the proxy's CPU over the counted window
	Window  time.Duration
	RSS     int64
	// Sheds is how many times sluice's saturation detector started or
	// raised its shedding, from its log ("saturation detector changed
	// state" to a level above none).
	Sheds int
	// ConnsRefused is how many connections sluice refused for
	// server.max_connections (the admin API's
	// overload.connections.refused_total at the end of the run); nil for
	// a proxy without that API.
	ConnsRefused *uint64 `json:",omitempty"`
	Err          string
}

// saturatedPeer is one proxy of the scenario.
type saturatedPeer struct {
	name string
	// start returns the proxy, its address and its admin API's address
	// ("" without one).
	start func(h *harness, upstream string) (p *proc, addr, admin string, err error)
	// factors, when set, are the only loads this peer runs at (no
	// calibration run: its CPU is not split).
	factors []float64
}

// saturatedMaxConns is server.max_connections of the capped sluice row:
// the generator holds up to LoadMaxConns (4 000) connections at 20×.
const saturatedMaxConns = 1024

// cappedPeer is the name of the capped sluice row.
var cappedPeer = fmt.Sprintf("sluice FIFO, max_connections %d", saturatedMaxConns)

func saturatedPeers() []saturatedPeer {
	sluice := func(queue, server string) func(h *harness, upstream string) (*proc, string, string, error) {
		return func(h *harness, upstream string) (*proc, string, string, error) {
			route := fmt.Sprintf("    bulkhead: {max_concurrent: %d}\n    queue: {max_depth: %d, max_wait: %dms%s}", capSlots, capQueue, capWaitMS, queue)
			return runSluiceServer(h, "sluice-saturated", upstream, server, route, true, nil)
		}
	}
	return []saturatedPeer{
		{name: "sluice FIFO", start: sluice("", "")},
		{name: "sluice CoDel", start: sluice(", discipline: codel", "")},
		{name: cappedPeer, start: sluice("", fmt.Sprintf("  max_connections: %d\n", saturatedMaxConns)), factors: []float64{10, 20, 30}},
		{name: "HAProxy", start: func(h *harness, upstream string) (*proc, string, string, error) {
			p, addr, err := startHAProxy(h, overload, upstream)
			return p, addr, "", err
		}},
	}
}

// saturatedCalibration is the load of the calibration run, as a share of
// the nominal capacity: below the plain upstream's real capacity.
const saturatedCalibration = 0.8

func (h *harness) saturatedFactors() []float64 {
	if v := os.Getenv("SLUICE_BENCH_FACTORS"); v != "" { // for experiments: "10,20"
		var fs []float64
		for _, f := range strings.Split(v, ",") {
			if x, err := strconv.ParseFloat(strings.TrimSpace(f), 64); err == nil {
				fs = append(fs, x)
			}
		}
		return fs
	}
	if h.s.Quick {
		return []float64{3, 10}
	}
	return []float64{3, 5, 10, 20}
}

func (h *harness) runSaturated(ctx context.Context) error {
	r := &saturatedResult{}
	h.res.Saturated = r
	if h.havePeers {
		up, err := h.startPlainUpstream(capSlots, capServeMS*time.Millisecond)
		if err != nil {
			return err
		}
		res, err := runWrk("http://"+up.line+"/", capSlots, h.s.LoadDuration)
		up.stop()
		if err != nil {
			return err
		}
		r.Capacity = res.RPS
		h.logf("saturated: plain upstream alone, %d connections closed-loop: %.0f req/s", capSlots, res.RPS)
	}
	only := os.Getenv("SLUICE_BENCH_PROXIES") // for experiments: "sluice CoDel|HAProxy"
	for _, pr := range saturatedPeers() {
		if only != "" && !slices.Contains(strings.Split(only, "|"), pr.name) {
			continue
		}
		if pr.name == "HAProxy" && !h.havePeers {
			h.note("saturated HAProxy skipped: not installed (-no-install)")
			continue
		}
		factors := append([]float64{saturatedCalibration}, h.saturatedFactors()...)
		if pr.factors != nil {
			factors = pr.factors
		}
		for _, f := range factors {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.Rows = append(r.Rows, h.saturatedCell(ctx, pr, f))
		}
	}
	for _, c := range r.checks() {
		h.logf("saturated target %s %s: %s", c.Mark(), c.Target, c.Figure)
	}
	return nil
}

// saturatedCell runs one proxy at one load, with a fresh upstream and proxy.
func (h *harness) saturatedCell(ctx context.Context, pr saturatedPeer, factor float64) saturatedRow {
	row := saturatedRow{Proxy: pr.name, Factor: factor, Offered: factor * capacityRPS}
	fail := func(err error) saturatedRow {
		row.Err = err.Error()
		h.note("saturated %s at %g×: %v", pr.name, factor, err)
		return row
	}
	up, err := h.startPlainUpstream(capSlots, capServeMS*time.Millisecond)
	if err != nil {
		return fail(err)
	}
	defer up.stop()
	p, addr, admin, err := pr.start(h, up.line)
	if err != nil {
		return fail(err)
	}
	defer p.stop()
	if err := waitReady("http://" + addr + "/"); err != nil {
		return fail(err)
	}
	// The proxy's CPU over the counted window: read as it starts and as
	// it ends.
	var mu sync.Mutex
	var cpu0, cpu1 time.Duration
	var t0, t1 time.Time
	ended := make(chan struct{})
	res, err := runOpen(ctx, openLoad{
		Addr: addr, Path: "/", Rate: row.Offered,
		Warmup: h.s.LoadWarmup, Duration: h.s.LoadDuration, Timeout: h.s.LoadTimeout, MaxConns: h.s.LoadMaxConns,
		OnWindow: func() {
			c, t := p.cpu(), time.Now()
			mu.Lock()
			cpu0, t0 = c, t
			mu.Unlock()
			time.AfterFunc(h.s.LoadDuration, func() {
				c, t := p.cpu(), time.Now()
				mu.Lock()
				cpu1, t1 = c, t
				mu.Unlock()
				close(ended)
			})
		},
	})
	if err != nil {
		return fail(err)
	}
	<-ended
	mu.Lock()
	row.CPU, row.Window = cpu1-cpu0, t1.Sub(t0)
	mu.Unlock()
	row.Res = res
	row.RSS = p.peakRSS()
	if admin != "" {
		// Without the count the row keeps its figures; only the memory
		// check goes unjudged.
		if n, err := connectionsRefused(admin); err != nil {
			h.note("saturated %s at %g×: connections refused not read: %v", pr.name, factor, err)
		} else {
			row.ConnsRefused = &n
		}
	}
	if b, err := os.ReadFile(filepath.Join(h.tmp, "sluice-saturated.log")); err == nil && strings.HasPrefix(pr.name, "sluice") {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "saturation detector changed state") && !strings.Contains(l, `"to":"none"`) && !strings.Contains(l, "to=none") {
				row.Sheds++
			}
		}
	}
	h.logf("saturated %-13s %4.1f× goodput %6.0f/s admitted p99 %-10v refusal p50/p99 %v / %v refused %d lost %d CPU %v RSS %d MiB late %v sheds %d",
		pr.name, factor, res.Goodput(), res.OKP99.Round(time.Microsecond), res.RejP50.Round(time.Microsecond), res.RejP99.Round(time.Microsecond),
		res.Rejected, res.Lost, row.CPU, row.RSS>>20, res.Late.Round(time.Microsecond), row.Sheds)
	return row
}

// connectionsRefused reads from sluice's admin API how many connections it
// refused for server.max_connections.
func connectionsRefused(admin string) (uint64, error) {
	resp, err := http.Get("http://" + admin + "/api/v1/overview")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var o struct {
		Overload struct {
			Connections struct {
				Refused uint64 `json:"refused_total"`
			} `json:"connections"`
		} `json:"overload"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("admin overview: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		return 0, fmt.Errorf("admin overview: %w", err)
	}
	return o.Overload.Connections.Refused, nil
}

// capBound reports whether server.max_connections refused connections in
// row's run.
func capBound(row *saturatedRow) bool { return row.ConnsRefused != nil && *row.ConnsRefused > 0 }

// admittedCPU is a proxy's CPU per admitted request, from its calibration
// run; 0 if that did not run.
func (r *saturatedResult) admittedCPU(proxy string) time.Duration {
	for _, row := range r.Rows {
		if row.Proxy == proxy && row.Factor == saturatedCalibration && row.Res != nil && row.Res.OKDone > 0 {
			return row.CPU / time.Duration(row.Res.OKDone)
		}
	}
	return 0
}

// refusedCPU is the CPU per refused request of an overloaded run: what the
// run's admitted requests do not account for, over its refusals.
func (r *saturatedResult) refusedCPU(row saturatedRow) (time.Duration, bool) {
	a := r.admittedCPU(row.Proxy)
	if a == 0 || row.Res == nil || row.Res.Rejected == 0 {
		return 0, false
	}
	rest := row.CPU - a*time.Duration(row.Res.OKDone)
	return max(0, rest) / time.Duration(row.Res.Rejected), true
}

func (r *saturatedResult) find(proxy string, factor float64) *saturatedRow {
	for i := range r.Rows {
		if row := &r.Rows[i]; row.Proxy == proxy && row.Factor == factor && row.Res != nil {
			return row
		}
	}
	return nil
}

// checks are the scenario's targets, each against this run's figures.
func (r *saturatedResult) checks() []check {
	var cs []check
	haproxy := r.find("HAProxy", 10)
	for _, name := range []string{"sluice FIFO", "sluice CoDel"} {
		row := r.find(name, 10)
		if row == nil {
			continue
		}
		res := row.Res
		if haproxy != nil {
			cs = append(cs, check{fmt.Sprintf("10×, %s: goodput ≥ HAProxy's", name),
				fmt.Sprintf("%s vs %s req/s", thousands(res.Goodput()), thousands(haproxy.Res.Goodput())), res.Goodput() >= haproxy.Res.Goodput()})
		}
		if r.Capacity > 0 {
			cs = append(cs, check{fmt.Sprintf("10×, %s: goodput ≥ 85 %% of the upstream's real capacity", name),
				fmt.Sprintf("%.0f %%", 100*res.Goodput()/r.Capacity), res.Goodput() >= 0.85*r.Capacity})
		}
		cs = append(cs,
			check{fmt.Sprintf("10×, %s: 0 lost", name), fmt.Sprint(res.Lost), res.Lost == 0},
			check{fmt.Sprintf("10×, %s: refusal p99 ≤ 50 ms", name), ms(res.RejP99), res.RejP99 <= 50*time.Millisecond})
		if rc, ok := r.refusedCPU(*row); ok {
			a := r.admittedCPU(name)
			cs = append(cs, check{fmt.Sprintf("10×, %s: a refusal's CPU ≤ 25 %% of an admitted request's", name),
				fmt.Sprintf("%.0f %% (%s vs %s)", 100*float64(rc)/float64(a), us(rc), us(a)), rc*4 <= a})
		}
	}
	for _, name := range []string{"sluice FIFO", "sluice CoDel", cappedPeer} {
		at20 := r.find(name, 20)
		if at20 == nil {
			continue
		}
		cs = append(cs, check{fmt.Sprintf("20×, %s: 0 lost", name), fmt.Sprint(at20.Res.Lost), at20.Res.Lost == 0})
	}
	// Without a cap sluice's memory follows the connections the clients
	// open (the generator's 4 000 at 20×); with server.max_connections it
	// is bounded: up to the cap it grows with the connections, past it
	// more load must not add memory. So the check compares 30× with 20×
	// only where the cap bound in both runs; where it did not bind at 20×
	// the comparison says nothing, and capNote says so instead.
	if at20, at30 := r.find(cappedPeer, 20), r.find(cappedPeer, 30); at20 != nil && at30 != nil && at20.RSS > 0 && capBound(at20) && capBound(at30) {
		cs = append(cs, check{fmt.Sprintf("20× and 30×, %s, the cap binding in both: RSS bounded (30× ≤ 1.25× the 20× run's)", cappedPeer),
			fmt.Sprintf("%s → %s (20×, 30×)", mib(at20.RSS), mib(at30.RSS)), 4*at30.RSS <= 5*at20.RSS})
	}
	if fifo, codel := r.find("sluice FIFO", 5), r.find("sluice CoDel", 5); fifo != nil && codel != nil {
		f, c := fifo.Res.Goodput(), codel.Res.Goodput()
		cs = append(cs,
			check{"5×, CoDel: goodput within 2 % of FIFO's", fmt.Sprintf("%s vs %s req/s", thousands(c), thousands(f)), c >= 0.98*f},
			check{"5×, CoDel: admitted p99 ≤ 60 ms", ms(codel.Res.OKP99), codel.Res.OKP99 <= 60*time.Millisecond},
			check{"5×, CoDel: refusal p99 ≤ 10 ms", ms(codel.Res.RejP99), codel.Res.RejP99 <= 10*time.Millisecond})
	}
	return cs
}

// capNote says how many connections the capped row refused at each load,
// and, when the memory check was not judged, why.
func (r *saturatedResult) capNote() string {
	var parts []string
	for _, row := range r.Rows {
		if row.Proxy == cappedPeer && row.Res != nil && row.ConnsRefused != nil {
			parts = append(parts, fmt.Sprintf("%g× %s", row.Factor, thousands(float64(*row.ConnsRefused))))
		}
	}
	var n string
	if len(parts) > 0 {
		n = fmt.Sprintf("Connections the capped row refused over the cap: %s.", strings.Join(parts, ", "))
	}
	at20, at30 := r.find(cappedPeer, 20), r.find(cappedPeer, 30)
	switch {
	case at20 == nil || at30 == nil:
	case at20.ConnsRefused == nil || at30.ConnsRefused == nil:
		n = strings.TrimSpace(n + " The memory check (30× within 1.25× of 20×, the cap binding in both) is not judged in this run: it did not record the connections refused over the cap.")
	case !capBound(at20) || !capBound(at30):
		n += " The memory check (30× within 1.25× of 20×) is not judged in this run: it needs the cap binding at both loads"
		if !capBound(at20) && !capBound(at30) && at20.Res != nil && at30.Res != nil {
			n += fmt.Sprintf(", and the generator kept its connections under it at both (peak RSS %s at 20×, %s at 30×)", mib(at20.RSS), mib(at30.RSS))
		}
		n += "."
	}
	return n
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func saturatedSection(r *saturatedResult, s settings, when string) string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## The machine at its limit (saturated)\n\n")
	p("Run with `go run ./bench -only saturated`")
	if when != "" {
		p(" (this run: %s UTC)", when)
	}
	p(". The overload scenario above keeps its upstream on schedule and its\n")
	p("generator light. Here, as on a user's machine, the upstream is plain: its %d workers each sleep\n", capSlots)
	p("%d ms and never pay back a timer's lateness", capServeMS)
	if r.Capacity > 0 {
		p(" (real capacity, closed loop alone: **%s req/s**)", thousands(r.Capacity))
	}
	p(";\nthe open-loop generator is in the harness's own process on the same two cores; sluice runs with\n")
	p("its defaults, access log on, `bulkhead: {max_concurrent: %d}`, `queue: {max_depth: %d, max_wait: %dms}`\n", capSlots, capQueue, capWaitMS)
	p("(FIFO, or `discipline: codel`), and FIFO once more with `server.max_connections: %d`, where a\n", saturatedMaxConns)
	p("connection over the cap is parked: each of its requests is answered `503` (`overloaded`) over\n")
	p("keep-alive until a held connection closes; HAProxy with `maxconn %d maxqueue %d`, `timeout queue %dms`.\n", capSlots, capQueue, capWaitMS)
	p("Each cell: a fresh upstream and proxy, %s of warm-up, %s counted, a request lost after %s.\n\n", s.LoadWarmup, s.LoadDuration, s.LoadTimeout)
	if r.Err != "" {
		p("Not run: %s.\n\n", r.Err)
		return b.String()
	}
	p("CPU is the proxy's (user + system, from `/proc`) over the counted window, per 1 000 requests.\n")
	p("Admitted: from a run at %g× of the nominal capacity, where nothing is refused. Refused: the\n", saturatedCalibration)
	p("run's CPU less its admitted requests at that cost, over its refusals.\n\n")
	p("| offered | proxy | goodput/s | of real capacity | admitted p99 | refusal p50 / p99 | refused | lost | CPU s per 1 000 admitted | CPU s per 1 000 refused | peak RSS | generator late by |\n")
	p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	factors := []float64{}
	seen := map[float64]bool{}
	for _, row := range r.Rows {
		if !seen[row.Factor] {
			seen[row.Factor] = true
			factors = append(factors, row.Factor)
		}
	}
	for _, f := range factors {
		for _, row := range r.Rows {
			if row.Factor != f {
				continue
			}
			if row.Res == nil {
				p("| %g× | %s | failed: %s |||||||||||\n", f, row.Proxy, row.Err)
				continue
			}
			res := row.Res
			of := "–"
			if r.Capacity > 0 {
				of = fmt.Sprintf("%.0f %%", 100*res.Goodput()/r.Capacity)
			}
			adm := r.admittedCPU(row.Proxy)
			admS, refS := "–", "–"
			if adm > 0 {
				admS = fmt.Sprintf("%.3f", adm.Seconds()*1000)
			}
			if rc, ok := r.refusedCPU(row); ok {
				refS = fmt.Sprintf("%.3f", rc.Seconds()*1000)
			}
			rej := "–"
			if res.Rejected > 0 {
				rej = ms(res.RejP50) + " / " + ms(res.RejP99)
			}
			p("| %g× | %s | %s | %s | %s | %s | %d | %d | %s | %s | %s | %s |\n", f, row.Proxy, thousands(res.Goodput()), of,
				ms(res.OKP99), rej, res.Rejected, res.Lost, admS, refS, mib(row.RSS), ms(res.Late))
		}
	}
	p("\nThe %g× rows are the calibration runs. \"Generator late by\" is how far the generator fell behind its\n", saturatedCalibration)
	p("schedule at worst: where it is large the machine, not the proxy alone, is saturated, and every\nlatency includes that lag (it is measured from the scheduled send time).")
	var behind []string
	for _, row := range r.Rows {
		if row.Err == "" && row.Res.Late > time.Second {
			behind = append(behind, fmt.Sprintf("%g× %s", row.Factor, row.Proxy))
		}
	}
	if len(behind) > 0 {
		p(" Where it passes a second (%s) the\ngenerator itself could not keep up: requests left over a second late, and that lateness is in\nthe row's latencies and losses (a request counts as lost after %s).", strings.Join(behind, "; "), s.LoadTimeout)
	}
	for _, row := range r.Rows {
		if row.Factor == 30 {
			p(" The capped 30× row is there for the memory check.")
			if row.Res != nil && (row.Res.Lost > 0 || row.Res.Late > 100*time.Millisecond) {
				p(" At 30× the generator and the proxy together needed more than the two\ncores in this run, so requests waited for the CPU on the generator's side too, and that wait\nis in the row's latencies and losses (lost: no answer within %s).", s.LoadTimeout)
			}
			break
		}
	}
	if n := r.capNote(); n != "" {
		p(" %s", n)
	}
	p("\n\n")
	if cs := r.checks(); len(cs) > 0 {
		p("| target | this run | |\n|---|---|---|\n")
		for _, c := range cs {
			v := "met"
			if !c.Met {
				v = "**missed**"
			}
			p("| %s | %s | %s |\n", c.Target, c.Figure, v)
		}
		p("\n")
	}
	return b.String()
}
