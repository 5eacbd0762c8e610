package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is what a run found. Written with -json it is one object with
// these fields (latencies in float milliseconds):
//
//	url, from, to          the target and the schedule, req/s
//	duration_s             how long the run lasted, to the last answer
//	sent                   requests sent; sent = ok + refused + errors
//	ok                     2xx answers
//	refused                every other answer (by_status and by_reason each sum to it)
//	errors                 requests with no answer; errors_by_kind: timeout, connection
//	goodput                ok per second of sending
//	admitted, refused_latency   p50_ms, p90_ms, p99_ms, max_ms of 2xx and of refused answers
//	by_status              refusals by status code
//	by_reason              refusals by Sluice-Reject reason ("(none)" without the header)
//	retry_after_missing    refusals without an integer Retry-After
//	schedule               planned_rps, achieved_rps, lag_p99_ms, lag_max_ms: how well the
//	                       sender kept the schedule (lag: how late a request left)
//	windows                one per second: second, offered, sent, ok, refused, errors,
//	                       goodput, admitted_p50_ms, admitted_p99_ms, refused_p50_ms, refused_p99_ms
//	capacity               with find-capacity: found, offered, goodput, second (of the last
//	                       window within the bounds), broke_at (the second after), reason
type Report struct {
	URL               string         `json:"url"`
	From              int            `json:"from"`
	To                int            `json:"to"`
	Duration          float64        `json:"duration_s"`
	Sent              int            `json:"sent"`
	OK                int            `json:"ok"`
	Refused           int            `json:"refused"`
	Errors            int            `json:"errors"`
	Goodput           float64        `json:"goodput"`
	Admitted          Latency        `json:"admitted"`
	RefusedLatency    Latency        `json:"refused_latency"`
	ByStatus          map[int]int    `json:"by_status"`
	ByReason          map[string]int `json:"by_reason"`
	RetryAfterMissing int            `json:"retry_after_missing"`
	ErrorsByKind      map[string]int `json:"errors_by_kind"`
	Schedule          Schedule       `json:"schedule"`
	Windows           []Window       `json:"windows"`
	Capacity          *Capacity      `json:"capacity,omitempty"`
}

// Latency is a latency distribution's percentiles.
type Latency struct {
	P50 Millis `json:"p50_ms"`
	P90 Millis `json:"p90_ms"`
	P99 Millis `json:"p99_ms"`
	Max Millis `json:"max_ms"`
}

// Schedule says how well the sender kept to the planned rate.
type Schedule struct {
	Planned  float64 `json:"planned_rps"`  // the schedule's mean rate over the sending time
	Achieved float64 `json:"achieved_rps"` // requests sent per second of sending
	LagP99   Millis  `json:"lag_p99_ms"`   // how late a request left against the schedule
	LagMax   Millis  `json:"lag_max_ms"`
}

// Capacity is the breaking point a capacity search found.
type Capacity struct {
	Found   bool    `json:"found"`   // a window broke the bounds after one within them
	Offered float64 `json:"offered"` // req/s offered in the last window within the bounds
	Goodput float64 `json:"goodput"` // its 2xx per second
	Second  int     `json:"second"`
	BrokeAt int     `json:"broke_at"` // the window that broke them; -1 if none did
	Reason  string  `json:"reason"`   // which bound broke, or why nothing was found
}

func latency(d []time.Duration) Latency {
	slices.Sort(d)
	return Latency{ms(quantile(d, 0.5)), ms(quantile(d, 0.9)), ms(quantile(d, 0.99)), ms(quantile(d, 1))}
}

