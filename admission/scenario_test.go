package admission

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"sluice/breaker"
	"sluice/clock"
	"sluice/config"
	"sluice/internal/datadriven"
)

// TestScenarios runs the data-driven scenarios in testdata/*.txt, files
// in internal/datadriven's format (CockroachDB's testdata/work_queue):
// blocks of a command, "----" and the expected output. Run
// `go test ./admission -run TestScenarios -update` to rewrite the expected
// output from what the code does.
//
// Commands (every one settles before printing: each Admit it ends has
// returned and reported):
//
//	route SECTION.KEY=VALUE ...  a new Controller on a fake clock at +0s, for
//	                             one route whose rate_limit, bulkhead and
//	                             queue sections, and its upstream's breaker
//	                             section, hold the given keys (config.Parse
//	                             applies the defaults and validates); prints
//	                             the settings in effect
//	admit id=X [key=K] [xff=IP]  Admit in a goroutine; returns once it has
//	                             returned or is queued with its max_wait
//	                             timer armed. K is the client IP if it is
//	                             one, and the value of the key header on a
//	                             header-keyed route; xff sets
//	                             X-Forwarded-For
//	finish id=X [OUTCOME]        Finish X with OUTCOME (success, failure or
//	                             ignored; default success)
//	cancel id=X                  the client of queued X leaves
//	advance DUR                  move the fake clock on, firing due timers
//	print                        inflight, queue depth, mean service time,
//	                             the route-wide bucket's tokens or the
//	                             number of keyed buckets, the breaker, the
//	                             counters by reason, and every admit's state
//
// A refusal prints its Retry-After as docs/SPEC.md's header: whole seconds,
// rounded up, at least 1 (the rounding of proxy/reject.go), followed by
// Decision.RetryAfter itself. A route with a rate limit prints the bucket's
// remaining and reset with every decision.
func TestScenarios(t *testing.T) {
	datadriven.RunFiles(t, filepath.Join("testdata", "*.txt"), func(t *testing.T) datadriven.Runner {
		h := &harness{t: t}
		t.Cleanup(h.cleanup)
		return h
	})
}

type adm struct {
	id       string
	seq      int
	deadline time.Time // zero unless it queued
	cancel   context.CancelFunc
	canceled bool
	pending  bool // the goroutine has not reported
	d        Decision
	finished string // the outcome Finish was given, "" until then
}

type admResult struct {
	id string
	d  Decision
}

type harness struct {
	t       *testing.T
	clk     clock.Reporting
	epoch   time.Time
	rc      config.Route
	c       *Controller
	br      *breaker.Breaker
	adms    map[string]*adm
	order   []*adm
	results chan admResult
}

// cleanup lets every queued Admit go so that no goroutine outlives the test.
func (h *harness) cleanup() {
	for _, a := range h.order {
		if a.pending {
			a.cancel()
		}
	}
	for _, a := range h.order {
		if a.pending {
			<-h.results
		}
	}
}

