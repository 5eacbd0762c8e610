package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"
)

// The doc is a template: the prose that explains the setup and the hot-path
// work is written by hand in benchmarks.md.tmpl, the figures come from the
// run. Rerunning the harness rewrites every number and chart.
//
//go:embed benchmarks.md.tmpl
var docTemplate string

// hotpathBenchstat is benchstat's comparison of BenchmarkProxy before and
// after the hot-path changes (docs/BENCHMARKS.md, "What changed on the hot
// path"), measured once (it needs the old
// code) and kept here so that the doc can be regenerated.
//
//go:embed hotpath-benchstat.txt
var hotpathBenchstat string

// Chart file names, relative to the doc.
const (
	chartOverloadP99 = "bench-overload-p99.svg"
	chartGoodput     = "bench-overload-goodput.svg"
	chartOverhead    = "bench-overhead.svg"
)

// check is one target of the doc's "Targets" table with its verdict.
type check struct {
	Target string
	Figure string
	Met    bool
}

func (c check) Mark() string {
	if c.Met {
		return "met"
	}
	return "**missed**"
}

// docData is what the template sees.
type docData struct {
	R                                         *results
	When, Took                                string
	OverheadTable, OverloadTable              string
	RoutingTable, KeysTable, ShareTable       string
	Checks                                    []check
	ChartOverloadP99, ChartGoodput, ChartOver string
	Capacity                                  int
	Slots, Queue, WaitMS, ServeMS             int
	OverheadSpread                            string
	Benchstat, AllocCut, GCVerdict            string
	RatesText                                 string
	RanText                                   string // when each scenario ran, if not all at once
	VsCeiling                                 string // sluice's goodput against the upstream's ceiling
	VsPlain, VsCaddy, VsHAProxy               string // sluice's overhead throughput against them
	FloorVerdict                              string // the Go floor row against HAProxy and sluice
	CPUVerdict                                string // sluice's CPU per request against the floor's
	WorkTable, WorkVerdict                    string // the floor with busy work per request; "" before it ran
	OpenTable, OpenVerdict                    string // fixed rates, open loop; "" before they ran
	OpenFor                                   string // how long each rate ran
	KeysSent                                  string
	Sluice9Section                            string // the sluice9 section, "" before it has run
	GlobalSection                             string // the global section, "" before it has run
	SaturatedSection                          string // the saturated section, "" before it has run
}

