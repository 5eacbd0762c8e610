package breaker

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/clock"
	"sluice/config"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txt")

// TestScenarios runs the data-driven scenarios in testdata, in the manner of
// CockroachDB's testdata/work_queue. Each block is a command, a "----" line
// and the expected output, ended by a blank line; lines starting with #
// between blocks are comments. Run with -update to rewrite the expected
// output from what the code does.
//
// Commands:
//
//	new KEY=VALUE ...         a new breaker on a fake clock at +0s, from an
//	                          upstream's breaker block holding the given keys
//	                          (config.Parse applies the defaults and
//	                          validates); prints the settings in effect
//	allow id=X                Allow; X holds the ticket if admitted
//	report id=X OUTCOME       report held ticket X's outcome (success,
//	                          failure or ignored)
//	report OUTCOME [n=N]      N requests (default 1), each allowed and at
//	                          once reported; a run of identical lines is
//	                          printed once, with its count
//	advance DUR               move the fake clock on
//	wait-window               wait on the wall clock until one window has
//	                          passed since the last Allow (see window.txt)
//	print                     state, open period, gobreaker's counts,
//	                          transitions, held tickets
//
// A refusal prints Retry-After as docs/SPEC.md gives it for breaker_open:
// OpenFor in whole seconds, rounded up, at least 1 (the rounding of
// proxy/reject.go), followed by OpenFor itself.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenario files in testdata")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runScenarioFile(t, file)
		})
	}
}

// scenarioItem is a verbatim line (comment or blank) or a command block.
type scenarioItem struct {
	verbatim string
	cmd      string
	want     []string
	line     int
	isCmd    bool
}

func parseScenario(t *testing.T, file string) []scenarioItem {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var items []scenarioItem
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			items = append(items, scenarioItem{verbatim: l})
			continue
		}
		it := scenarioItem{cmd: l, line: i + 1, isCmd: true}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s:%d: command %q not followed by ----", file, i+1, l)
		}
		i += 2
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			it.want = append(it.want, lines[i])
		}
		i-- // the blank line, if any, is kept verbatim
		items = append(items, it)
	}
	return items
}

func runScenarioFile(t *testing.T, file string) {
	items := parseScenario(t, file)
	h := &harness{t: t}
	var out strings.Builder
	for i := range items {
		it := &items[i]
		if !it.isCmd {
			out.WriteString(it.verbatim + "\n")
			continue
		}
		got := h.run(fmt.Sprintf("%s:%d", file, it.line), it.cmd)
		if !*update && !slices.Equal(got, it.want) {
			t.Errorf("%s:%d: %s\n got:\n\t%s\nwant:\n\t%s", file, it.line, it.cmd,
				strings.Join(got, "\n\t"), strings.Join(it.want, "\n\t"))
		}
		out.WriteString(it.cmd + "\n----\n")
		for _, l := range got {
			out.WriteString(l + "\n")
		}
	}
	if *update {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type harness struct {
	t      *testing.T
	clk    *clock.Fake
	epoch  time.Time
	cfg    config.Breaker
	b      *Breaker
	held   map[string]func(Outcome)
	order  []string // held ids in the order they were admitted
	allows time.Time
}

func (h *harness) run(where, line string) []string {
	h.t.Helper()
	fields := strings.Fields(line)
	cmd, args := fields[0], map[string]string{}
	var pos []string
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			args[k] = v
		} else {
			pos = append(pos, f)
		}
	}
	if cmd != "new" && h.b == nil {
		h.t.Fatalf("%s: %s before new", where, cmd)
	}
	switch cmd {
	case "new":
		cfg, err := parseBreaker(fields[1:])
		if err != nil {
			return strings.Split(err.Error(), "\n")
		}
		h.epoch = time.Unix(1_700_000_000, 0)
		h.clk = clock.NewFake(h.epoch)
		h.cfg = cfg
		h.b = New("users", cfg, h.clk)
		h.held, h.order = map[string]func(Outcome){}, nil
		return []string{fmt.Sprintf("consecutive_failures=%d failure_ratio=%v min_requests=%d window=%v open_timeout=%v half_open_requests=%d",
			cfg.ConsecutiveFailures, cfg.FailureRatio, cfg.MinRequests, cfg.Window, cfg.OpenTimeout, cfg.HalfOpenRequests)}
	case "allow":
		id := args["id"]
		if id == "" || h.held[id] != nil {
			h.t.Fatalf("%s: id %q missing or held", where, id)
		}
		done, ok := h.allow()
		if !ok {
			return []string{id + ": " + h.refusal()}
		}
		h.held[id] = done
		h.order = append(h.order, id)
		return []string{id + ": admitted"}
	case "report":
		if len(pos) != 1 {
			h.t.Fatalf("%s: report [id=X] success|failure|ignored", where)
		}
		o := h.outcome(where, pos[0])
		if id, ok := args["id"]; ok {
			done := h.held[id]
			if done == nil {
				h.t.Fatalf("%s: %s holds no ticket", where, id)
			}
			delete(h.held, id)
			h.order = slices.DeleteFunc(h.order, func(s string) bool { return s == id })
			done(o)
			return []string{fmt.Sprintf("%s: %s -> %v", id, pos[0], h.b.State())}
		}
		n := 1
		if v, ok := args["n"]; ok {
			if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
				h.t.Fatalf("%s: n=%q", where, v)
			}
		}
		var lines []string
		for range n {
			done, ok := h.allow()
			if !ok {
				lines = append(lines, h.refusal())
				continue
			}
			done(o)
			lines = append(lines, fmt.Sprintf("%s -> %v", pos[0], h.b.State()))
		}
		return collapseRuns(lines)
	case "advance":
		if len(pos) != 1 {
			h.t.Fatalf("%s: advance DUR", where)
		}
		d, err := time.ParseDuration(pos[0])
		if err != nil {
			h.t.Fatalf("%s: %v", where, err)
		}
		h.clk.Advance(d)
		return []string{fmt.Sprintf("t=+%v", h.clk.Now().Sub(h.epoch))}
	case "wait-window":
		// gobreaker reads the wall clock for its rolling window and has no
		// clock hook, so only real time ages its counts. Waiting is safe to
		// assert on: a request's counts leave the window once Window has
		// passed since its Allow (its bucket's start is no later), and
		// waiting longer cannot bring them back.
		for time.Since(h.allows) < h.cfg.Window {
			time.Sleep(h.cfg.Window - time.Since(h.allows))
		}
		return []string{fmt.Sprintf("%v passed on the wall clock since the last allow", h.cfg.Window)}
	case "print":
		return h.print()
	}
	h.t.Fatalf("%s: unknown command %q", where, cmd)
	return nil
}

