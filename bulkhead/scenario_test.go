package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/clock"
	"sluice/internal/datadriven"
)

// TestScenarios runs the data-driven scenarios in testdata/*.txt, files
// in internal/datadriven's format (CockroachDB's testdata/work_queue):
// blocks of a command, "----" and the expected output. Run
// `go test ./bulkhead -run TestScenarios -update` to rewrite the expected
// output from what the code does.
//
// Commands (every one settles before printing: each acquire it ends has
// returned and reported):
//
//	init max=N depth=N wait=DUR   a new bulkhead on a fake clock at +0s (wait > 0),
//	     [shed=C,D,S]             made by New, or by NewWithOptions if any of
//	     [discipline=fifo|codel]  shed (Options.ShedAt, critical,default,sheddable),
//	     [target=DUR] [interval=DUR]  discipline, target or interval is given;
//	     [within_target=N]        within_target pins CoDel's drain estimate at
//	                              N (scenarios about other rules), else it is
//	                              measured
//	acquire id=X [class=C]        Acquire (AcquireClass if class is given) in a
//	        [ctx=done]            goroutine; returns once it has returned or is
//	                              queued with its timer armed (under CoDel,
//	                              whose bound is printed), then prints the
//	                              acquires the arrival ended (CoDel refusals)
//	try id=X [class=C]            TryAcquire (TryAcquireClass)
//	cancel id=X                   cancel X's context
//	advance DUR                   move the fake clock on, firing due timers
//	release id=X                  release X's permit (a panic is printed)
//	set-limit n=N                 SetLimit
//	close                         Close
//	print                         counts, the queue (classes highest first,
//	                              each from head (oldest) to tail; non-default
//	                              names carry their class), the limit once
//	                              set-limit was used, the CoDel state, and
//	                              every acquire's state
//
// Every grant is checked, as it is made, against the limit at that moment.
func TestScenarios(t *testing.T) {
	datadriven.RunFiles(t, filepath.Join("testdata", "*.txt"), func(t *testing.T) datadriven.Runner {
		h := &harness{t: t}
		t.Cleanup(h.done)
		return h
	})
}

type acq struct {
	id       string
	seq      int
	start    time.Time
	deadline time.Time // zero until armed
	cancel   context.CancelFunc
	canceled bool
	pending  bool // the goroutine has not reported
	try      bool
	permit   Permit
	err      error
	end      time.Time
	released bool
}

type acqResult struct {
	id     string
	permit Permit
	err    error
	end    time.Time
}

type harness struct {
	t       *testing.T
	clk     clock.Reporting
	epoch   time.Time
	b       *Bulkhead
	acqs    map[string]*acq
	order   []*acq
	names   map[*waiter]string // queued waiter -> acquire id, recorded as each queues
	results chan acqResult
	// limitSet: set-limit was used since init, so print shows the limit.
	limitSet bool
}

// done runs as the file's subtest ends: the invariants hold after the last
// command, and nothing queued outlives the test.
func (h *harness) done() {
	if h.b != nil {
		h.b.mu.Lock()
		checkInvariantsLocked(h.t, h.b)
		h.b.mu.Unlock()
	}
	h.cleanup()
}

