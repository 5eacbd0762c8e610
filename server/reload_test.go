package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"sluice/config"
	"sluice/internal/testutil"
)

type reloadFixture struct {
	s    *Server
	path string
	logs *syncBuffer
	up   string
}

// reloadConfig is the reload tests' file. The saturation detector is off
// in it for the reason detectorOff gives: a config read from a file is
// read again at each reload, so it says so itself.
const reloadConfig = `
server: {listen: "127.0.0.1:0", access_log: false, sched_latency_limit: 0}
admin: {listen: "127.0.0.1:0"}
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - {name: steady, match: {path_prefix: /steady}, upstream: u}
%s`

// startReloadable runs a server from a real file, watched for changes.
func startReloadable(t *testing.T) *reloadFixture {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	t.Cleanup(up.Close)
	f := &reloadFixture{path: filepath.Join(t.TempDir(), "sluice.yaml"), logs: &syncBuffer{}, up: up.URL}
	f.write(t, "")
	cfg, err := config.Load(f.path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Log: slog.New(slog.NewJSONHandler(f.logs, nil)), ConfigPath: f.path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	f.s = s
	return f
}

// write replaces the file as editors do: write a temporary file, rename it
// over the config.
func (f *reloadFixture) write(t *testing.T, extraRoutes string) {
	t.Helper()
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(reloadConfig, f.up, extraRoutes)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		t.Fatal(err)
	}
}

func (f *reloadFixture) reloads(result string) float64 {
	return promtestutil.ToFloat64(f.s.reloads.WithLabelValues(result))
}

func TestReloadOnFileChange(t *testing.T) {
	f := startReloadable(t)
	base := "http://" + f.s.ProxyAddr()
	if got := status(t, base+"/added"); got != 404 {
		t.Fatalf("before: %d", got)
	}
	f.write(t, "  - {name: added, match: {path_prefix: /added}, upstream: u}\n")
	testutil.WaitFor(t, "the watcher to reload the new route", func() bool { return status(t, base+"/added") == 200 })
	if f.reloads("success") < 1 {
		t.Error("reload not counted")
	}
	if f.s.Config().Routes[1].Name != "added" {
		t.Error("Config() does not show the reloaded config")
	}
}

// TestInvalidReloadKeepsServing: a broken file is refused with its
// position logged and counted, and the running config serves on.
func TestInvalidReloadKeepsServing(t *testing.T) {
	f := startReloadable(t)
	base := "http://" + f.s.ProxyAddr()
	if err := os.WriteFile(f.path, []byte("routes: [{name: broken, match: {path: /x}, upstream: nope}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := f.s.Reload()
	if err == nil {
		t.Fatal("an invalid config reloaded")
	}
	if !strings.Contains(f.logs.String(), f.path+":1:") {
		t.Errorf("log lacks the FILE:LINE:COL of the error:\n%s", f.logs.String())
	}
	if f.reloads("error") < 1 {
		t.Error("failed reload not counted")
	}
	if got := status(t, base+"/steady"); got != 200 {
		t.Errorf("old config stopped serving after a bad reload: %d", got)
	}
	// Fixed again: the next reload applies.
	f.write(t, "  - {name: fixed, match: {path_prefix: /fixed}, upstream: u}\n")
	testutil.WaitFor(t, "the fixed config", func() bool { return status(t, base+"/fixed") == 200 })
}

func TestReloadKeepsRestartOnlyBlocks(t *testing.T) {
	f := startReloadable(t)
	if err := os.WriteFile(f.path, []byte(fmt.Sprintf(strings.Replace(reloadConfig, `listen: "127.0.0.1:0", access_log`, `listen: "127.0.0.1:1", access_log`, 1), f.up, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Reload(); err != nil {
		t.Fatal(err)
	}
	if f.s.Config().Server.Listen != "127.0.0.1:0" {
		t.Error("a listener change was applied without a restart")
	}
	if !strings.Contains(f.logs.String(), `"key":"server"`) {
		t.Errorf("no warning that server needs a restart:\n%s", f.logs.String())
	}
}

// TestReloadDuringLoad reloads repeatedly while clients hammer a route the
// reloads leave alone: every request is answered, with 200, and the route's
// counters are never reset.
func TestReloadDuringLoad(t *testing.T) {
	f := startReloadable(t)
	base := "http://" + f.s.ProxyAddr()
	var wg sync.WaitGroup
	var sent, ok atomic.Int64
	var bad sync.Map
	stop := make(chan struct{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for c := 0; c < 8; c++ {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				resp, err := client.Get(base + "/steady")
				if err != nil {
					bad.Store(err.Error(), true)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					bad.Store(resp.Status, true)
				}
			}
		})
	}
	began := time.Now()
	for i := 0; i < 20; i++ {
		extra := fmt.Sprintf("  - {name: churn, match: {path_prefix: /churn}, upstream: u, rate_limit: {rps: %d}}\n", i+1)
		f.write(t, extra)
		if err := f.s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("20 reloads took %v", time.Since(began))
	close(stop)
	wg.Wait()
	// A connection dialled but never used counts as idle for Shutdown only
	// after 5 s; close the client's so the drain at cleanup is prompt.
	client.CloseIdleConnections()
	bad.Range(func(k, _ any) bool { t.Errorf("during reloads: %v", k); return true })
	if ok.Load() != sent.Load() || sent.Load() == 0 {
		t.Errorf("%d of %d requests succeeded", ok.Load(), sent.Load())
	}
	steady := f.s.Proxy().Routes()[0].Admission()
	if got := int64(steady.Admitted()); got != sent.Load() {
		t.Errorf("steady route counted %d admitted of %d sent: its counters were reset by a reload", got, sent.Load())
	}
}