func (c *collector) report(elapsed time.Duration) *Report {
	r := &Report{
		URL: c.o.URL, From: c.o.From, To: c.o.To,
		Duration: elapsed.Seconds(), Sent: c.sent,
		ByStatus: c.byStatus, ByReason: c.byReason, RetryAfterMissing: c.retryAfterMissing,
		ErrorsByKind: c.errs,
	}
	var admitted, refused []time.Duration
	for i := range c.buckets {
		b := &c.buckets[i]
		admitted = append(admitted, b.admitted...)
		refused = append(refused, b.refused...)
		r.Errors += b.errors
		r.Windows = append(r.Windows, c.window(i))
	}
	r.OK, r.Refused = len(admitted), len(refused)
	r.Admitted, r.RefusedLatency = latency(admitted), latency(refused)

	// The sending time is the schedule's, or shorter when the run was
	// stopped early.
	sending := c.o.Duration
	if c.stopped > 0 {
		sending = min(sending, c.stopped)
	}
	if s := sending.Seconds(); s > 0 {
		r.Goodput = float64(r.OK) / s
		r.Schedule.Achieved = float64(c.sent) / s
		r.Schedule.Planned = (c.pacer.Rate(0) + c.pacer.Rate(sending)) / 2
	}
	lag := sorted(c.lag)
	r.Schedule.LagP99, r.Schedule.LagMax = ms(quantile(lag, 0.99)), ms(quantile(lag, 1))

	if c.o.FindCapacity {
		c.endSearch()
		cp := &Capacity{BrokeAt: -1}
		switch {
		case c.breach == nil:
			cp.Reason = fmt.Sprintf("no window broke the bounds up to %d req/s: the capacity is higher, ramp further", c.o.To)
			if c.lastGood != nil {
				cp.Offered, cp.Goodput, cp.Second = c.lastGood.Offered, c.lastGood.Goodput, c.lastGood.Second
			}
		case c.lastGood == nil:
			cp.BrokeAt, cp.Reason = c.breach.Second, c.why+" already in the first window: start the ramp lower"
		default:
			cp.Found = true
			cp.Offered, cp.Goodput, cp.Second = c.lastGood.Offered, c.lastGood.Goodput, c.lastGood.Second
			cp.BrokeAt, cp.Reason = c.breach.Second, c.why
		}
		r.Capacity = cp
	}
	return r
}

// WriteJSON writes the report as one JSON object and a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a reader at a terminal.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	rate := strconv.Itoa(r.From) + " req/s"
	if r.From != r.To {
		rate = fmt.Sprintf("ramp %d → %d req/s", r.From, r.To)
	}
	fmt.Fprintf(&b, "loadtest %s, %s, %.1fs\n\n", r.URL, rate, r.Duration)
	pct := func(n int) string {
		if r.Sent == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(r.Sent))
	}
	fmt.Fprintf(&b, "  sent      %d   (schedule %.0f req/s, sent %.0f req/s, late by p99 %s max %s)\n",
		r.Sent, r.Schedule.Planned, r.Schedule.Achieved, r.Schedule.LagP99, r.Schedule.LagMax)
	fmt.Fprintf(&b, "  admitted  %d  %s   goodput %.1f req/s\n", r.OK, pct(r.OK), r.Goodput)
	fmt.Fprintf(&b, "  refused   %d  %s\n", r.Refused, pct(r.Refused))
	fmt.Fprintf(&b, "  errors    %d  %s%s\n\n", r.Errors, pct(r.Errors), counts(r.ErrorsByKind))
	fmt.Fprintf(&b, "  latency          p50        p90        p99        max\n")
	fmt.Fprintf(&b, "    admitted  %9s  %9s  %9s  %9s\n", r.Admitted.P50, r.Admitted.P90, r.Admitted.P99, r.Admitted.Max)
	fmt.Fprintf(&b, "    refused   %9s  %9s  %9s  %9s\n", r.RefusedLatency.P50, r.RefusedLatency.P90, r.RefusedLatency.P99, r.RefusedLatency.Max)
	if r.Refused > 0 {
		fmt.Fprintf(&b, "\n  refusals by reason%s\n", counts(r.ByReason))
		status := map[string]int{}
		for k, v := range r.ByStatus {
			status[strconv.Itoa(k)] = v
		}
		fmt.Fprintf(&b, "  refusals by status%s\n", counts(status))
		if r.RetryAfterMissing == 0 {
			fmt.Fprintf(&b, "  every refusal carried Retry-After\n")
		} else {
			fmt.Fprintf(&b, "  %d of %d refusals without Retry-After\n", r.RetryAfterMissing, r.Refused)
		}
	}
	if c := r.Capacity; c != nil {
		if c.Found {
			fmt.Fprintf(&b, "\n  capacity  %.0f req/s offered, %.0f req/s goodput (in %d–%ds);\n            broke in %d–%ds: %s\n",
				c.Offered, c.Goodput, c.Second, c.Second+1, c.BrokeAt, c.BrokeAt+1, c.Reason)
		} else {
			fmt.Fprintf(&b, "\n  capacity  not found: %s\n", c.Reason)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// String is a duration in milliseconds, as the summary prints it.
func (m Millis) String() string { return strconv.FormatFloat(float64(m), 'f', 1, 64) + "ms" }

// counts lists a tally as "  name n  name n", largest first.
func counts[K comparable](m map[K]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b K) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %v %d", k, m[k])
	}
	return b.String()
}

// Progress is the one-line summary of a window, as the CLI prints it
// while a run goes on.
func (w Window) Progress() string {
	return fmt.Sprintf("%4ds  offered %6.0f req/s  goodput %6.0f req/s  refused %5d  errors %4d  admitted p50 %s p99 %s",
		w.Second+1, w.Offered, w.Goodput, w.Refused, w.Errors, w.AdmittedP50, w.AdmittedP99)
}
