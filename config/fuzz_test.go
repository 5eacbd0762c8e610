package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// errorLine is the shape of every line Parse's errors print.
var errorLine = regexp.MustCompile(`^[^:]+:\d+:\d+: .+`)

// FuzzParse checks that no input makes Parse panic, that every failure is
// an Errors value printing one FILE:LINE:COL: message per line, and that a
// config Parse accepts still validates once normalised.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"*.yaml", filepath.Join("bad", "*.yaml")} {
		paths, err := filepath.Glob(filepath.Join("testdata", pattern))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("routes: &a [*a]\n"))
	f.Add([]byte("server: {<<: {listen: \":1\"}}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			if errs := cfg.validate(systemMemory()); len(errs) > 0 {
				t.Fatalf("an accepted config fails validation a second time:\n%v", errs)
			}
			return
		}
		if cfg != nil {
			t.Fatal("Parse returned a config with its error")
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %T %q is not a non-empty Errors", err, err)
		}
		for line := range strings.SplitSeq(err.Error(), "\n") {
			if !errorLine.MatchString(line) {
				t.Fatalf("error line %q is not FILE:LINE:COL: message", line)
			}
		}
	})
}