// Run runs one command of a scenario file; where is its FILE:LINE.
func (h *harness) Run(where, line string) (out []string) {
	h.t.Helper()
	args := datadriven.ParseArgs(h.t, where, line)
	cmd := args.Cmd
	get := func() *adm {
		a := h.adms[args.Get("id")]
		if a == nil {
			h.t.Fatalf("%s: unknown id %q", where, args.Get("id"))
		}
		return a
	}
	if cmd != "route" && h.c == nil {
		h.t.Fatalf("%s: %s before route", where, cmd)
	}
	switch cmd {
	case "route":
		rc, bc, err := parseRoute(args.Fields)
		if err != nil {
			return strings.Split(err.Error(), "\n")
		}
		h.cleanup()
		h.epoch = time.Unix(1_700_000_000, 0)
		h.clk = clock.NewReporting(h.epoch)
		h.rc, h.br = rc, nil
		if bc != nil {
			h.br = breaker.New("app", *bc, h.clk)
		}
		h.c = New(rc, h.br, h.clk)
		h.adms, h.order = map[string]*adm{}, nil
		h.results = make(chan admResult)
		return describeRoute(rc, bc)
	case "admit":
		id := args.Get("id")
		if id == "" || h.adms[id] != nil {
			h.t.Fatalf("%s: id %q missing or reused", where, id)
		}
		a := &adm{id: id, seq: len(h.order), pending: true}
		h.adms[id] = a
		h.order = append(h.order, a)
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "192.0.2.1:40000"
		if k, ok := args.Lookup("key"); ok {
			if net.ParseIP(k) != nil {
				r.RemoteAddr = net.JoinHostPort(k, "40000")
			}
			if hdr, ok := strings.CutPrefix(h.rateLimitKey(), "header:"); ok {
				r.Header.Set(hdr, k)
			}
		}
		if v, ok := args.Lookup("xff"); ok {
			r.Header.Set("X-Forwarded-For", v)
		}
		ctx, cancel := context.WithCancel(context.Background())
		a.cancel = cancel
		go func() { h.results <- admResult{id: id, d: h.c.Admit(ctx, r)} }()
		select {
		case res := <-h.results:
			h.record(res)
			select {
			case a.deadline = <-h.clk.Armed:
				// It queued and left before this select ran; describe
				// prints its wait.
			default:
				// It never queued, so no time may have passed in a queue.
				if a.d.QueueWait != 0 {
					h.t.Errorf("%s: %s waited %v without queueing", where, id, a.d.QueueWait)
				}
			}
			return []string{h.describe(a)}
		case a.deadline = <-h.clk.Armed:
			return []string{fmt.Sprintf("%s: queued (depth=%d, wait<=%v)", id, h.c.QueueDepth(), a.deadline.Sub(h.clk.Now()))}
		}
	case "finish":
		a := get()
		if a.pending || a.d.Reason != Admitted || a.finished != "" {
			h.t.Fatalf("%s: %s is not admitted and unfinished", where, a.id)
		}
		o, name := breaker.Success, "success"
		if len(args.Positional) > 0 {
			name = args.Only("finish id=X [success|failure|ignored]")
			switch name {
			case "success":
			case "failure":
				o = breaker.Failure
			case "ignored":
				o = breaker.Ignored
			default:
				h.t.Fatalf("%s: outcome %q: want success, failure or ignored", where, name)
			}
		}
		a.d.Finish(o)
		a.finished = name
		out = append(out, fmt.Sprintf("%s: finished (%s)", a.id, name))
		out = append(out, h.settle()...)
		return append(out, fmt.Sprintf("inflight=%d depth=%d", h.c.Inflight(), h.c.QueueDepth()))
	case "cancel":
		a := get()
		a.cancel()
		a.canceled = true
		return h.settle()
	case "advance":
		h.clk.Advance(args.OnlyDuration("advance DUR"))
		out = append(out, fmt.Sprintf("t=+%v", h.clk.Now().Sub(h.epoch)))
		return append(out, h.settle()...)
	case "print":
		return h.print()
	}
	h.t.Fatalf("%s: unknown command %q", where, cmd)
	return nil
}

func (h *harness) rateLimitKey() string {
	if h.rc.RateLimit == nil {
		return ""
	}
	return h.rc.RateLimit.Key
}

func (h *harness) record(r admResult) {
	a := h.adms[r.id]
	a.pending = false
	a.d = r.d
}

// settle waits until every Admit that must end has reported: those whose
// client left or whose max_wait is due, and as many as have left the queue
// (a waiter is unlinked before its Admit returns, so while more are
// pending than queued, one is on its way). It returns their outcomes in
// the order the requests arrived.
func (h *harness) settle() []string {
	var done []*adm
	for {
		pending, mustEnd := 0, false
		for _, a := range h.order {
			if a.pending {
				pending++
				if a.canceled || (!a.deadline.IsZero() && !a.deadline.After(h.clk.Now())) {
					mustEnd = true
				}
			}
		}
		if !mustEnd && pending == h.c.QueueDepth() {
			break
		}
		r := <-h.results
		h.record(r)
		done = append(done, h.adms[r.id])
	}
	slices.SortFunc(done, func(x, y *adm) int { return x.seq - y.seq })
	var out []string
	for _, a := range done {
		out = append(out, h.describe(a))
	}
	return out
}

func (h *harness) describe(a *adm) string {
	if a.pending {
		return a.id + ": queued"
	}
	d := a.d
	s := a.id + ": " + d.Reason.String()
	if !a.deadline.IsZero() {
		s += fmt.Sprintf(" after %v", d.QueueWait)
	}
	switch d.Reason {
	case Admitted:
		if a.finished != "" {
			s += ", finished (" + a.finished + ")"
		}
	case ClientGone, ShuttingDown:
		// No Retry-After: nothing is written, or nothing is promised.
	default:
		s += fmt.Sprintf(" retry-after=%d (%v)", retryAfterSeconds(d.RetryAfter), d.RetryAfter)
	}
	if d.HasRateLimit {
		s += fmt.Sprintf(" remaining=%d reset=%v", d.Remaining, d.Reset)
	}
	return s
}

// retryAfterSeconds is docs/SPEC.md's Retry-After: whole seconds, rounded
// up, at least 1 (as proxy/reject.go computes it).
func retryAfterSeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}

