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
	"testing"

	"sluice/config"
	"sluice/internal/testutil"
)

// configMapVolume lays out a directory as the kubelet does for a
// ConfigMap volume, and updates it the same way (its atomic writer):
//
//	..2026_12_02_22_00_00.000000001/sluice.yaml   the payload
//	..data -> ..2026_12_02_22_00_00.000000001      swapped by rename
//	sluice.yaml -> ..data/sluice.yaml              made once
//
// An update writes a new timestamped directory, points a new symlink
// ..data_tmp at it, renames that over ..data (the one atomic step), and
// removes the old directory.
type configMapVolume struct {
	dir  string
	n    int    // updates so far, for distinct directory names
	live string // the timestamped directory ..data points at
}

func (v *configMapVolume) publish(t *testing.T, content string) {
	t.Helper()
	v.n++
	ts := fmt.Sprintf("..2026_12_02_22_00_%02d.%09d", v.n, v.n)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.dir, ts, "sluice.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if v.live == "" {
		if err := os.Symlink(filepath.Join("..data", "sluice.yaml"), filepath.Join(v.dir, "sluice.yaml")); err != nil {
			t.Fatal(err)
		}
	} else if err := os.RemoveAll(filepath.Join(v.dir, v.live)); err != nil {
		t.Fatal(err)
	}
	v.live = ts
}

// TestReloadOnConfigMapSwap runs a server on a config in a ConfigMap-style
// volume, with a real upstream on loopback, and updates the volume as the
// kubelet does: each good update is served, a broken one is refused with
// its FILE:LINE:COL logged while the running config serves on, and the
// watcher keeps seeing updates after the directories it was first shown
// are gone.
func TestReloadOnConfigMapSwap(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	t.Cleanup(up.Close)
	vol := &configMapVolume{dir: t.TempDir()}
	cfgWith := func(routes string) string { return fmt.Sprintf(reloadConfig, up.URL, routes) }
	vol.publish(t, cfgWith(""))

	path := filepath.Join(vol.dir, "sluice.yaml")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s, err := New(cfg, Options{Log: slog.New(slog.NewJSONHandler(logs, nil)), ConfigPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	f := &reloadFixture{s: s, path: path, logs: logs, up: up.URL}
	base := "http://" + s.ProxyAddr()
	get := func(p string) int { return status(t, base+p) }
	if get("/steady") != 200 || get("/added") != 404 {
		t.Fatal("the first config is not serving")
	}

	// A new route.
	vol.publish(t, cfgWith("  - {name: added, match: {path_prefix: /added}, upstream: u}\n"))
	testutil.WaitFor(t, "the route the first update adds", func() bool { return get("/added") == 200 })

	// A broken update: an upstream that does not exist, on line 7 col 62.
	broken := cfgWith("  - {name: added, match: {path_prefix: /added}, upstream: nope}\n")
	if !strings.Contains(strings.Split(broken, "\n")[6], "upstream: nope") {
		t.Fatal("the broken line moved; fix the expected position")
	}
	errorsBefore := f.reloads("error")
	vol.publish(t, broken)
	testutil.WaitFor(t, "the broken update to be refused", func() bool { return f.reloads("error") > errorsBefore })
	col := strings.Index(strings.Split(broken, "\n")[6], "nope") + 1
	if want := fmt.Sprintf("%s:7:%d: ", path, col); !strings.Contains(logs.String(), want) {
		t.Errorf("the log lacks %q:\n%s", want, logs.String())
	}
	if get("/steady") != 200 || get("/added") != 200 {
		t.Error("the running config stopped serving after a broken update")
	}

	// Two more updates, after the directories of the first ones were
	// removed: one replaces the added route, one adds to it.
	vol.publish(t, cfgWith("  - {name: third, match: {path_prefix: /third}, upstream: u}\n"))
	testutil.WaitFor(t, "the second good update", func() bool { return get("/third") == 200 && get("/added") == 404 })
	vol.publish(t, cfgWith("  - {name: third, match: {path_prefix: /third}, upstream: u}\n"+
		"  - {name: fourth, match: {path_prefix: /fourth}, upstream: u}\n"))
	testutil.WaitFor(t, "the third good update", func() bool { return get("/fourth") == 200 })
	if get("/steady") != 200 || get("/third") != 200 {
		t.Error("routes the updates kept stopped serving")
	}
	if got := s.Config().Routes; len(got) != 3 || got[2].Name != "fourth" {
		t.Errorf("Config() shows %d routes after the last update", len(got))
	}
	if ents, err := os.ReadDir(vol.dir); err != nil || len(ents) != 3 {
		t.Errorf("the volume holds %d entries, want ..data, sluice.yaml and one timestamped directory (%v)", len(ents), err)
	}
}
