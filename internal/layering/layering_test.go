// Package layering holds the test that keeps sluice's import graph layered:
// mechanisms at the bottom, the HTTP glue above them, the assembly above
// that, programs on top. A package may import only packages of a lower
// layer, so a mechanism never learns about HTTP, proxy's internals never
// reach back into proxy, and nothing but a program imports the server.
//
// Anyone can check it by hand with
//
//	go list -deps -f '{{.ImportPath}}' ./proxy
//
// which must list, of sluice's own packages, only proxy itself and
// packages of lower layers.
package layering

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// layers lists every package of the module, lowest layer first. A package
// may import packages of lower layers only; packages of one layer never
// import each other. A new package must be given its place here.
var layers = [][]string{
	// Leaves: time, configuration, the adaptive-limit algorithms, and
	// the helpers only tests import.
	{"clock", "config", "adaptive", "internal/httpsyntax", "internal/testutil", "internal/datadriven", "internal/otlptest"},
	// Mechanisms: each knows its own model and the clock, no HTTP.
	{"bulkhead", "breaker", "monitor", "overload", "redisstore", "telemetry"},
	// Admission composes the mechanisms into one decision per request.
	{"admission"},
	// The proxy's parts: HTTP/1 client, route matching, fault sampling.
	{"proxy/internal/h1", "proxy/internal/routing", "proxy/internal/fault"},
	{"proxy/internal/direct"},
	// The HTTP glue: match, admit, forward, observe, refuse.
	{"proxy"},
	// What the server assembles around the proxy.
	{"admin", "certs", "framing", "server/internal/h1serve"},
	{"server"},
	// The demo's synthetic upstreams and load, which the CLI serves, and
	// the load tester behind `sluice loadtest`.
	{"demo", "loadtest"},
	// Programs and whole-system tests.
	{"cmd/sluice", "bench", "soak", "e2e", "docs", "deploy", "internal/layering"},
}

// testOnly packages are imported by tests, never by the code they test.
var testOnly = []string{"internal/testutil", "internal/datadriven", "internal/otlptest"}

type pkg struct {
	ImportPath string
	Imports    []string
	Name       string
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// listPackages runs go list over the module: every package with its
// non-test imports.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Name", "./...")
	cmd.Dir = moduleRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

const module = "sluice"

func rel(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	return strings.CutPrefix(path, module+"/")
}

func TestImportsPointDown(t *testing.T) {
	layer := map[string]int{}
	for i, l := range layers {
		for _, p := range l {
			layer[p] = i
		}
	}
	pkgs := listPackages(t)
	seen := map[string]bool{}
	for _, p := range pkgs {
		name, _ := rel(p.ImportPath)
		seen[name] = true
		at, ok := layer[name]
		if !ok {
			t.Errorf("package %s has no place in the layers of internal/layering: add it", name)
			continue
		}
		for _, imp := range p.Imports {
			dep, ours := rel(imp)
			if !ours {
				continue
			}
			if slices.Contains(testOnly, dep) {
				t.Errorf("%s imports %s, which only tests may import", name, dep)
			}
			if dl, ok := layer[dep]; ok && dl >= at {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must point to a lower layer", name, at, dep, dl)
			}
		}
	}
	var stale []string
	for name := range layer {
		if !seen[name] {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	for _, name := range stale {
		t.Errorf("the layers name %s, which is no package of the module", name)
	}
}

// TestInternalStaysInside: proxy's internal packages serve proxy alone
// (the go tool enforces that much for internal/), and none of them knows
// about admission or routes' state: they take plain values. Besides each
// other they may use the clock and the HTTP/1.1 field syntax they share
// with the server's loop (internal/httpsyntax).
func TestInternalStaysInside(t *testing.T) {
	for _, p := range listPackages(t) {
		name, _ := rel(p.ImportPath)
		if !strings.HasPrefix(name, "proxy/internal/") {
			continue
		}
		for _, imp := range p.Imports {
			dep, ours := rel(imp)
			if ours && !strings.HasPrefix(dep, "proxy/internal/") && dep != "clock" && dep != "internal/httpsyntax" {
				t.Errorf("%s imports %s: proxy's internal packages depend only on each other, the clock and internal/httpsyntax", name, dep)
			}
		}
	}
}
