package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"sluice/admission"
)

// refusalLogBudget is how many refusals a route logs one access-log line
// each per second of the proxy's clock. Refusals past it are folded: only
// counted, by reason, and written once a second as one summary line per
// route and reason ("requests refused (folded)"). An overloaded route can
// refuse tens of thousands of requests a second, and a JSON line costs
// several times what the refusal itself does; the admitted requests, and
// the refusals of a route below the budget, are still logged one by one.
const refusalLogBudget = 100

// refusalLog is one route's refusal budget and folded counts. It is kept
// by route name across reloads, so that a reload neither loses counts
// nor grants a fresh budget mid-second.
type refusalLog struct {
	name string
	// budget packs the clock second being spent (high 40 bits) and the
	// lines written in it (low 24 bits), so that one compare-and-swap both
	// starts a new second and spends its first line: a reset never lands
	// between another request's check and its spend.
	budget atomic.Uint64
	// folded counts the refusals, by reason, that were not logged since
	// the last summary; a summary takes them with Swap, so each refusal is
	// in exactly one summary.
	folded [admission.NumReasons]atomic.Uint64
}

const budgetCountBits = 24

// spend reports whether a refusal at second sec of the proxy's clock may
// have its own line. Over the budget it only loads: refusals on a saturated
// route do not contend for the budget word.
func (l *refusalLog) spend(sec int64) bool {
	s := uint64(sec) & (1<<(64-budgetCountBits) - 1)
	for {
		old := l.budget.Load()
		var next uint64
		switch w, n := old>>budgetCountBits, old&(1<<budgetCountBits-1); {
		case s > w:
			next = s<<budgetCountBits | 1
		case n < refusalLogBudget:
			next = old + 1
		default:
			return false
		}
		if l.budget.CompareAndSwap(old, next) {
			return true
		}
	}
}

// refusalLogs holds every route's refusalLog by name, for the routes to
// share across reloads and for the summaries to visit.
type refusalLogs struct {
	mu     sync.Mutex // guards byName, names, since; held while summaries are written
	byName map[string]*refusalLog
	names  []string  // the keys of byName, sorted: summaries come in route order by name
	since  time.Time // when the last summaries were written (or the proxy made)
}

// route returns the refusalLog of the route named name, made on first use.
// A route that leaves the config keeps its entry, so that refusals of
// requests it still holds are counted and summarised.
func (ls *refusalLogs) route(name string) *refusalLog {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.byName[name]; l != nil {
		return l
	}
	if ls.byName == nil {
		ls.byName = map[string]*refusalLog{}
	}
	l := &refusalLog{name: name}
	ls.byName[name] = l
	i, _ := slices.BinarySearch(ls.names, name)
	ls.names = slices.Insert(ls.names, i, name)
	return l
}

// logRefusal writes st's access-log line if its route has budget left this
// second, else folds it into the route's count for its reason. Refusals at
// the overload manager's door, before routing, share the budget of route "".
func (p *Proxy) logRefusal(st *reqState, r *http.Request, status int, took time.Duration) {
	l := p.doorLog
	if st.route != nil {
		l = st.route.refusals
	}
	if l.spend(st.start.Unix()) {
		p.logAccess(st, r, status, took)
		return
	}
	l.folded[st.reason].Add(1)
}

// flushFolded writes one summary line per route and reason with refusals
// folded since the last flush: their count, status, and the interval
// [since, until) of the proxy's clock they fell in. It runs at the end of
// every second while the proxy is started, and from Close; tests call it
// to drive summaries by hand.
func (p *Proxy) flushFolded() {
	ls := &p.refusals
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := p.clk.Now()
	since := ls.since
	ls.since = now
	for _, name := range ls.names {
		l := ls.byName[name]
		for _, reason := range admission.Rejections {
			n := l.folded[reason].Swap(0)
			if n == 0 {
				continue
			}
			p.access.LogAttrs(context.Background(), slog.LevelInfo, "requests refused (folded)",
				slog.String("route", name), slog.String("reason", reason.String()),
				slog.Int("status", rejects[reason].status), slog.Uint64("count", n),
				slog.Time("since", since), slog.Time("until", now))
		}
	}
}

// foldLoop writes the folded summaries at the end of every second of the
// proxy's clock until ctx is done. A panic in a flush is logged and the
// loop goes on.
func (p *Proxy) foldLoop(ctx context.Context) {
	for {
		now := p.clk.Now()
		t := p.clk.NewTimer(now.Truncate(time.Second).Add(time.Second).Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		p.safeFlushFolded()
	}
}

func (p *Proxy) safeFlushFolded() {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("writing folded refusals panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	p.flushFolded()
}
