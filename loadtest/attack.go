// Package loadtest sends an open-loop HTTP load at a URL and reports how
// the service behaved: goodput, the latency of admitted and of refused
// requests apart, refusals by status and by Sluice-Reject reason, whether
// each refusal carried Retry-After, and transport errors apart. It can ramp
// the rate until a latency or refusal bound breaks, to find a capacity.
//
// The requests are sent by vegeta (github.com/tsenart/vegeta/v12), whose
// pacers are open loop: a request is sent when the schedule says, whether
// or not earlier ones have been answered, and the attacker starts another
// worker instead of waiting when all are busy. A closed-loop generator
// would slow down with the service and hide the overload it is meant to
// show.
//
// Results are gathered into one-second windows by the time each request
// finished, so a window is complete when the clock leaves it; the offered
// load of a window is what the schedule sends in it.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Bounds on what one run may send: a load test is a bounded experiment.
const (
	MaxDuration = 10 * time.Minute
	MaxRate     = 100000
)

// Options describe one run. The zero values of Timeout, MaxP99 and
// MaxRefused take the defaults named on each.
type Options struct {
	URL      string        // http or https
	From, To int           // req/s at the start and at the end; equal for a constant rate
	Duration time.Duration // how long to send, at most MaxDuration

	Timeout time.Duration // per request; 0 means DefaultTimeout

	// FindCapacity stops the run once two windows in a row (not counting
	// windows with nothing finished) have an admitted p99 over MaxP99 or a
	// share of refused and failed requests over MaxRefused, and reports
	// the last window within both bounds before the first of them. A
	// single window out of the bounds is a stall of the machine, not the
	// knee; if the run ends on one, that window is the breach.
	FindCapacity bool
	MaxP99       time.Duration // 0 means DefaultMaxP99
	MaxRefused   float64       // a fraction; 0 means DefaultMaxRefused

	// Progress, if set, is called once per second with the window that
	// just closed, from the goroutine that called Run.
	Progress func(Window)
}

// Defaults for the zero values of Options.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultMaxP99     = 250 * time.Millisecond
	DefaultMaxRefused = 0.05
)

// Validate reports the first option out of bounds.
func (o *Options) Validate() error {
	u, err := url.Parse(o.URL)
	switch {
	case o.URL == "":
		return errors.New("a URL is required")
	case err != nil:
		return fmt.Errorf("url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("url %q: want http:// or https:// and a host", o.URL)
	case o.Duration <= 0 || o.Duration > MaxDuration:
		return fmt.Errorf("duration %s: want more than 0 and at most %s", o.Duration, MaxDuration)
	case o.From < 1 || o.From > MaxRate || o.To < 1 || o.To > MaxRate:
		return fmt.Errorf("rate %d:%d: want 1 to %d req/s", o.From, o.To, MaxRate)
	case o.Timeout < 0 || o.MaxP99 < 0:
		return errors.New("timeout and max p99 must not be negative")
	case o.MaxRefused < 0 || o.MaxRefused >= 1:
		return fmt.Errorf("max refused %g: want a fraction from 0 up to 1", o.MaxRefused)
	}
	return nil
}

func (o *Options) defaults() {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxP99 == 0 {
		o.MaxP99 = DefaultMaxP99
	}
	if o.MaxRefused == 0 {
		o.MaxRefused = DefaultMaxRefused
	}
}

// pacer is the run's schedule: a line from From to To req/s over Duration.
func (o *Options) pacer() vegeta.LinearPacer {
	return vegeta.LinearPacer{
		StartAt: vegeta.Rate{Freq: o.From, Per: time.Second},
		Slope:   float64(o.To-o.From) / o.Duration.Seconds(),
	}
}

// due is when the schedule sends its n-th request (from 0): the t at
// which From·t + slope·t²/2 = n.
func due(p vegeta.LinearPacer, n uint64) time.Duration {
	b, a := float64(p.StartAt.Freq), p.Slope
	var t float64
	if math.Abs(a) < 1e-9 {
		t = float64(n) / b
	} else {
		t = (-b + math.Sqrt(b*b+2*a*float64(n))) / a
	}
	return time.Duration(t * float64(time.Second))
}

// grace is how long after a window ends Run waits for the results that
// finished in it but are still on their way from vegeta's workers.
const grace = 50 * time.Millisecond

// Run sends the load and returns its report. Cancelling ctx stops the
// sending; the requests in flight are still awaited (each is bounded by
// Timeout) and reported.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.defaults()
	pacer := o.pacer()
	// vegeta's own transport, but one Run can close when it is done, so
	// that no idle connection outlives the run.
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: vegeta.DefaultConnections,
	}
	defer tr.CloseIdleConnections()
	atk := vegeta.NewAttacker(
		vegeta.Client(&http.Client{Transport: tr}),
		vegeta.Timeout(o.Timeout),
		vegeta.Redirects(vegeta.NoFollow), // a redirect is the service's answer
		vegeta.MaxBody(0),                 // bodies are read and dropped
	)
	target := vegeta.NewStaticTargeter(vegeta.Target{Method: "GET", URL: o.URL})

	c := newCollector(o, pacer)
	start := time.Now()
	results := atk.Attack(target, pacer, o.Duration, "sluice-loadtest")
	tick := time.NewTimer(time.Until(start.Add(time.Second + grace)))
	defer tick.Stop()
	closed := 0 // windows handed to Progress and to the capacity search
	done := ctx.Done()
	for results != nil {
		select {
		case r, ok := <-results:
			if !ok {
				results = nil
				continue
			}
			c.add(start, r)
		case <-tick.C:
			w := c.window(closed)
			closed++
			tick.Reset(time.Until(start.Add(time.Duration(closed+1)*time.Second + grace)))
			if o.Progress != nil {
				o.Progress(w)
			}
			if o.FindCapacity && c.judge(w) && atk.Stop() {
				c.stopped = time.Since(start)
			}
		case <-done:
			done = nil
			if atk.Stop() {
				c.stopped = time.Since(start)
			}
		}
	}
	return c.report(time.Since(start)), ctx.Err()
}

// errorKind sorts a transport error: a timeout, or any other failure to
// get an answer (refused, reset, closed connections), called connection.
func errorKind(msg string) string {
	if strings.Contains(msg, "Timeout") || strings.Contains(msg, "timeout") || strings.Contains(msg, "deadline exceeded") {
		return "timeout"
	}
	return "connection"
}
