package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a 1-based line and column in a config file.
type Pos struct{ Line, Col int }

// positions maps a key path to where its value was written. Paths join
// mapping keys with "." and index sequences with [i]: "server.listen",
// "routes[0].match.path_prefix", "upstreams[1].targets[0]".
//
// A scalar is recorded at its value; a mapping or sequence written under a
// key ("routes[0].rate_limit") is recorded at the key, which is where a reader
// looks for it; a sequence element ("routes[0]") is recorded at the element.
// Keys whose value is null are not recorded: null means "use the default",
// exactly as if the key were absent.
type positions map[string]Pos

// nearest returns the position of path, or of its nearest recorded ancestor
// ("routes[2].match.host" → "routes[2].match" → "routes[2]" → "routes"), or
// 1:1 when nothing on the way was written. Validation uses it so a problem
// with a defaulted key is reported where its enclosing block was written.
func (p positions) nearest(path string) Pos {
	for path != "" {
		if pos, ok := p[path]; ok {
			return pos
		}
		path = parentPath(path)
	}
	return Pos{Line: 1, Col: 1}
}

// parentPath strips the last ".key" or "[i]" from path; the parent of a
// top-level key is "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// Pos reports where the value at path (as in "routes[0].upstream") was
// written in c.File. ok is false when the key was not written, for example
// because it kept its default.
func (c *Config) Pos(path string) (pos Pos, ok bool) {
	pos, ok = c.pos[path]
	return pos, ok
}

// Error is one problem found in a config file, at a 1-based line and column.
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

// Error formats e as FILE:LINE:COL: message, the form editors and CI
// annotations recognise.
func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found in one config file. Load and Parse return
// an Errors value, never a lone *Error, so callers handle one shape.
type Errors []*Error

// Error returns one FILE:LINE:COL: message per line, sorted by position.
func (es Errors) Error() string {
	sorted := slices.Clone(es)
	sorted.sort()
	lines := make([]string, len(sorted))
	for i, e := range sorted {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sort orders es by line, then column. It is stable, so problems found at
// the same spot keep the order they were found in.
func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}