func (h *harness) write() error {
	if err := os.MkdirAll(h.out, 0o755); err != nil {
		return err
	}
	r := &h.res
	d := docData{
		R:        r,
		When:     r.Started.UTC().Format("2006-01-02 15:04 MST"),
		Took:     r.Finished.Sub(r.Started).Round(time.Second).String(),
		Capacity: capacityRPS, Slots: capSlots, Queue: capQueue, WaitMS: capWaitMS, ServeMS: capServeMS,
		ChartOverloadP99: chartOverloadP99, ChartGoodput: chartGoodput, ChartOver: chartOverhead,
	}
	d.OverheadTable, d.OverheadSpread = overheadTable(r.Overhead)
	d.OverloadTable = overloadTable(r.Overload)
	d.RoutingTable = routingTable(r.Routing)
	d.KeysTable = keysTable(r.Keys)
	if r.Profile != nil {
		d.ShareTable = shareTable(r.Profile.Shares)
	}
	d.Checks = checks(r)
	d.Benchstat = strings.TrimSpace(hotpathBenchstat)
	d.AllocCut = allocCut(hotpathBenchstat)
	d.GCVerdict = gcVerdict(r.Overhead)
	d.FloorVerdict = floorVerdict(r.Overhead)
	d.CPUVerdict = cpuVerdict(r.Overhead)
	d.WorkTable, d.WorkVerdict = workSection(r.Overhead, r.OverheadWork)
	d.OpenTable, d.OpenVerdict = openSection(r.OverheadOpen)
	d.OpenFor = r.Settings.openDuration().String()
	var rates []string
	for _, f := range h.s.Rates {
		rates = append(rates, fmt.Sprintf("%g×", f))
	}
	d.RatesText = strings.Join(rates, ", ")
	var vs []string
	for _, f := range []float64{2, 5, 10} {
		if row := findOverload(r.Overload, "sluice", f); row != nil && r.UpstreamCeiling > 0 {
			vs = append(vs, fmt.Sprintf("%.0f %% at %g×", 100*row.Res.Goodput()/r.UpstreamCeiling, f))
		}
	}
	d.VsCeiling = strings.Join(vs, ", ")
	d.KeysSent = thousands(float64(r.Settings.Keys))
	d.Sluice9Section = sluice9Section(r.Sluice9, r.Ran["sluice9"])
	d.GlobalSection = globalSection(r.Global, r.Ran["global"])
	d.SaturatedSection = saturatedSection(r.Saturated, r.Settings, r.Ran["saturated"])
	if sl, ok := findOverhead(r.Overhead, "sluice"); ok {
		ratio := func(target string) string {
			if o, ok := findOverhead(r.Overhead, target); ok {
				return fmt.Sprintf("%.2f×", sl.RPS/o.RPS)
			}
			return "?"
		}
		d.VsPlain, d.VsCaddy, d.VsHAProxy = ratio("httputil.ReverseProxy"), ratio("Caddy"), ratio("HAProxy")
	}
	times := map[string]bool{}
	var ran []string
	for _, sc := range []string{"overhead", "overload", "profile", "scaling"} {
		if t, ok := r.Ran[sc]; ok {
			times[t] = true
			ran = append(ran, sc+" "+t)
		}
	}
	if len(times) > 1 {
		d.RanText = "Scenarios were run separately (`-only`): " + strings.Join(ran, ", ") + " UTC."
	}

	charts := map[string]string{}
	if len(r.Overload) > 0 {
		charts[chartOverloadP99] = overloadP99Chart(r.Overload, h.s.LoadTimeout)
		charts[chartGoodput] = goodputChart(r.Overload)
	}
	if len(r.Overhead) > 0 {
		charts[chartOverhead] = overheadChart(r.Overhead)
	}
	for name, svg := range charts {
		if err := os.WriteFile(filepath.Join(h.out, name), []byte(svg), 0o644); err != nil {
			return err
		}
	}
	t, err := template.New("doc").Parse(docTemplate)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.out, resultsFile), append(js, '\n'), 0o644); err != nil {
		return err
	}
	path := filepath.Join(h.out, "BENCHMARKS.md")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return err
	}
	h.logf("wrote %s and %d charts", path, len(charts))
	for _, c := range d.Checks {
		h.logf("target %-8s %s: %s", c.Mark(), c.Target, c.Figure)
	}
	return nil
}

var handlerAllocsRE = regexp.MustCompile(`(?m)^Proxy/handler-\d+\s+([0-9.]+) ± \S+\s+([0-9.]+) ± \S+\s+(\S+)`)

// allocCut reads the handler benchmark's allocations before and after from
// benchstat's output (the last table, allocs/op).
func allocCut(benchstat string) string {
	i := strings.LastIndex(benchstat, "allocs/op")
	if i < 0 {
		return "?"
	}
	m := handlerAllocsRE.FindStringSubmatch(benchstat[i:])
	if m == nil {
		return "?"
	}
	cut := strings.TrimSuffix(strings.TrimPrefix(m[3], "-"), "%")
	return fmt.Sprintf("%s %% (%s → %s in the handler benchmark, which counts only the proxy's own allocations)", cut, strings.TrimSuffix(m[1], ".00"), strings.TrimSuffix(m[2], ".00"))
}

// floorVerdict says what the Go floor row shows of the p99 target: whether
// Go's runtime alone, doing HAProxy's work, gets HAProxy's p99 in this run.
func floorVerdict(rows []overheadRow) string {
	fl, ok1 := findOverhead(rows, floorRow)
	hp, ok2 := findOverhead(rows, "HAProxy")
	sl, ok3 := findOverhead(rows, "sluice")
	if !ok1 || !ok2 || !ok3 {
		return ""
	}
	v := fmt.Sprintf("In this run the floor passed %s req/s (%.0f %% of HAProxy's) with p50 %s and p99 %s; HAProxy's p99 was %s, sluice's %s at %s req/s. ",
		thousands(fl.RPS), 100*fl.RPS/hp.RPS, ms(fl.P50), ms(fl.P99), ms(hp.P99), ms(sl.P99), thousands(sl.RPS))
	if fl.P99 > hp.P99 {
		return v + "So even a Go program that does nothing but frame the bytes, at about HAProxy's throughput, " +
			"has a longer tail than HAProxy: goroutines woken by the netpoller wait their turn for one of two " +
			"Ps, where HAProxy's event loop serves ready connections in order. A Go proxy built the usual way, " +
			"a goroutine per connection, does not reach HAProxy's p99 here however little it does per request; " +
			"what is left to win is the throughput between sluice and the floor."
	}
	return v + "Go's runtime can reach HAProxy's p99 here when it does almost nothing per request; the gap " +
		"between sluice and the floor is sluice's work per request: its HTTP/1.1 loop, admission and forwarding."
}

