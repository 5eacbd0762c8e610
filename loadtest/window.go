package loadtest

import (
	"math"
	"slices"
	"strconv"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Window is one second of a run, by the time requests finished.
type Window struct {
	Second  int     `json:"second"`  // from the start of the run
	Offered float64 `json:"offered"` // requests the schedule sends in this second
	Sent    int     `json:"sent"`    // requests sent in this second (complete once the run is over)
	OK      int     `json:"ok"`      // 2xx answers that finished in it
	Refused int     `json:"refused"` // non-2xx answers that finished in it
	Errors  int     `json:"errors"`  // requests that got no answer, finished in it
	Goodput float64 `json:"goodput"` // OK per second

	AdmittedP50 Millis `json:"admitted_p50_ms"`
	AdmittedP99 Millis `json:"admitted_p99_ms"`
	RefusedP50  Millis `json:"refused_p50_ms"`
	RefusedP99  Millis `json:"refused_p99_ms"`
}

// Millis is a duration written as float milliseconds.
type Millis float64

func ms(d time.Duration) Millis { return Millis(float64(d) / float64(time.Millisecond)) }

// bucket holds one window's raw results.
type bucket struct {
	sent, errors      int
	admitted, refused []time.Duration
}

// collector gathers results; only Run's goroutine touches it.
type collector struct {
	o       Options
	pacer   vegeta.LinearPacer
	buckets []bucket

	sent              int
	byStatus          map[int]int
	byReason          map[string]int
	retryAfterMissing int
	errs              map[string]int
	lag               []time.Duration // how late each request left against the schedule

	stopped time.Duration // when Run stopped the sending early, from the start

	lastGood *Window // the capacity search's last window within bounds
	breach   *Window // and the first one out of them, once the next confirmed it
	why      string
	// suspect is a window out of bounds that the next window with
	// anything finished in it must confirm, so that one stalled second
	// of a busy machine is not taken for the knee; suspectWhy says why.
	suspect    *Window
	suspectWhy string
}

func newCollector(o Options, p vegeta.LinearPacer) *collector {
	return &collector{o: o, pacer: p, byStatus: map[int]int{}, byReason: map[string]int{}, errs: map[string]int{}}
}

func (c *collector) at(i int) *bucket {
	for len(c.buckets) <= i {
		c.buckets = append(c.buckets, bucket{})
	}
	return &c.buckets[i]
}

func (c *collector) add(start time.Time, r *vegeta.Result) {
	sentAt := r.Timestamp.Sub(start)
	c.sent++
	c.at(int(sentAt/time.Second)).sent++
	c.lag = append(c.lag, max(0, sentAt-due(c.pacer, r.Seq)))
	b := c.at(int((sentAt + r.Latency) / time.Second))
	switch {
	case r.Code == 0:
		b.errors++
		c.errs[errorKind(r.Error)]++
	case r.Code >= 200 && r.Code < 300:
		b.admitted = append(b.admitted, r.Latency)
	default:
		b.refused = append(b.refused, r.Latency)
		c.byStatus[int(r.Code)]++
		reason := r.Headers.Get("Sluice-Reject")
		if reason == "" {
			reason = NoReason
		}
		c.byReason[reason]++
		if ra := r.Headers.Get("Retry-After"); ra == "" {
			c.retryAfterMissing++
		} else if _, err := strconv.Atoi(ra); err != nil {
			c.retryAfterMissing++ // an HTTP-date is no promise sluice makes
		}
	}
}

// NoReason is the reason of a refusal without a Sluice-Reject header: an
// answer of the service itself, or of anything but sluice in front of it.
const NoReason = "(none)"

func (c *collector) window(i int) Window {
	b := c.at(i)
	w := Window{
		Second:  i,
		Offered: c.planned(time.Duration(i)*time.Second, time.Duration(i+1)*time.Second),
		Sent:    b.sent,
		OK:      len(b.admitted),
		Refused: len(b.refused),
		Errors:  b.errors,
		Goodput: float64(len(b.admitted)),
	}
	a, r := sorted(b.admitted), sorted(b.refused)
	w.AdmittedP50, w.AdmittedP99 = ms(quantile(a, 0.5)), ms(quantile(a, 0.99))
	w.RefusedP50, w.RefusedP99 = ms(quantile(r, 0.5)), ms(quantile(r, 0.99))
	return w
}

// planned is the number of requests the schedule sends from a to b,
// none after the sending ended.
func (c *collector) planned(a, b time.Duration) float64 {
	end := c.o.Duration
	if c.stopped > 0 {
		end = min(end, c.stopped)
	}
	hits := func(t time.Duration) float64 {
		x := min(t, end).Seconds()
		return float64(c.o.From)*x + c.pacer.Slope*x*x/2
	}
	return hits(b) - hits(a)
}

// judge applies the capacity bounds to a closed window and reports
// whether the search is over: the bounds broke in two windows in a row,
// and the first of them is the breach. A window with nothing finished in
// it says nothing either way; one within the bounds clears a suspect.
func (c *collector) judge(w Window) bool {
	total := w.OK + w.Refused + w.Errors
	if total == 0 || c.breach != nil {
		return c.breach != nil
	}
	share := float64(w.Refused+w.Errors) / float64(total)
	var why string
	switch {
	case time.Duration(float64(w.AdmittedP99)*float64(time.Millisecond)) > c.o.MaxP99:
		why = "admitted p99 " + time.Duration(float64(w.AdmittedP99)*float64(time.Millisecond)).Round(time.Millisecond).String() + " > " + c.o.MaxP99.String()
	case share > c.o.MaxRefused:
		why = "refused " + strconv.FormatFloat(100*share, 'f', 1, 64) + "% > " + strconv.FormatFloat(100*c.o.MaxRefused, 'f', 1, 64) + "%"
	default:
		c.lastGood, c.suspect = &w, nil
		return false
	}
	if c.suspect == nil {
		c.suspect, c.suspectWhy = &w, why
		return false
	}
	c.breach, c.why = c.suspect, c.suspectWhy
	return true
}

// endSearch takes a suspect the run ended before confirming as the
// breach: no later window said otherwise.
func (c *collector) endSearch() {
	if c.breach == nil && c.suspect != nil {
		c.breach, c.why = c.suspect, c.suspectWhy
	}
}

func sorted(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// quantile is the nearest-rank q-quantile of sorted s; 0 for none.
func quantile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(s))*q)) - 1
	return s[min(max(i, 0), len(s)-1)]
}
