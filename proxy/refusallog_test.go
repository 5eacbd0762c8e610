package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/clock"
	"sluice/config"
	"sluice/internal/testutil"
	"sluice/overload"
)

// TestRefusalBudgetExact: of many concurrent refusals in one second,
// exactly refusalLogBudget get a line; the next second has a fresh budget,
// and a refusal that read the clock before the second turned spends from
// the newer one rather than turning it back.
func TestRefusalBudgetExact(t *testing.T) {
	var l refusalLog
	const sec = 1_700_000_000
	var (
		mu      sync.Mutex // guards granted
		granted int
		wg      sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			n := 0
			for range 1000 {
				if l.spend(sec) {
					n++
				}
			}
			mu.Lock()
			granted += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if granted != refusalLogBudget {
		t.Fatalf("%d lines granted in one second, want %d", granted, refusalLogBudget)
	}
	if !l.spend(sec + 1) {
		t.Fatal("the next second has no budget")
	}
	for range refusalLogBudget - 1 {
		if !l.spend(sec) { // late: spends from sec+1
			t.Fatal("a late refusal was refused a line with budget left")
		}
	}
	if l.spend(sec+1) || l.spend(sec) {
		t.Fatal("a line granted past the budget")
	}
}

// accessLine is the part of an access-log line these tests read.
type accessLine struct {
	Msg    string `json:"msg"`
	Route  string `json:"route"`
	Reason string `json:"reason"`
	Status int    `json:"status"`
	Count  uint64 `json:"count"`
	Since  string `json:"since"`
	Until  string `json:"until"`
}

func accessLines(t *testing.T, buf *syncBuffer) []accessLine {
	t.Helper()
	var lines []accessLine
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	for sc.Scan() {
		var l accessLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		lines = append(lines, l)
	}
	return lines
}

// foldKey is one summary's (route, reason, status).
type foldKey struct {
	route, reason string
	status        int
}

// tallyLines counts individual request lines by (route, reason, status)
// and sums the folded counts by the same key.
func tallyLines(lines []accessLine) (single, folded map[foldKey]uint64) {
	single, folded = map[foldKey]uint64{}, map[foldKey]uint64{}
	for _, l := range lines {
		k := foldKey{l.Route, l.Reason, l.Status}
		switch l.Msg {
		case "request":
			single[k]++
		case "requests refused (folded)":
			folded[k] += l.Count
		}
	}
	return single, folded
}

// foldingProxy serves, on a real listener and a fake clock, a route whose
// bucket (burst 1, no refill on the stopped clock) refuses all but its first
// request, one whose breaker one refused dial opens, and an unlimited one.
func foldingProxy(t *testing.T, clk clock.Clock) (*Proxy, *httptest.Server, *syncBuffer) {
	t.Helper()
	up := echoUpstream(t, "u")
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`
upstreams:
  - {name: u, targets: ["%s"]}
  - {name: dead, targets: ["%s"], breaker: {consecutive_failures: 1, open_timeout: 1m}}
routes:
  - {name: rl, match: {path: /rl}, upstream: u, rate_limit: {rps: 0.5, burst: 1}}
  - {name: br, match: {path: /br}, upstream: dead}
  - {name: ok, match: {path: /ok}, upstream: u}
`, up.URL, closedPortURL(t))))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	p, err := New(cfg, Options{Clock: clk, Log: slog.New(slog.DiscardHandler), AccessLog: slog.New(slog.NewJSONHandler(logs, nil)), Overload: calmMachine})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	return p, srv, logs
}