// cpuVerdict compares sluice's CPU per request with the floor's, which is
// what the closed loop's p99 follows on a machine the generator and the
// upstream share.
func cpuVerdict(rows []overheadRow) string {
	fl, ok1 := findOverhead(rows, floorRow)
	sl, ok2 := findOverhead(rows, "sluice")
	if !ok1 || !ok2 || fl.CPUPerReq <= 0 || sl.CPUPerReq <= 0 || fl.P50 <= 0 || fl.P99 <= 0 {
		return ""
	}
	return fmt.Sprintf("sluice spent %s of CPU per request and the floor %s (%.1f×); sluice's p50 was %.2f× the floor's "+
		"and its p99 %.2f×. The two cores are shared with wrk and the upstream, so a proxy that needs more "+
		"CPU per request waits longer for it at every step: the p99 follows the CPU per request.",
		cpuPerReq(sl.CPUPerReq), cpuPerReq(fl.CPUPerReq), float64(sl.CPUPerReq)/float64(fl.CPUPerReq),
		float64(sl.P50)/float64(fl.P50), float64(sl.P99)/float64(fl.P99))
}

// workSection is the table of the floor with busy work per request, the
// floor and sluice beside it, and what it shows of the p99 target: how much
// work per request a Go forwarder can add before its p99 passes 1.5× the
// floor's, and where sluice's CPU per request puts it on that curve. Both
// are "" without the rows.
func workSection(rows []overheadRow, work []workRow) (table, verdict string) {
	fl, ok1 := findOverhead(rows, floorRow)
	sl, ok2 := findOverhead(rows, "sluice")
	if !ok1 || !ok2 || len(work) == 0 || fl.P99 <= 0 {
		return "", ""
	}
	var b strings.Builder
	b.WriteString("| the floor, with per request | requests/s | p50 | p99 | p99 ÷ the floor's | CPU per request |\n|---|--:|--:|--:|--:|--:|\n")
	line := func(name string, m wrkResult) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f× | %s |\n", name, thousands(m.RPS), ms(m.P50), ms(m.P99), float64(m.P99)/float64(fl.P99), cpuPerReq(m.CPUPerReq))
	}
	line("nothing added (the floor row)", fl)
	var within time.Duration // the most work whose p99 is within 1.5× the floor's
	var near *workRow        // the row whose CPU per request is nearest sluice's
	var nearM wrkResult
	for i := range work {
		if len(work[i].Runs) == 0 {
			continue
		}
		m, _ := medianRun(work[i].Runs)
		line(workText(work[i].Work)+" of busy work", m)
		if float64(m.P99) <= 1.5*float64(fl.P99) && work[i].Work > within {
			within = work[i].Work
		}
		if m.CPUPerReq > 0 && sl.CPUPerReq > 0 && (near == nil || absDur(m.CPUPerReq-sl.CPUPerReq) < absDur(nearM.CPUPerReq-sl.CPUPerReq)) {
			near, nearM = &work[i], m
		}
	}
	fmt.Fprintf(&b, "| *sluice (its overhead row)* | %s | %s | %s | %.2f× | %s |\n", thousands(sl.RPS), ms(sl.P50), ms(sl.P99), float64(sl.P99)/float64(fl.P99), cpuPerReq(sl.CPUPerReq))
	if within > 0 {
		verdict = fmt.Sprintf("A Go forwarder that adds up to %s of CPU work per request keeps its p99 within 1.5× the floor's in this run; with more, it does not. ", workText(within))
	} else {
		verdict = fmt.Sprintf("Even %s of CPU work per request takes the floor's own p99 past 1.5× what it was without: ", workText(work[0].Work)) +
			"in this closed loop on two shared cores, the p99 target leaves a Go forwarder less than that for all its HTTP work. "
	}
	if near != nil {
		verdict += fmt.Sprintf("sluice's CPU per request (%s) is nearest the floor's with %s of work (%s), whose p99 was %.2f× the floor's; sluice's was %.2f×.",
			cpuPerReq(sl.CPUPerReq), workText(near.Work), cpuPerReq(nearM.CPUPerReq), float64(nearM.P99)/float64(fl.P99), float64(sl.P99)/float64(fl.P99))
	}
	return b.String(), verdict
}

