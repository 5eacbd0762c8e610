package datadriven

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Args is a command line split into the command's name, its KEY=VALUE
// arguments and its positional ones (those without "="). The typed getters
// fail the test at the command's position on a missing or malformed value,
// so a harness reads its arguments in one line each.
type Args struct {
	Cmd        string
	Fields     []string // every argument after Cmd, as written
	Positional []string // the arguments without "=", in order
	kv         map[string]string
	t          testing.TB
	pos        string
}

// ParseArgs splits line at white space. pos is the command's FILE:LINE;
// a later KEY=VALUE overrides an earlier one with the same key.
func ParseArgs(t testing.TB, pos, line string) *Args {
	fields := strings.Fields(line)
	a := &Args{kv: map[string]string{}, t: t, pos: pos}
	if len(fields) == 0 {
		return a
	}
	a.Cmd, a.Fields = fields[0], fields[1:]
	for _, f := range a.Fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			a.kv[k] = v
		} else {
			a.Positional = append(a.Positional, f)
		}
	}
	return a
}

// Lookup returns key's value and whether the command gave it.
func (a *Args) Lookup(key string) (string, bool) {
	v, ok := a.kv[key]
	return v, ok
}

// Get returns key's value, "" if the command did not give it.
func (a *Args) Get(key string) string { return a.kv[key] }

// Int returns key's value as an int; the key is required.
func (a *Args) Int(key string) int {
	a.t.Helper()
	v := a.required(key, "N")
	n, err := strconv.Atoi(v)
	if err != nil {
		a.t.Fatalf("%s: %s=%q: want an integer", a.pos, key, v)
	}
	return n
}

// IntOr returns key's value as an int, or def if the command did not give it.
func (a *Args) IntOr(key string, def int) int {
	a.t.Helper()
	if _, ok := a.kv[key]; !ok {
		return def
	}
	return a.Int(key)
}

// Duration returns key's value as a time.Duration ("150ms"); the key is
// required.
func (a *Args) Duration(key string) time.Duration {
	a.t.Helper()
	v := a.required(key, "DUR")
	d, err := time.ParseDuration(v)
	if err != nil {
		a.t.Fatalf("%s: %s=%q: %v", a.pos, key, v, err)
	}
	return d
}

// required returns key's value, failing the test if the command did not
// give it; form names the kind of value wanted, for the message.
func (a *Args) required(key, form string) string {
	a.t.Helper()
	v, ok := a.kv[key]
	if !ok {
		a.t.Fatalf("%s: %s: missing %s=%s", a.pos, a.Cmd, key, form)
	}
	return v
}

// Only returns the command's one positional argument; any other number
// fails the test with usage, the command's synopsis.
func (a *Args) Only(usage string) string {
	a.t.Helper()
	if len(a.Positional) != 1 {
		a.t.Fatalf("%s: usage: %s", a.pos, usage)
	}
	return a.Positional[0]
}

// OnlyDuration returns the command's one positional argument as a
// time.Duration, as in "advance 150ms".
func (a *Args) OnlyDuration(usage string) time.Duration {
	a.t.Helper()
	v := a.Only(usage)
	d, err := time.ParseDuration(v)
	if err != nil {
		a.t.Fatalf("%s: %v", a.pos, err)
	}
	return d
}