// fireGets sends n GETs of each path from 8 concurrent clients and counts the
// answers by path and status.
func fireGets(t *testing.T, base string, n map[string]int) map[string]map[int]int {
	t.Helper()
	var (
		mu  sync.Mutex // guards got
		got = map[string]map[int]int{}
		wg  sync.WaitGroup
	)
	for path := range n {
		got[path] = map[int]int{} // before any client runs: got is only read under mu from here on
	}
	for path, count := range n {
		work := make(chan struct{}, count)
		for range count {
			work <- struct{}{}
		}
		close(work)
		for range 8 {
			wg.Go(func() {
				for range work {
					resp, err := http.Get(base + path)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					got[path][resp.StatusCode]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return got
}

// TestAccessLogFoldsRefusals drives refusals past the budget through a
// real proxy in two seconds of a fake clock and checks that every request
// is in the access log exactly once: admitted ones each on its line,
// refusals on their own lines up to the budget per route and second, the
// rest in summaries whose counts add up to the refusals sent, with the
// interval they cover.
func TestAccessLogFoldsRefusals(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 250_000_000).UTC()
	clk := clock.NewFake(t0)
	p, srv, logs := foldingProxy(t, clk)

	// Second 1: the first /rl is admitted and the first /br opens the
	// breaker (502); everything after is refused.
	first := fireGets(t, srv.URL, map[string]int{"/rl": 1, "/br": 1})
	if first["/rl"][200] != 1 || first["/br"][502] != 1 {
		t.Fatalf("priming: %v", first)
	}
	sent := fireGets(t, srv.URL, map[string]int{"/rl": 350, "/br": 130, "/ok": 40})
	if sent["/rl"][429] != 350 || sent["/br"][503] != 130 || sent["/ok"][200] != 40 {
		t.Fatalf("second 1 answers: %v", sent)
	}
	clk.Advance(500 * time.Millisecond)
	p.flushFolded()
	lines := accessLines(t, logs)
	single, folded := tallyLines(lines)
	rl, br := foldKey{"rl", "rate_limited", 429}, foldKey{"br", "breaker_open", 503}
	if single[rl] != refusalLogBudget || folded[rl] != 350-refusalLogBudget {
		t.Errorf("rl in second 1: %d lines and %d folded, want %d and %d", single[rl], folded[rl], refusalLogBudget, 350-refusalLogBudget)
	}
	if single[br] != refusalLogBudget || folded[br] != 130-refusalLogBudget {
		t.Errorf("br in second 1: %d lines and %d folded, want %d and %d", single[br], folded[br], refusalLogBudget, 130-refusalLogBudget)
	}
	if n := single[foldKey{"ok", "", 200}]; n != 40 {
		t.Errorf("%d lines for 40 admitted requests", n)
	}
	var summaries []accessLine
	for _, l := range lines {
		if l.Msg == "requests refused (folded)" {
			summaries = append(summaries, l)
		}
	}
	since, until := t0.Format(time.RFC3339Nano), t0.Add(500*time.Millisecond).Format(time.RFC3339Nano)
	if len(summaries) != 2 || summaries[0].Route != "br" || summaries[1].Route != "rl" {
		t.Fatalf("summaries %+v, want one for br then one for rl", summaries)
	}
	for _, s := range summaries {
		if s.Since != since || s.Until != until {
			t.Errorf("summary %+v covers [%s, %s), want [%s, %s)", s, s.Since, s.Until, since, until)
		}
	}

	// Second 2: a fresh budget, and Close writes what is folded.
	clk.Advance(time.Second)
	more := fireGets(t, srv.URL, map[string]int{"/rl": 220, "/ok": 10})
	if more["/rl"][429] != 220 || more["/ok"][200] != 10 {
		t.Fatalf("second 2 answers: %v", more)
	}
	srv.Close()
	p.Close()
	single, folded = tallyLines(accessLines(t, logs))
	if got := single[rl] + folded[rl]; got != 350+220 {
		t.Errorf("rl refusals in the log: %d lines + %d folded = %d, sent %d", single[rl], folded[rl], got, 350+220)
	}
	if single[rl] != 2*refusalLogBudget {
		t.Errorf("rl: %d lines over two seconds, want %d", single[rl], 2*refusalLogBudget)
	}
	if got := single[br] + folded[br]; got != 130 {
		t.Errorf("br refusals in the log: %d, sent 130", got)
	}
	if n := single[foldKey{"ok", "", 200}]; n != 50 {
		t.Errorf("%d lines for 50 admitted requests", n)
	}
	if n := single[foldKey{"rl", "", 200}] + single[foldKey{"br", "", 502}]; n != 2 {
		t.Errorf("%d lines for the 2 priming requests", n)
	}
}

// TestAccessLogFoldedEachSecond: once started, the proxy writes the folded
// summary when its clock reaches the end of the second, and Close finds
// nothing left to write.
func TestAccessLogFoldedEachSecond(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 400_000_000).UTC()
	clk := clock.NewFake(t0)
	p, srv, logs := foldingProxy(t, clk)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.Start(ctx)
	clk.WaitTimers(1) // the summary timer, armed for the end of the second

	fireGets(t, srv.URL, map[string]int{"/rl": 1})
	got := fireGets(t, srv.URL, map[string]int{"/rl": refusalLogBudget + 30})
	if got["/rl"][429] != refusalLogBudget+30 {
		t.Fatalf("answers: %v", got)
	}
	clk.Advance(600 * time.Millisecond)
	testutil.WaitFor(t, "the folded summary", func() bool { return strings.Contains(logs.String(), "(folded)") })
	clk.WaitTimers(1) // re-armed for the next second
	srv.Close()
	p.Close()
	var summaries []accessLine
	for _, l := range accessLines(t, logs) {
		if l.Msg == "requests refused (folded)" {
			summaries = append(summaries, l)
		}
	}
	want := accessLine{Msg: "requests refused (folded)", Route: "rl", Reason: "rate_limited", Status: 429, Count: 30,
		Since: t0.Format(time.RFC3339Nano), Until: t0.Truncate(time.Second).Add(time.Second).Format(time.RFC3339Nano)}
	if len(summaries) != 1 || summaries[0] != want {
		t.Errorf("summaries %+v, want [%+v]", summaries, want)
	}
}

// TestAccessLogFoldsDoorRefusals: refusals at the overload manager's door,
// before any route matched, carry their reason on their own lines and fold
// past the budget under route "", and every one is in the log once.
func TestAccessLogFoldsDoorRefusals(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0).UTC())
	up := echoUpstream(t, "u")
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`
server: {memory_limit: 1MiB}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: ok, match: {path_prefix: /}, upstream: u}]
`, up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	p, err := New(cfg, Options{Clock: clk, Log: slog.New(slog.DiscardHandler), AccessLog: slog.New(slog.NewJSONHandler(logs, nil)),
		Overload: overload.Options{Clock: clk, Heap: func() uint64 { return 2 << 20 }, Sched: func() time.Duration { return 0 }}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	clk.Advance(100 * time.Millisecond)
	p.Overload().Sample()
	sent := fireGets(t, srv.URL, map[string]int{"/x": 260})
	if sent["/x"][503] != 260 {
		t.Fatalf("answers %v, want 260 × 503", sent)
	}
	srv.Close()
	p.Close()
	single, folded := tallyLines(accessLines(t, logs))
	door := foldKey{"", "overloaded", 503}
	if single[door] != refusalLogBudget || folded[door] != 260-refusalLogBudget {
		t.Fatalf("door refusals: %d lines and %d folded, want %d and %d (all: %v %v)", single[door], folded[door], refusalLogBudget, 260-refusalLogBudget, single, folded)
	}
}