func (h *harness) cleanup() {
	// Unblock anything still queued so no goroutine outlives the test.
	if h.b == nil {
		return
	}
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
	get := func() *acq {
		a := h.acqs[args.Get("id")]
		if a == nil {
			h.t.Fatalf("%s: unknown id %q", where, args.Get("id"))
		}
		return a
	}
	if cmd != "init" && h.b == nil {
		h.t.Fatalf("%s: %s before init", where, cmd)
	}
	switch cmd {
	case "init":
		h.cleanup()
		h.epoch = time.Unix(1_700_000_000, 0)
		h.clk = clock.NewReporting(h.epoch)
		var extra string
		if args.Get("shed") == "" && args.Get("discipline") == "" && args.Get("target") == "" && args.Get("interval") == "" && args.Get("within_target") == "" {
			h.b = New(args.Int("max"), args.Int("depth"), args.Duration("wait"), h.clk)
		} else {
			o := Options{MaxConcurrent: args.Int("max"), MaxDepth: args.Int("depth"), MaxWait: args.Duration("wait"), Clock: h.clk}
			if v := args.Get("shed"); v != "" {
				parts := strings.Split(v, ",")
				if len(parts) != numClasses {
					h.t.Fatalf("%s: shed=critical,default,sheddable", where)
				}
				for c, f := range parts {
					if _, err := fmt.Sscan(f, &o.ShedAt[c]); err != nil {
						h.t.Fatalf("%s: shed: %v", where, err)
					}
				}
				extra += " shed=" + v
			}
			switch args.Get("discipline") {
			case "", "fifo":
			case "codel":
				o.Discipline = CoDel
			default:
				h.t.Fatalf("%s: discipline=fifo|codel", where)
			}
			if args.Get("target") != "" {
				o.CoDelTarget = args.Duration("target")
			}
			if args.Get("interval") != "" {
				o.CoDelInterval = args.Duration("interval")
			}
			h.b = NewWithOptions(o)
			if h.b.codel {
				extra += fmt.Sprintf(" discipline=codel target=%v interval=%v", h.b.target, h.b.interval)
			}
			if args.Get("within_target") != "" {
				h.b.testingWithinTarget = args.Int("within_target")
				extra += fmt.Sprintf(" within_target=%d", h.b.testingWithinTarget)
			}
		}
		if h.b.MaxWait() <= 0 {
			h.t.Fatalf("%s: scenarios need wait > 0 to see a waiter queue", where)
		}
		h.b.testingOnGrant = func(inflight, limit int) {
			if inflight > limit {
				h.t.Errorf("%s: granted a slot with inflight %d over limit %d", where, inflight, limit)
			}
		}
		h.acqs, h.order = map[string]*acq{}, nil
		h.names = map[*waiter]string{}
		h.results = make(chan acqResult)
		h.limitSet = false
		return []string{fmt.Sprintf("max_concurrent=%d max_depth=%d max_wait=%v%s",
			h.b.MaxConcurrent(), h.b.MaxDepth(), h.b.MaxWait(), extra)}
	case "acquire":
		a := h.newAcq(where, args.Get("id"))
		ctx, cancel := context.WithCancel(context.Background())
		a.cancel = cancel
		if args.Get("ctx") == "done" {
			cancel()
			a.canceled = true
		}
		a.pending = true
		class, hasClass := h.class(where, args)
		go func() {
			var p Permit
			var err error
			if hasClass {
				p, err = h.b.AcquireClass(ctx, class)
			} else {
				p, err = h.b.Acquire(ctx)
			}
			h.results <- acqResult{id: a.id, permit: p, err: err, end: h.clk.Now()}
		}()
		// An arrival can end other waits (an overloaded CoDel queue
		// refuses its stale waiters as a request arrives), and their
		// results can come before this acquire has returned or armed its
		// timer: collect them until it has.
		var others []*acq
		for a.pending && a.deadline.IsZero() {
			select {
			case r := <-h.results:
				if o := h.record(r); o != a {
					others = append(others, o)
				}
			case a.deadline = <-h.clk.Armed:
				// Queued: it is the tail of its class, and its timer runs
				// from now. Nothing else runs until this command returns.
				h.b.mu.Lock()
				h.names[h.b.queues[class].tail] = a.id
				h.b.mu.Unlock()
			}
		}
		if a.pending {
			line := fmt.Sprintf("%s: queued (depth=%d)", a.id, h.b.Depth())
			if h.b.codel { // the bound depends on the mode: show it
				line += fmt.Sprintf(" wait<=%v", a.deadline.Sub(a.start))
			}
			out = []string{line}
		} else {
			out = []string{h.describe(a)}
		}
		return append(out, h.settleFrom(others)...)
	case "try":
		a := h.newAcq(where, args.Get("id"))
		a.try = true
		var p Permit
		var ok bool
		if class, hasClass := h.class(where, args); hasClass {
			p, ok = h.b.TryAcquireClass(class)
		} else {
			p, ok = h.b.TryAcquire()
		}
		a.end = h.clk.Now()
		if ok {
			a.permit = p
		} else {
			a.err = errTryRefused
		}
		return []string{h.describe(a)}
	case "cancel":
		a := get()
		a.cancel()
		a.canceled = true
		return h.settle()
	case "advance":
		h.clk.Advance(args.OnlyDuration("advance DUR"))
		out = append(out, fmt.Sprintf("t=+%v", h.clk.Now().Sub(h.epoch)))
		return append(out, h.settle()...)
	case "release":
		a := get()
		if a.permit == (Permit{}) {
			h.t.Fatalf("%s: %s holds no permit", where, a.id)
		}
		if msg := panicOf(a.permit.Release); msg != "" {
			out = append(out, "panic: "+msg)
		} else {
			a.released = true
			out = append(out, a.id+": released")
		}
		out = append(out, h.settle()...)
		return append(out, fmt.Sprintf("inflight=%d depth=%d", h.b.Inflight(), h.b.Depth()))
	case "set-limit":
		h.b.SetLimit(args.Int("n"))
		h.limitSet = true
		out = h.settle()
		return append(out, fmt.Sprintf("limit=%d inflight=%d depth=%d", h.b.Limit(), h.b.Inflight(), h.b.Depth()))
	case "close":
		h.b.Close()
		return append([]string{"closed"}, h.settle()...)
	case "print":
		return h.print()
	}
	h.t.Fatalf("%s: unknown command %q", where, cmd)
	return nil
}

