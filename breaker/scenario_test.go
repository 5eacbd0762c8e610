package breaker

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/clock"
	"sluice/config"
	"sluice/internal/datadriven"
)

// TestScenarios runs the data-driven scenarios in testdata/*.txt, files
// in internal/datadriven's format (CockroachDB's testdata/work_queue):
// blocks of a command, "----" and the expected output. Run
// `go test ./breaker -run TestScenarios -update` to rewrite the expected
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
//	open-remote DUR           OpenRemote(DUR); prints what it returned and
//	                          the state it left
//	advance DUR               move the fake clock on
//	wait-window               wait on the wall clock until one window has
//	                          passed since the last Allow (see window.txt)
//	print                     state, open period, gobreaker's counts,
//	                          transitions, held tickets
//
// Each breaker has an OnTrip hook; a report that made it fire is printed
// with ", OnTrip(DUR)" per call, DUR being the open period it was given.
//
// A refusal prints Retry-After as docs/SPEC.md gives it for breaker_open:
// OpenFor in whole seconds, rounded up, at least 1 (the rounding of
// proxy/reject.go), followed by OpenFor itself.
func TestScenarios(t *testing.T) {
	datadriven.RunFiles(t, filepath.Join("testdata", "*.txt"), func(t *testing.T) datadriven.Runner {
		return &harness{t: t}
	})
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
	trips  []time.Duration // OnTrip calls not yet printed
}

// Run runs one command of a scenario file; where is its FILE:LINE.
func (h *harness) Run(where, line string) []string {
	h.t.Helper()
	args := datadriven.ParseArgs(h.t, where, line)
	cmd := args.Cmd
	if cmd != "new" && h.b == nil {
		h.t.Fatalf("%s: %s before new", where, cmd)
	}
	switch cmd {
	case "new":
		cfg, err := parseBreaker(args.Fields)
		if err != nil {
			return strings.Split(err.Error(), "\n")
		}
		h.epoch = time.Unix(1_700_000_000, 0)
		h.clk = clock.NewFake(h.epoch)
		h.cfg = cfg
		h.b = New("users", cfg, h.clk)
		h.b.OnTrip(h.onTrip)
		h.held, h.order, h.trips = map[string]func(Outcome){}, nil, nil
		return []string{fmt.Sprintf("consecutive_failures=%d failure_ratio=%v min_requests=%d window=%v open_timeout=%v half_open_requests=%d",
			cfg.ConsecutiveFailures, cfg.FailureRatio, cfg.MinRequests, cfg.Window, cfg.OpenTimeout, cfg.HalfOpenRequests)}
	case "allow":
		id := args.Get("id")
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
		name := args.Only("report [id=X] success|failure|ignored [n=N]")
		o := h.outcome(where, name)
		if id, ok := args.Lookup("id"); ok {
			done := h.held[id]
			if done == nil {
				h.t.Fatalf("%s: %s holds no ticket", where, id)
			}
			delete(h.held, id)
			h.order = slices.DeleteFunc(h.order, func(s string) bool { return s == id })
			done(o)
			return []string{fmt.Sprintf("%s: %s -> %v%s", id, name, h.b.State(), h.tripped())}
		}
		n := args.IntOr("n", 1)
		if n < 1 {
			h.t.Fatalf("%s: n=%d: want at least 1", where, n)
		}
		var lines []string
		for range n {
			done, ok := h.allow()
			if !ok {
				lines = append(lines, h.refusal())
				continue
			}
			done(o)
			lines = append(lines, fmt.Sprintf("%s -> %v%s", name, h.b.State(), h.tripped()))
		}
		return collapseRuns(lines)
	case "open-remote":
		changed := h.b.OpenRemote(args.OnlyDuration("open-remote DUR"))
		line := fmt.Sprintf("%v -> %v", changed, h.b.State())
		if left := h.b.OpenFor(); left > 0 {
			line += fmt.Sprintf(" (open for %v)", left)
		}
		return []string{line}
	case "advance":
		h.clk.Advance(args.OnlyDuration("advance DUR"))
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

// onTrip is the breaker's OnTrip hook. It calls back into the breaker,
// which the hook's contract allows: the gate is already set.
func (h *harness) onTrip(openFor time.Duration) {
	if left := h.b.OpenFor(); left != openFor {
		h.t.Errorf("OnTrip(%v) while OpenFor() = %v", openFor, left)
	}
	h.trips = append(h.trips, openFor)
}

// tripped describes the OnTrip calls since the last call.
func (h *harness) tripped() string {
	var s strings.Builder
	for _, d := range h.trips {
		fmt.Fprintf(&s, ", OnTrip(%v)", d)
	}
	h.trips = h.trips[:0]
	return s.String()
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
	c := h.b.cur.Load().cb.Counts()
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
