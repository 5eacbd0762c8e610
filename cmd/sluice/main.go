// Command sluice is an HTTP reverse proxy with admission control: rate
// limits, bulkheads with bounded queues and circuit breakers per route.
//
//	sluice run [-config sluice.yaml]   run the proxy
//	sluice demo [-load]                run on the embedded demo config
//	sluice validate -config FILE       check a config and exit
//	sluice loadtest -url URL ...       send an open-loop load, report
//	sluice version                     print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"sluice/config"
	"sluice/demo"
	"sluice/server"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `sluice: an HTTP reverse proxy with admission control

usage:
  sluice run [-config sluice.yaml]   run the proxy (SIGTERM/SIGINT drain)
  sluice demo [-listen ADDR] [-admin ADDR] [-load [-duration 90s]]
                                     run on the embedded demo config with
                                     built-in upstreams; no files needed.
                                     The dashboard is on the admin address;
                                     -load ramps a built-in load past the
                                     slow upstream's capacity and back
  sluice validate -config FILE       check a config: exit 0, or print each
                                     error as FILE:LINE:COL: message, exit 1
                                     (exit 2 on a usage error)
  sluice loadtest -url URL (-rate N | -ramp A:B) -duration D
                  [-find-capacity [-max-p99 250ms] [-max-refused 5]]
                  [-timeout 10s] [-json] [-chart FILE]
                                     send an open-loop GET load (at most
                                     100000 req/s, 10m) and report goodput,
                                     latency of admitted and refused
                                     requests, refusals by status and
                                     Sluice-Reject reason, Retry-After,
                                     errors; -find-capacity ramps until
                                     p99 or the refused share breaks its
                                     bound two 1 s windows in a row and
                                     prints the last rate within both
  sluice version                     print the version
`

// run is main without the process: it returns the exit code, so tests can
// drive every verb in-process.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "loadtest":
		return cmdLoadtest(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "sluice %s\n", versionString())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func versionString() string {
	v := version
	bi, ok := debug.ReadBuildInfo()
	if v == "" && ok {
		v = bi.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	if ok {
		v += " " + bi.GoVersion
	}
	return v
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

type logFlags struct{ level, format string }

func (l *logFlags) register(fs *flag.FlagSet, format string) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", format, "log format: json or text")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch l.format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	}
	return nil, fmt.Errorf("-log-format: want json or text, got %q", l.format)
}

// printConfigError prints a config error: each position on its own line.
func printConfigError(w io.Writer, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintf(w, "sluice: %v\n", err)
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	path := fs.String("config", "", "config file to check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" && fs.NArg() == 1 {
		*path = fs.Arg(0)
	}
	if *path == "" {
		fmt.Fprintln(stderr, "sluice validate: -config FILE is required")
		return 2
	}
	if _, err := config.Load(*path); err != nil {
		printConfigError(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	path := fs.String("config", "sluice.yaml", "config file")
	var lf logFlags
	lf.register(fs, "json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sluice run: %v\n", err)
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	return serve(cfg, server.Options{Log: log, Version: versionString(), ConfigPath: *path}, stderr, nil)
}

// serve runs cfg until SIGTERM or SIGINT, then drains; SIGHUP reloads the
// config file (when there is one). started, if set, is called once the
// listeners are bound.
func serve(cfg *config.Config, o server.Options, stderr io.Writer, started func(*server.Server)) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := server.New(cfg, o)
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	// A signal during startup (an ACME order, say) ends it.
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	if started != nil {
		started(srv)
	}
	if o.ConfigPath != "" {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-hup:
					_ = srv.Reload() // logged and counted inside
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if err := srv.Wait(ctx); err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	return 0
}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "proxy listen address")
	adminAddr := fs.String("admin", "127.0.0.1:9901", "admin listen address (the dashboard)")
	load := fs.Bool("load", false, "send a built-in open-loop load: /slow ramps past its capacity and back, the flaky breaker trips")
	duration := fs.Duration("duration", 90*time.Second, "how long -load sends for; then it stops by itself")
	var lf logFlags
	lf.register(fs, "json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *load && *duration <= 0 {
		fmt.Fprintln(stderr, "sluice demo: -duration must be positive")
		return 2
	}
	if *load && !loopbackListen(*listen) {
		// The load is for the demo's own proxy on this machine, never a
		// tool to send traffic across a network.
		fmt.Fprintf(stderr, "sluice demo: -load sends only to a proxy on loopback; -listen %s is not\n", *listen)
		return 2
	}
	log, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sluice demo: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	backends, err := demo.Start(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "sluice demo: %v\n", err)
		return 1
	}
	defer backends.Close()
	cfg, err := config.Parse("demo.yaml (embedded)", backends.Config())
	if err != nil {
		printConfigError(stderr, err) // a bug: the embedded config is tested
		return 1
	}
	cfg.Server.Listen, cfg.Admin.Listen = *listen, *adminAddr

	// The load stops at the first SIGTERM or SIGINT, while serve drains.
	loadCtx, stopLoad := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stopLoad()
	var loading sync.WaitGroup
	code := serve(cfg, server.Options{Log: log, Version: versionString()}, stderr, func(s *server.Server) {
		p, a := "http://"+dialable(s.ProxyAddr()), "http://"+dialable(s.AdminAddr())
		fmt.Fprintf(stdout, `sluice demo is running (Ctrl-C to stop)

  dashboard  %[2]s/
  proxy      %[1]s

  try:
    curl -i %[1]s/api/hello        healthy upstream, rate limited
    curl -N %[1]s/api/events       server-sent events, streamed
    curl -i %[1]s/slow/work        8 at a time, 100 ms each
    curl -i %[1]s/flaky/thing      503 for 6 s of every 20 s
    curl -s %[2]s/api/v1/routes    the JSON monitoring API

`, p, a)
		if !*load {
			fmt.Fprintf(stdout, "  load       none: add -load to push /slow past its capacity and trip flaky's breaker\n\n")
			return
		}
		l := demo.ShowcaseLoad(p, *duration)
		fmt.Fprintf(stdout, "  load       %s, open loop: %s (its upstream serves %g);\n", *duration, describe(l.Streams[0]), demo.SlowCapacity())
		for _, st := range l.Streams[1:] {
			fmt.Fprintf(stdout, "             %s;\n", describe(st))
		}
		fmt.Fprintf(stdout, "             on the dashboard, slow turns amber then red and refuses with reasons,\n"+
			"             and flaky's breaker opens when its upstream fails, then heals\n\n")
		loading.Go(func() {
			res, err := l.Run(loadCtx)
			switch {
			case errors.Is(err, context.Canceled):
				fmt.Fprintf(stdout, "load stopped early: %s\n", res)
			case err != nil:
				fmt.Fprintf(stderr, "sluice demo: load: %v\n", err)
			default:
				fmt.Fprintf(stdout, "load finished after %s: %s; the demo keeps running\n", *duration, res)
			}
		})
	})
	stopLoad()
	loading.Wait()
	return code
}

func describe(s demo.Stream) string { return s.Path + " " + s.Rate.String() }

// loopbackListen reports whether a proxy listening on addr can be reached
// on loopback: a loopback host, or all interfaces.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// dialable turns a bound address into one to print and dial: a listener
// on all interfaces is reached on 127.0.0.1.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