var errTryRefused = errors.New("refused")

// class returns the class=C argument (ClassDefault if absent) and whether
// it was given.
func (h *harness) class(where string, args *datadriven.Args) (Class, bool) {
	v, ok := args.Lookup("class")
	if !ok {
		return ClassDefault, false
	}
	for c := range Class(numClasses) {
		if c.String() == v {
			return c, true
		}
	}
	h.t.Fatalf("%s: class=%q: want critical, default or sheddable", where, v)
	return 0, false
}

func (h *harness) newAcq(where, id string) *acq {
	if id == "" || h.acqs[id] != nil {
		h.t.Fatalf("%s: id %q missing or reused", where, id)
	}
	a := &acq{id: id, seq: len(h.order), start: h.clk.Now()}
	h.acqs[id] = a
	h.order = append(h.order, a)
	return a
}

func (h *harness) record(r acqResult) *acq {
	a := h.acqs[r.id]
	a.pending = false
	a.permit, a.err, a.end = r.permit, r.err, r.end
	return a
}

// settle waits until every acquire that must end has reported: those whose
// ctx was canceled or whose timer is due, and as many as have left the
// queue (a waiter is unlinked before it can report, so while more acquires
// are pending than queued, one is on its way). It returns their outcomes
// in the order the acquires were started.
func (h *harness) settle() []string { return h.settleFrom(nil) }

// settleFrom is settle, with done the acquires already seen to end.
func (h *harness) settleFrom(done []*acq) []string {
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
		if !mustEnd && pending == h.b.Depth() {
			break
		}
		done = append(done, h.record(<-h.results))
	}
	slices.SortFunc(done, func(x, y *acq) int { return x.seq - y.seq })
	var out []string
	for _, a := range done {
		out = append(out, h.describe(a))
	}
	return out
}

func (h *harness) describe(a *acq) string {
	if a.pending {
		return a.id + ": queued"
	}
	waited := ""
	if !a.try && !a.deadline.IsZero() {
		waited = fmt.Sprintf(" after %v", a.end.Sub(a.start))
	}
	switch {
	case a.err == nil && a.released:
		return a.id + ": acquired" + waited + ", released"
	case a.err == nil:
		return a.id + ": acquired" + waited
	default:
		return a.id + ": " + errName(a.err) + waited
	}
}

func errName(err error) string {
	switch {
	case errors.Is(err, ErrFull):
		return "ErrFull"
	case errors.Is(err, ErrTimeout):
		return "ErrTimeout"
	case errors.Is(err, ErrClosed):
		return "ErrClosed"
	case errors.Is(err, context.Canceled):
		return "context.Canceled"
	case errors.Is(err, errTryRefused):
		return "refused"
	}
	return "error: " + err.Error()
}