// collapseRuns prints a run of identical lines once, suffixed "(xN)".
func collapseRuns(lines []string) []string {
	var out []string
	for i := 0; i < len(lines); {
		j := i + 1
		for j < len(lines) && lines[j] == lines[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s (x%d)", lines[i], j-i))
		} else {
			out = append(out, lines[i])
		}
		i = j
	}
	return out
}

func (h *harness) allow() (func(Outcome), bool) {
	done, err := h.b.Allow()
	h.allows = time.Now()
	if err != nil {
		if err != ErrOpen {
			h.t.Fatalf("Allow: %v, want nil or ErrOpen", err)
		}
		return nil, false
	}
	return done, true
}

func (h *harness) outcome(where, s string) Outcome {
	switch s {
	case "success":
		return Success
	case "failure":
		return Failure
	case "ignored":
		return Ignored
	}
	h.t.Fatalf("%s: outcome %q: want success, failure or ignored", where, s)
	return 0
}

// refusal describes a refused Allow: the state, and the Retry-After an
// admission refusal would carry.
func (h *harness) refusal() string {
	left := h.b.OpenFor()
	return fmt.Sprintf("refused (%v) retry-after=%d (open for %v)", h.b.State(), retryAfterSeconds(left), left)
}

// retryAfterSeconds is docs/SPEC.md's Retry-After: whole seconds, rounded
// up, at least 1 (as proxy/reject.go computes it).
func retryAfterSeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}

func (h *harness) print() []string {
	// State first: it settles a passed open period and rolls gobreaker's
	// window, which Counts alone does not.
	state := h.b.State()
	line := "state=" + state.String()
	if until := h.b.OpenUntil(); !until.IsZero() {
		left := h.b.OpenFor()
		line += fmt.Sprintf(" open-until=+%v open-for=%v retry-after=%d", until.Sub(h.epoch), left, retryAfterSeconds(left))
	}
	c := h.b.cb.Counts()
	return []string{
		line,
		fmt.Sprintf("counts: requests=%d successes=%d failures=%d ignored=%d consecutive_failures=%d consecutive_successes=%d",
			c.Requests, c.TotalSuccesses, c.TotalFailures, c.TotalExclusions, c.ConsecutiveFailures, c.ConsecutiveSuccesses),
		fmt.Sprintf("transitions: open=%d half-open=%d closed=%d",
			h.b.Transitions(StateOpen), h.b.Transitions(StateHalfOpen), h.b.Transitions(StateClosed)),
		"held: [" + strings.Join(h.order, " ") + "]",
	}
}

// parseBreaker builds a config holding one upstream whose breaker block has
// the given key=value pairs, and returns that block as config.Parse left it:
// defaults applied, validated.
func parseBreaker(kvs []string) (config.Breaker, error) {
	var y strings.Builder
	y.WriteString("upstreams:\n  - name: users\n    targets: [\"http://127.0.0.1:9001\"]\n    breaker:\n")
	if len(kvs) == 0 {
		y.WriteString("      {}\n")
	}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&y, "      %s: %s\n", k, v)
	}
	y.WriteString("routes:\n  - name: all\n    match: {path_prefix: /}\n    upstream: users\n")
	cfg, err := config.Parse("new", []byte(y.String()))
	if err != nil {
		return config.Breaker{}, err
	}
	return *cfg.Upstreams[0].Breaker, nil
}
