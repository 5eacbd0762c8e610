package config

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/bad")

// TestGoldenBadConfigs checks the exact output for each bad config in
// testdata/bad: NAME.golden holds what `sluice validate` prints for
// NAME.yaml, with the file named as this test opens it, testdata/bad/NAME.yaml.
// Run `go test ./config -run Golden -update` to rewrite the golden files.
func TestGoldenBadConfigs(t *testing.T) {
	dir := filepath.Join("testdata", "bad")
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".yaml"))
	}
	// The cases the config contract promises an error for.
	for _, want := range []string{
		"unknown_key", "wrong_type", "bad_duration", "unknown_upstream",
		"duplicate_route", "duplicate_upstream", "no_match", "bad_target_url",
		"negative_size", "zero_size", "empty", "syntax_error", "multiple_errors",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("missing %s.yaml in %s", want, dir)
		}
	}

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse("testdata/bad/"+name+".yaml", data)
			if err == nil {
				t.Fatalf("%s.yaml parsed without error: %+v", name, cfg)
			}
			got := err.Error() + "\n"
			golden := filepath.Join(dir, name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -run Golden -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output for %s.yaml:\n%s\nwant (%s):\n%s", name, got, golden, want)
			}
		})
	}
}
