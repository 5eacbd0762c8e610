package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sluice/loadtest"
)

func cmdLoadtest(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("loadtest", stderr)
	target := fs.String("url", "", "the URL to send GET requests to (required)")
	rate := fs.Int("rate", 0, "constant rate, req/s (or -ramp)")
	ramp := fs.String("ramp", "", "A:B ramps linearly from A to B req/s over -duration")
	duration := fs.Duration("duration", 0, fmt.Sprintf("how long to send (required, at most %s)", loadtest.MaxDuration))
	timeout := fs.Duration("timeout", loadtest.DefaultTimeout, "per-request timeout")
	find := fs.Bool("find-capacity", false, "ramp until a bound breaks in two 1 s windows in a row and print the last rate within the bounds\n(with -rate N, ramps from N/10 to 10×N)")
	maxP99 := fs.Duration("max-p99", loadtest.DefaultMaxP99, "-find-capacity: bound on the admitted p99 of a 1 s window")
	maxRefused := fs.Float64("max-refused", 100*loadtest.DefaultMaxRefused, "-find-capacity: bound on a 1 s window's refused and failed share, percent")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the summary")
	chart := fs.String("chart", "", "write an SVG chart of latency and goodput against offered load to FILE")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sluice loadtest: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	o := loadtest.Options{URL: *target, Duration: *duration, Timeout: *timeout, FindCapacity: *find,
		MaxP99: *maxP99, MaxRefused: *maxRefused / 100}
	switch {
	case *target == "":
		return usageErr("-url is required")
	case *duration == 0:
		return usageErr("-duration is required")
	case (*rate != 0) == (*ramp != ""):
		return usageErr("give one of -rate N or -ramp A:B")
	case *ramp != "":
		a, b, ok := strings.Cut(*ramp, ":")
		var errA, errB error
		o.From, errA = strconv.Atoi(a)
		o.To, errB = strconv.Atoi(b)
		if !ok || errA != nil || errB != nil {
			return usageErr("-ramp %q: want A:B, two whole rates in req/s", *ramp)
		}
	case *find:
		o.From, o.To = max(1, *rate/10), min(loadtest.MaxRate, 10**rate)
	default:
		o.From, o.To = *rate, *rate
	}
	if *timeout <= 0 {
		return usageErr("-timeout must be positive")
	}
	if *maxRefused <= 0 || *maxRefused >= 100 || *maxP99 <= 0 {
		return usageErr("-max-refused wants a percent above 0 and below 100, -max-p99 a positive duration")
	}
	if err := o.Validate(); err != nil {
		return usageErr("%v", err)
	}

	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		o.Progress = func(w loadtest.Window) { fmt.Fprintf(stderr, "\r%s ", w.Progress()) }
		defer fmt.Fprintln(stderr)
	} else {
		o.Progress = func(w loadtest.Window) { fmt.Fprintln(stderr, w.Progress()) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	rep, err := loadtest.Run(ctx, o)
	if rep == nil {
		fmt.Fprintf(stderr, "sluice loadtest: %v\n", err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "sluice loadtest: stopped early after %s\n", time.Duration(rep.Duration*float64(time.Second)).Round(time.Millisecond))
	}
	if *chart != "" {
		if err := writeChart(*chart, rep); err != nil {
			fmt.Fprintf(stderr, "sluice loadtest: %v\n", err)
			return 1
		}
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sluice loadtest: %v\n", err)
		return 1
	}
	return 0
}

func writeChart(path string, rep *loadtest.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WriteSVG(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// isTerminal reports whether f is a character device: a terminal, where
// the progress line may overwrite itself.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