// openSection is the table of the open-loop part of the overhead scenario
// (one line per rate: the floor's, sluice's and HAProxy's median p50 and
// p99 over the rounds) and what it shows: at which rates sluice's p99 is
// within 1.5× the floor's. Both are "" before it has run.
func openSection(rows []openRow) (table, verdict string) {
	find := func(target string, rate float64) (p50, p99 time.Duration, lost int, ok bool) {
		for _, r := range rows {
			if r.Target != target || r.Rate != rate || len(r.Runs) == 0 {
				continue
			}
			var p50s, p99s []time.Duration
			for _, run := range r.Runs {
				p50s, p99s = append(p50s, run.P50), append(p99s, run.P99)
				lost += run.Lost
			}
			slices.Sort(p50s)
			slices.Sort(p99s)
			return p50s[len(p50s)/2], p99s[len(p99s)/2], lost, true
		}
		return 0, 0, 0, false
	}
	var rates []float64
	for _, r := range rows {
		if !slices.Contains(rates, r.Rate) {
			rates = append(rates, r.Rate)
		}
	}
	var b strings.Builder
	b.WriteString("| offered, open loop | Go floor p50 / p99 | sluice p50 / p99 | sluice's p99 ÷ the floor's | HAProxy p50 / p99 | lost (all runs) |\n|--:|--:|--:|--:|--:|--:|\n")
	var within, past []string
	for _, rate := range rates {
		f50, f99, fl, ok1 := find(floorRow, rate)
		s50, s99, sl, ok2 := find("sluice", rate)
		if !ok1 || !ok2 || f99 <= 0 {
			continue
		}
		hp := "–"
		lost := fl + sl
		if h50, h99, hl, ok := find("HAProxy", rate); ok {
			hp = ms(h50) + " / " + ms(h99)
			lost += hl
		}
		ratio := float64(s99) / float64(f99)
		fmt.Fprintf(&b, "| %s req/s | %s / %s | %s / %s | %.2f× | %s | %d |\n", thousands(rate), ms(f50), ms(f99), ms(s50), ms(s99), ratio, hp, lost)
		at := fmt.Sprintf("%s req/s (%.2f×)", thousands(rate), ratio)
		if ratio <= 1.5 {
			within = append(within, at)
		} else {
			past = append(past, at)
		}
	}
	if len(within)+len(past) == 0 {
		return "", ""
	}
	switch {
	case len(past) == 0:
		verdict = "sluice's p99 stayed within 1.5× the floor's at every rate: " + strings.Join(within, ", ") + "."
	case len(within) == 0:
		verdict = "sluice's p99 was past 1.5× the floor's at every rate: " + strings.Join(past, ", ") + "."
	default:
		verdict = "sluice's p99 stayed within 1.5× the floor's at " + strings.Join(within, ", ") + ", and went past it at " + strings.Join(past, ", ") + "."
	}
	return b.String(), verdict
}

