// Package datadriven runs scenario files in the manner of CockroachDB's
// testdata/work_queue: each file is a script of commands, each followed by
// the output the code is expected to print. Only tests import it.
//
// A file is a sequence of blocks and verbatim lines:
//
//	# a comment, kept as written
//	COMMAND ARG ... KEY=VALUE ...
//	----
//	EXPECTED LINE
//	EXPECTED LINE
//
// A block is a command line, a "----" line and the expected output, ended
// by a blank line or the end of the file. Between blocks, blank lines and
// lines starting with # are kept verbatim. Each package brings a harness
// that runs one command and returns the lines it prints; this package
// compares them with the expectation, and with -update rewrites the file
// from what the code printed, keeping the comments and blank lines.
package datadriven

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// update is registered in every test binary that imports this package,
// so `go test ./PKG -run TestScenarios -update` works for each; such a
// package must not define an -update flag of its own (the flag package
// panics on the second definition).
var update = flag.Bool("update", false, "rewrite the expected output in the scenario files")

// Runner is a package's scenario harness: Run executes one command line
// and returns what it prints. pos is the command's FILE:LINE, for
// messages; a bad command fails the test there.
type Runner interface {
	Run(pos, cmd string) []string
}

// RunFiles runs every file matching glob as a subtest named after the
// file (without its extension), each with a fresh harness from
// newHarness, given that subtest's t. No matching file fails the test:
// a mistyped glob must not pass silently.
func RunFiles(t *testing.T, glob string, newHarness func(t *testing.T) Runner) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no scenario files match %s", glob)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, filepath.Ext(name)), func(t *testing.T) {
			RunFile(t, file, newHarness(t).Run)
		})
	}
}

// RunFile runs the commands of the file at path through run, in order,
// and reports each whose output differs from the expectation; with
// -update it rewrites the file from the output instead.
func RunFile(t testing.TB, path string, run func(pos, cmd string) []string) {
	t.Helper()
	runFile(t, path, run, *update)
}

func runFile(t testing.TB, path string, run func(pos, cmd string) []string, rewrite bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	items, err := parse(path, string(data))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, it := range items {
		if !it.isCmd {
			out.WriteString(it.verbatim + "\n")
			continue
		}
		got := run(fmt.Sprintf("%s:%d", path, it.line), it.cmd)
		if !rewrite && !slices.Equal(got, it.want) {
			t.Errorf("%s:%d: %s\n got:\n\t%s\nwant:\n\t%s", path, it.line, it.cmd,
				strings.Join(got, "\n\t"), strings.Join(it.want, "\n\t"))
		}
		out.WriteString(it.cmd + "\n----\n")
		for _, l := range got {
			out.WriteString(l + "\n")
		}
	}
	if rewrite {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// item is a verbatim line (comment or blank) or a command block.
type item struct {
	verbatim string
	cmd      string
	want     []string
	line     int // of the command, from 1
	isCmd    bool
}

// parse splits a scenario file into items. Trailing newlines are dropped,
// so a rewritten file ends in exactly one.
func parse(path, data string) ([]item, error) {
	lines := strings.Split(strings.TrimRight(data, "\n"), "\n")
	var items []item
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			items = append(items, item{verbatim: l})
			continue
		}
		it := item{cmd: l, line: i + 1, isCmd: true}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			return nil, fmt.Errorf("%s:%d: command %q not followed by ----", path, i+1, l)
		}
		i += 2
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			it.want = append(it.want, lines[i])
		}
		i-- // the blank line, if any, is kept verbatim
		items = append(items, it)
	}
	return items, nil
}