func (h *harness) print() []string {
	line := fmt.Sprintf("inflight=%d depth=%d mean_service_time=%v", h.c.Inflight(), h.c.QueueDepth(), h.c.MeanServiceTime())
	if l := h.c.RateLimiter(); l != nil {
		if l.single != nil {
			line += fmt.Sprintf(" tokens=%.3g", l.single.TokensAt(h.clk.Now()))
		} else {
			line += fmt.Sprintf(" keys=%d", l.Keys())
		}
	}
	if h.br != nil {
		line += " breaker=" + h.br.State().String()
	}
	out := []string{line}

	// Every request that reached Admit and returned is in exactly one
	// counter: admitted, a refusal reason, or client_gone.
	counts := []string{fmt.Sprintf("admitted=%d", h.c.Admitted())}
	sum := h.c.Admitted()
	for _, r := range append(slices.Clone(Rejections), ClientGone) {
		if n := h.c.Rejected(r); n > 0 {
			counts = append(counts, fmt.Sprintf("%v=%d", r, n))
			sum += n
		}
	}
	returned, queued := uint64(0), 0
	for _, a := range h.order {
		if a.pending {
			queued++
		} else {
			returned++
		}
	}
	rel := "="
	if sum != returned {
		rel = "!="
		h.t.Errorf("counters add up to %d, but %d requests returned from Admit", sum, returned)
	}
	line = fmt.Sprintf("%s: %d %s %d requests returned", strings.Join(counts, " "), sum, rel, returned)
	if queued > 0 {
		line += fmt.Sprintf(", %d queued", queued)
	}
	out = append(out, line)
	for _, a := range h.order {
		out = append(out, h.describe(a))
	}
	return out
}

// parseRoute builds a config holding one upstream and one route from
// SECTION.KEY=VALUE pairs (sections rate_limit, bulkhead and queue of the
// route, breaker of the upstream) and returns the route and the upstream's
// breaker block (nil without one) as config.Parse left them: defaults
// applied, validated.
func parseRoute(kvs []string) (config.Route, *config.Breaker, error) {
	sections := map[string][]string{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		sec, key, ok := strings.Cut(k, ".")
		if !ok {
			return config.Route{}, nil, fmt.Errorf("%q: want SECTION.KEY=VALUE", kv)
		}
		if strings.Contains(v, ":") {
			v = fmt.Sprintf("%q", v)
		}
		sections[sec] = append(sections[sec], fmt.Sprintf("%s: %s", key, v))
	}
	block := func(y *strings.Builder, sec, indent string) {
		if lines, ok := sections[sec]; ok {
			fmt.Fprintf(y, "%s%s:\n", indent, sec)
			for _, l := range lines {
				fmt.Fprintf(y, "%s  %s\n", indent, l)
			}
			delete(sections, sec)
		}
	}
	var y strings.Builder
	y.WriteString("upstreams:\n  - name: app\n    targets: [\"http://127.0.0.1:9001\"]\n")
	block(&y, "breaker", "    ")
	y.WriteString("routes:\n  - name: api\n    match: {path_prefix: /}\n    upstream: app\n")
	for _, sec := range []string{"rate_limit", "bulkhead", "queue"} {
		block(&y, sec, "    ")
	}
	if len(sections) > 0 {
		var names []string
		for s := range sections {
			names = append(names, s)
		}
		sort.Strings(names)
		return config.Route{}, nil, fmt.Errorf("unknown sections %v", names)
	}
	cfg, err := config.Parse("route", []byte(y.String()))
	if err != nil {
		return config.Route{}, nil, err
	}
	return cfg.Routes[0], cfg.Upstreams[0].Breaker, nil
}

func describeRoute(rc config.Route, bc *config.Breaker) []string {
	var out []string
	if r := rc.RateLimit; r != nil {
		out = append(out, fmt.Sprintf("rate_limit: rps=%v burst=%d key=%s", r.RPS, r.Burst, r.Key))
	}
	if b := rc.Bulkhead; b != nil {
		out = append(out, fmt.Sprintf("bulkhead: max_concurrent=%d", b.MaxConcurrent),
			fmt.Sprintf("queue: max_depth=%d max_wait=%v", rc.Queue.MaxDepth, rc.Queue.MaxWait))
	}
	if bc != nil {
		out = append(out, fmt.Sprintf("breaker: consecutive_failures=%d failure_ratio=%v min_requests=%d window=%v open_timeout=%v half_open_requests=%d",
			bc.ConsecutiveFailures, bc.FailureRatio, bc.MinRequests, bc.Window, bc.OpenTimeout, bc.HalfOpenRequests))
	}
	if len(out) == 0 {
		out = append(out, "no admission control")
	}
	return out
}