// workText is an amount of work per request in microseconds.
func workText(d time.Duration) string {
	return fmt.Sprintf("%g µs", float64(d)/float64(time.Microsecond))
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// gcVerdict compares sluice with and without GOGC=400 in this run.
func gcVerdict(rows []overheadRow) string {
	def, ok1 := findOverhead(rows, "sluice")
	gc, ok2 := findOverhead(rows, "sluice, GOGC=400")
	if !ok1 || !ok2 {
		return ""
	}
	var rssDef, rssGC int64
	var runsDef, runsGC []wrkResult
	for _, r := range rows {
		switch r.Target {
		case "sluice":
			rssDef, runsDef = r.RSS, r.Runs
		case "sluice, GOGC=400":
			rssGC, runsGC = r.RSS, r.Runs
		}
	}
	// The two rows ran back to back in each round, so compare them round
	// by round: a burst of other work hits both alike.
	wins := 0
	for i := range min(len(runsDef), len(runsGC)) {
		if runsGC[i].RPS > runsDef[i].RPS {
			wins++
		}
	}
	gain := gc.RPS/def.RPS - 1
	if math.Abs(gain) < 0.005 {
		gain = 0 // no "-0 %"
	}
	s := fmt.Sprintf("In this run it gave %+.0f %% throughput (%s against %s req/s; p99 %s against %s) for a peak RSS of %s against %s.",
		100*gain, thousands(gc.RPS), thousands(def.RPS), ms(gc.P99), ms(def.P99), mib(rssGC), mib(rssDef))
	s += fmt.Sprintf(" Round by round it was ahead in %d of %d.", wins, len(runsDef))
	if wins == len(runsDef) && len(runsDef) > 1 && gain > 0.03 {
		s += " That is consistent enough to be worth a default: " +
			"`GOGC=400` unless the user sets GOGC, with `GOMEMLIMIT` (a soft memory limit) set to a share of the " +
			"machine's or the cgroup's memory so that the heap cannot run away under a flood. It belongs in " +
			"cmd/sluice (proposed there, not done here)."
	} else {
		s += " That is within the noise of this machine, so the default GC setting stays."
	}
	return s
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func mib(b int64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// cpuPerReq writes a CPU time per request in microseconds; "–" for none.
func cpuPerReq(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

// medianRun is the run with the median throughput, and the spread of
// throughput over the runs (max-min over median).
func medianRun(runs []wrkResult) (wrkResult, float64) {
	if len(runs) == 0 {
		return wrkResult{}, 0
	}
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b wrkResult) int { return int(a.RPS - b.RPS) })
	m := s[len(s)/2]
	return m, (s[len(s)-1].RPS - s[0].RPS) / m.RPS
}

func overheadTable(rows []overheadRow) (string, string) {
	if len(rows) == 0 {
		return "", ""
	}
	var b strings.Builder
	direct, _ := medianRun(rows[0].Runs)
	b.WriteString("| target | requests/s | of direct | p50 | p99 | CPU per request | peak RSS | runs (req/s) |\n|---|--:|--:|--:|--:|--:|--:|---|\n")
	worst := 0.0
	for _, r := range rows {
		m, spread := medianRun(r.Runs)
		worst = math.Max(worst, spread)
		var all []string
		for _, run := range r.Runs {
			s := thousands(run.RPS)
			if run.Non2xx+run.Errors > 0 {
				s += fmt.Sprintf(" (%d errors)", run.Non2xx+run.Errors)
			}
			all = append(all, s)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f %% | %s | %s | %s | %s | %s |\n", r.Target, thousands(m.RPS), 100*m.RPS/direct.RPS,
			ms(m.P50), ms(m.P99), cpuPerReq(m.CPUPerReq), mib(r.RSS), strings.Join(all, ", "))
	}
	return b.String(), fmt.Sprintf("%.0f %%", 100*worst)
}

func overloadTable(rows []overloadRow) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| proxy | offered | goodput | admitted p50 | admitted p99 | refused | refusal p50 | refusal p99 | with Retry-After | lost | peak RSS |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		if r.Res == nil {
			fmt.Fprintf(&b, "| %s | %.1f× | failed: %s |||||||||\n", r.Proxy, r.Factor, r.Err)
			continue
		}
		res := r.Res
		ra := "–"
		if res.Rejected > 0 {
			ra = fmt.Sprintf("%.0f %%", 100*res.RetryShare())
		}
		lost := thousands(float64(res.Lost))
		if res.Lost > 0 {
			var why []string
			if res.Timeouts > 0 {
				why = append(why, fmt.Sprintf("%d timed out", res.Timeouts))
			}
			if res.Errors > 0 {
				why = append(why, fmt.Sprintf("%d conn. errors", res.Errors))
			}
			for _, code := range slices.Sorted(mapsKeys(res.Other)) {
				why = append(why, fmt.Sprintf("%d × %d", res.Other[code], code))
			}
			lost = fmt.Sprintf("%s (%.0f %%: %s)", lost, 100*float64(res.Lost)/float64(res.Sent), strings.Join(why, ", "))
		}
		fmt.Fprintf(&b, "| %s | %.1f× (%s/s) | %s/s (%.0f %%) | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Proxy, r.Factor, thousands(r.Offered), thousands(res.Goodput()), 100*res.Goodput()/capacityRPS,
			ms(res.OKP50), ms(res.OKP99),
			thousands(float64(res.Rejected)), ms(res.RejP50), ms(res.RejP99),
			ra, lost, mib(r.RSS))
	}
	return b.String()
}

