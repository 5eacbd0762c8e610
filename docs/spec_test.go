// Package docs holds no code: its test keeps docs/SPEC.md, the repository's
// copy of the user contract, in step with the shared contract it was copied
// from and with the metrics the code registers.
package docs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the module root as seen from this package's directory, where
// go test runs.
const repoRoot = ".."

// sharedSpecPath is the shared contract: ../shared/SPEC.md beside the
// repository (where CI puts a copy of shared/), or $SLUICE_SHARED_SPEC.
func sharedSpecPath() string {
	if p := os.Getenv("SLUICE_SHARED_SPEC"); p != "" {
		return p
	}
	return filepath.Join(repoRoot, "..", "shared", "SPEC.md")
}

// issueRef is the issue-number note a shared heading may carry, such as
// " (issues 10–12)"; docs/SPEC.md drops it.
var issueRef = regexp.MustCompile(`\s*\(issues? [0-9][^)]*\)\s*$`)

var (
	fence      = regexp.MustCompile("(?ms)^```[^\n]*\n.*?^```\\s*$")
	backquoted = regexp.MustCompile("`([^`\n]+)`")
	metricName = regexp.MustCompile(`\bsluice_[a-z0-9_]+`)
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// headings returns the Markdown headings of doc, issue notes removed.
func headings(doc string) []string {
	var hs []string
	inFence := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if !inFence && strings.HasPrefix(line, "#") {
			hs = append(hs, issueRef.ReplaceAllString(strings.TrimSpace(line), ""))
		}
	}
	return hs
}

// TestSpecMatchesShared checks that docs/SPEC.md keeps every section
// heading, code block and backquoted name of the shared contract.
func TestSpecMatchesShared(t *testing.T) {
	path := sharedSpecPath()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing; CI must provide the shared contract beside the repository", path)
		}
		t.Skipf("%s not found (set SLUICE_SHARED_SPEC to check against another copy)", path)
	}
	shared, ours := readFile(t, path), readFile(t, "SPEC.md")

	have := map[string]bool{}
	for _, h := range headings(ours) {
		have[h] = true
	}
	for _, h := range headings(shared) {
		if !have[h] {
			t.Errorf("docs/SPEC.md lacks the heading %q", h)
		}
	}
	// Code blocks (the config example) are copied verbatim; the names in
	// the prose around them are checked one by one.
	for _, block := range fence.FindAllString(shared, -1) {
		if !strings.Contains(ours, block) {
			t.Errorf("docs/SPEC.md lacks the code block starting %.60q", block)
		}
	}
	for _, m := range backquoted.FindAllStringSubmatch(fence.ReplaceAllString(shared, ""), -1) {
		if !strings.Contains(ours, m[0]) {
			t.Errorf("docs/SPEC.md lacks %s", m[0])
		}
	}
}

// TestSpecMetricsRegistered checks that every metric docs/SPEC.md names
// is registered somewhere in the non-test Go sources, by its quoted name.
func TestSpecMetricsRegistered(t *testing.T) {
	var src strings.Builder
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			src.WriteString(readFile(t, path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code := src.String()

	seen := map[string]bool{}
	for _, section := range strings.Split(readFile(t, "SPEC.md"), "\n## ") {
		for _, name := range metricName.FindAllString(section, -1) {
			if seen[name] {
				continue
			}
			seen[name] = true
			if !strings.Contains(code, `"`+name+`"`) {
				t.Errorf("docs/SPEC.md names %s, but no Go source registers it", name)
			}
		}
	}
	if len(seen) < 15 {
		t.Errorf("found only %d metric names in docs/SPEC.md", len(seen))
	}
}
