// Command sluice is an HTTP reverse proxy with admission control: rate
// limits, bulkheads with bounded queues and circuit breakers per route.
//
//	sluice run [-config sluice.yaml]   run the proxy
//	sluice demo                        run on the embedded demo config
//	sluice validate -config FILE       check a config and exit
//	sluice version                     print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

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
  sluice demo [-listen ADDR] [-admin ADDR]
                                     run on the embedded demo config with
                                     built-in upstreams; no files needed
  sluice validate -config FILE       check a config: exit 0, or print each
                                     error as FILE:LINE:COL: message, exit 1
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
	return serve(cfg, log, stderr, nil)
}

// serve runs cfg until SIGTERM or SIGINT, then drains. started, if set, is
// called once the listeners are bound.
func serve(cfg *config.Config, log *slog.Logger, stderr io.Writer, started func(*server.Server)) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := server.New(cfg, server.Options{Log: log, Version: versionString()})
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	if err := srv.Start(context.Background()); err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	if started != nil {
		started(srv)
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
	adminAddr := fs.String("admin", "127.0.0.1:9901", "admin listen address")
	var lf logFlags
	lf.register(fs, "text")
	if err := fs.Parse(args); err != nil {
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
	return serve(cfg, log, stderr, func(s *server.Server) {
		p, a := "http://"+s.ProxyAddr(), "http://"+s.AdminAddr()
		fmt.Fprintf(stdout, `sluice demo is running (Ctrl-C to stop)

  proxy   %[1]s
          curl -i %[1]s/api/hello          healthy upstream, rate limited
          curl -N %[1]s/api/events         server-sent events, streamed
          curl -i %[1]s/slow/work          8 at a time, 100 ms each
          curl -i %[1]s/flaky/thing        503 for 6 s of every 20 s
  admin   %[2]s/readyz

`, p, a)
	})
}