func (h *harness) print() []string {
	h.b.mu.Lock()
	checkInvariantsLocked(h.t, h.b)
	var q []string
	for c := range h.b.queues {
		for w := h.b.queues[c].head; w != nil; w = w.next {
			name, ok := h.names[w]
			if !ok {
				name = "?"
			}
			if w.class != ClassDefault {
				name += ":" + w.class.String()
			}
			q = append(q, name)
		}
	}
	line := fmt.Sprintf("inflight=%d depth=%d queue=[%s]", h.b.Inflight(), h.b.Depth(), strings.Join(q, " "))
	if h.limitSet {
		line += fmt.Sprintf(" limit=%d", h.b.Limit())
	}
	if h.b.codel {
		switch {
		case h.b.overloaded:
			line += fmt.Sprintf(" codel=overloaded(last refusal +%v)", h.b.lastDrop.Sub(h.epoch))
		case !h.b.firstAbove.IsZero():
			line += fmt.Sprintf(" codel=fifo(above since +%v)", h.b.firstAbove.Sub(h.epoch))
		default:
			line += " codel=fifo"
		}
		if h.b.withinTarget > 0 {
			line += fmt.Sprintf(" within_target=%d", h.b.withinTarget)
		}
	}
	h.b.mu.Unlock()
	out := []string{line}
	for _, a := range h.order {
		out = append(out, h.describe(a))
	}
	return out
}

// panicOf runs f and returns the message it panicked with, or "".
func panicOf(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return ""
}

// checkInvariantsLocked checks what must hold whenever b.mu is free: the
// lists are well linked and in enqueue order, the counts match the lists,
// the mirrors match the counts, the queue is non-empty only while every
// slot is held, and the CoDel state is consistent.
// (Inflight may exceed the limit after SetLimit lowered it; that a grant
// never exceeds it is checked at each grant, through testingOnGrant.)
func checkInvariantsLocked(t testing.TB, b *Bulkhead) {
	t.Helper()
	total := 0
	for c := range b.queues {
		q := &b.queues[c]
		n := 0
		var prev *waiter
		for w := q.head; w != nil; w = w.next {
			if w.prev != prev || w.state != waitQueued || w.class != Class(c) {
				t.Errorf("%v queue corrupt at waiter %d: prev link, state %d or class %v", Class(c), n, w.state, w.class)
			}
			if prev != nil && w.enqueued.Before(prev.enqueued) {
				t.Errorf("%v queue out of enqueue order at waiter %d", Class(c), n)
			}
			prev = w
			n++
		}
		if prev != q.tail {
			t.Errorf("%v: tail does not end the list", Class(c))
		}
		if n != q.n || int64(n) != b.classDepthMirror[c].Load() {
			t.Errorf("%v: depth %d, mirror %d, list holds %d", Class(c), q.n, b.classDepthMirror[c].Load(), n)
		}
		total += n
	}
	if total != b.depth || int64(total) != b.depthMirror.Load() {
		t.Errorf("depth %d, mirror %d, lists hold %d", b.depth, b.depthMirror.Load(), total)
	}
	if int64(b.inflight) != b.inflightMirror.Load() {
		t.Errorf("inflight %d, mirror %d", b.inflight, b.inflightMirror.Load())
	}
	if int64(b.limit) != b.limitMirror.Load() || b.limit < 1 {
		t.Errorf("limit %d, mirror %d", b.limit, b.limitMirror.Load())
	}
	if b.inflight < 0 {
		t.Errorf("inflight %d < 0", b.inflight)
	}
	if total > 0 && b.inflight < b.limit {
		t.Errorf("%d waiters queued with only %d of %d slots held", total, b.inflight, b.limit)
	}
	if total > b.maxDepth {
		t.Errorf("depth %d over max %d", total, b.maxDepth)
	}
	if (b.overloaded || !b.firstAbove.IsZero()) && !b.codel {
		t.Errorf("CoDel state (overloaded %v, first above %v) under FIFO", b.overloaded, b.firstAbove)
	}
	if b.overloaded && !b.firstAbove.IsZero() {
		t.Errorf("an episode (first above %v) while overloaded", b.firstAbove)
	}
}