func mapsKeys(m map[int]int) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func routingTable(rr []routingResult) string {
	if len(rr) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| routes | index (what sluice does) | × the cost at 10 | linear scan (before) |\n|--:|--:|--:|--:|\n")
	for _, r := range rr {
		fmt.Fprintf(&b, "| %s | %.0f ns | %.2f× | %s ns |\n", thousands(float64(r.Routes)), r.IndexNS, r.IndexNS/rr[0].IndexNS, thousands(r.ScanNS))
		if r.HotNS > 0 {
			fmt.Fprintf(&b, "| %s, traffic on 10 of them | %.0f ns | %.2f× | |\n", thousands(float64(r.Routes)), r.HotNS, r.HotNS/rr[0].IndexNS)
		}
	}
	return b.String()
}

func keysTable(kr []keysResult) string {
	if len(kr) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| max_keys | distinct keys sent | buckets held after | live heap growth | per bucket held | per request |\n|--:|--:|--:|--:|--:|--:|\n")
	for _, k := range kr {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.0f B | %.0f ns |\n", thousands(float64(k.MaxKeys)), thousands(float64(k.Sent)),
			thousands(float64(k.Held)), mib(k.HeapDelta), k.PerKey, k.NSPerReq)
	}
	return b.String()
}

func shareTable(ss []cpuShare) string {
	var b strings.Builder
	b.WriteString("| where | share of CPU samples |\n|---|--:|\n")
	for _, s := range ss {
		fmt.Fprintf(&b, "| %s | %.1f %% |\n", s.What, s.Share)
	}
	return b.String()
}

// findOverload returns the row of proxy at factor, or nil.
func findOverload(rows []overloadRow, proxy string, factor float64) *overloadRow {
	for i := range rows {
		if rows[i].Proxy == proxy && rows[i].Factor == factor && rows[i].Res != nil {
			return &rows[i]
		}
	}
	return nil
}

func findOverhead(rows []overheadRow, target string) (wrkResult, bool) {
	for _, r := range rows {
		if r.Target == target && len(r.Runs) > 0 {
			m, _ := medianRun(r.Runs)
			return m, true
		}
	}
	return wrkResult{}, false
}

// checks judges the run against the doc's "Targets".
func checks(r *results) []check {
	var cs []check
	var rss []int64
	for _, f := range []float64{2, 5, 10} {
		row := findOverload(r.Overload, "sluice", f)
		if row == nil {
			continue
		}
		res := row.Res
		rss = append(rss, row.RSS)
		cs = append(cs,
			check{fmt.Sprintf("overload %g×: goodput ≥ 95 %% of capacity", f), fmt.Sprintf("%.1f %%", 100*res.Goodput()/capacityRPS), res.Goodput() >= 0.95*capacityRPS},
			check{fmt.Sprintf("overload %g×: refusal p99 ≤ 5 ms", f), ms(res.RejP99), res.RejP99 <= 5*time.Millisecond},
			check{fmt.Sprintf("overload %g×: every refusal has Retry-After", f), fmt.Sprintf("%d of %d", res.RetryHint, res.Rejected), res.RetryHint == res.Rejected},
			check{fmt.Sprintf("overload %g×: 0 lost", f), fmt.Sprint(res.Lost), res.Lost == 0},
			check{fmt.Sprintf("overload %g×: admitted p99 ≤ 150 ms", f), ms(res.OKP99), res.OKP99 <= 150*time.Millisecond},
		)
	}
	if len(rss) == 3 {
		growth := float64(rss[2]) / float64(rss[0])
		cs = append(cs, check{"overload: RSS flat from 2× to 10×", fmt.Sprintf("%s → %s → %s", mib(rss[0]), mib(rss[1]), mib(rss[2])), growth <= 1.25})
	}
	sl, ok1 := findOverhead(r.Overhead, "sluice")
	cd, ok2 := findOverhead(r.Overhead, "Caddy")
	hp, ok3 := findOverhead(r.Overhead, "HAProxy")
	if ok1 && ok2 {
		cs = append(cs, check{"overhead: throughput ≥ 2× Caddy's", fmt.Sprintf("%.2f× (%s vs %s req/s)", sl.RPS/cd.RPS, thousands(sl.RPS), thousands(cd.RPS)), sl.RPS >= 2*cd.RPS})
	}
	if fl, ok := findOverhead(r.Overhead, floorRow); ok1 && ok {
		got := fmt.Sprintf("%.2f× (%s vs %s)", float64(sl.P99)/float64(fl.P99), ms(sl.P99), ms(fl.P99))
		if ok3 {
			got += fmt.Sprintf("; HAProxy's: %s", ms(hp.P99))
		}
		cs = append(cs, check{"overhead: p99 ≤ 1.5× the Go floor's", got, float64(sl.P99) <= 1.5*float64(fl.P99)})
	}
	if ok1 && ok3 {
		cs = append(cs, check{"overhead (long-term goal): HAProxy's throughput", fmt.Sprintf("%.0f %% of it", 100*sl.RPS/hp.RPS), sl.RPS >= hp.RPS})
	}
	if len(r.Routing) == 3 {
		ratio := r.Routing[2].IndexNS / r.Routing[0].IndexNS
		cs = append(cs, check{"routing: 10 000 routes ≤ 2× the cost at 10", fmt.Sprintf("%.2f× (%.0f ns vs %.0f ns)", ratio, r.Routing[2].IndexNS, r.Routing[0].IndexNS), ratio <= 2})
	}
	return cs
}

func proxiesIn(rows []overloadRow) []string {
	var names []string
	for _, r := range rows {
		if !slices.Contains(names, r.Proxy) {
			names = append(names, r.Proxy)
		}
	}
	return names
}

func overloadP99Chart(rows []overloadRow, timeout time.Duration) string {
	c := lineChart{
		Title:  "p99 latency of requests not refused, against offered load",
		XLabel: fmt.Sprintf("offered load (× capacity of %s req/s), open loop", thousands(capacityRPS)),
		YLabel: fmt.Sprintf("p99 latency (log scale; a lost request counts as the %v timeout)", timeout),
		X:      axis{min: 0.4, max: 12, log: true},
		Y:      axis{min: 5, max: 5000, log: true},
		XTicks: []float64{0.5, 1, 2, 5, 10},
		YTicks: []float64{5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000},
		XFmt:   func(v float64) string { return fmt.Sprintf("%g×", v) },
		YFmt: func(v float64) string {
			if v >= 1000 {
				return fmt.Sprintf("%g s", v/1000)
			}
			return fmt.Sprintf("%g ms", v)
		},
		VLine: 1, VLineLabel: "capacity",
	}
	c.Series = overloadSeries(rows, func(r overloadRow) (float64, bool) {
		return float64(r.Res.AnsweredP99) / float64(time.Millisecond), r.Res.HasAnswered
	})
	return c.svg()
}

// overloadSeries is one line a proxy, sluice's drawn thicker, through the
// point y(row) gives at each offered load where it gives one.
func overloadSeries(rows []overloadRow, y func(overloadRow) (float64, bool)) []series {
	var ss []series
	for _, name := range proxiesIn(rows) {
		s := series{Name: name, Color: peerColor(name), Width: 2}
		if name == "sluice" {
			s.Width = 4
		}
		for _, r := range rows {
			if r.Proxy != name || r.Res == nil {
				continue
			}
			if v, ok := y(r); ok {
				s.Points = append(s.Points, [2]float64{r.Factor, v})
			}
		}
		ss = append(ss, s)
	}
	return ss
}

func goodputChart(rows []overloadRow) string {
	c := lineChart{
		Title:  "Goodput (2xx answers per second) against offered load",
		XLabel: fmt.Sprintf("offered load (× capacity of %s req/s), open loop", thousands(capacityRPS)),
		YLabel: "2xx answers per second",
		X:      axis{min: 0.4, max: 12, log: true},
		Y:      axis{min: 0, max: 1200},
		XTicks: []float64{0.5, 1, 2, 5, 10},
		YTicks: []float64{0, 200, 400, 600, 800, 1000, 1200},
		XFmt:   func(v float64) string { return fmt.Sprintf("%g×", v) },
		YFmt:   func(v float64) string { return thousands(v) },
		VLine:  1, VLineLabel: "capacity",
	}
	c.Series = overloadSeries(rows, func(r overloadRow) (float64, bool) {
		return math.Min(r.Res.Goodput(), 1200), true
	})
	return c.svg()
}

func overheadChart(rows []overheadRow) string {
	var bars []bar
	for _, r := range rows {
		m, _ := medianRun(r.Runs)
		bars = append(bars, bar{Label: r.Target, Value: m.RPS, Note: "p99 " + ms(m.P99), Color: peerColor(r.Target)})
	}
	return barChart("Overhead: requests/s through each proxy (wrk, 64 connections, fast upstream)", "req/s", bars)
}
