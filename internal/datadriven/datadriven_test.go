package datadriven

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestRunFiles runs testdata/*.txt through a harness that prints how
// ParseArgs splits each command.
func TestRunFiles(t *testing.T) {
	RunFiles(t, filepath.Join("testdata", "*.txt"), func(t *testing.T) Runner {
		return argsHarness{t}
	})
}

type argsHarness struct{ t *testing.T }

func (h argsHarness) Run(pos, cmd string) []string {
	a := ParseArgs(h.t, pos, cmd)
	switch a.Cmd {
	case "args":
		out := []string{fmt.Sprintf("cmd=%s fields=%v positional=%v", a.Cmd, a.Fields, a.Positional)}
		var kv []string
		if v, ok := a.Lookup("k"); ok {
			kv = append(kv, "k="+v)
		}
		if _, ok := a.Lookup("n"); ok {
			kv = append(kv, fmt.Sprintf("n=%d", a.Int("n")))
		}
		if a.Get("d") != "" {
			kv = append(kv, fmt.Sprintf("d=%v", a.Duration("d")))
		}
		if len(kv) > 0 {
			out = append(out, strings.Join(kv, " "))
		}
		return out
	case "advance":
		return []string{fmt.Sprintf("t=+%v", a.OnlyDuration("advance DUR"))}
	}
	h.t.Fatalf("%s: unknown command %q", pos, a.Cmd)
	return nil
}

func TestParse(t *testing.T) {
	data := "# comment\n\ncmd a\n----\nx\ny\n\n# between\ncmd b\n----\n\ncmd c\n----\nz\n\n\n"
	got, err := parse("f.txt", data)
	if err != nil {
		t.Fatal(err)
	}
	want := []item{
		{verbatim: "# comment"},
		{verbatim: ""},
		{cmd: "cmd a", want: []string{"x", "y"}, line: 3, isCmd: true},
		{verbatim: ""},
		{verbatim: "# between"},
		{cmd: "cmd b", line: 9, isCmd: true},
		{verbatim: ""},
		{cmd: "cmd c", want: []string{"z"}, line: 12, isCmd: true},
	}
	if !slices.EqualFunc(got, want, func(x, y item) bool {
		return x.verbatim == y.verbatim && x.cmd == y.cmd && slices.Equal(x.want, y.want) && x.line == y.line && x.isCmd == y.isCmd
	}) {
		t.Errorf("parse:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseBlockWithoutSeparator(t *testing.T) {
	for _, tc := range []struct{ name, data, err string }{
		{"output without ----", "# c\ncmd a\nx\n", `f.txt:2: command "cmd a" not followed by ----`},
		{"command at the end", "cmd a\n----\nx\n\ncmd b\n", `f.txt:5: command "cmd b" not followed by ----`},
		{"indented separator", "cmd a\n ----\n", `f.txt:1: command "cmd a" not followed by ----`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse("f.txt", tc.data)
			if err == nil || err.Error() != tc.err {
				t.Errorf("parse: error %v, want %s", err, tc.err)
			}
		})
	}
}

// recorder is a testing.TB that collects failures instead of failing the
// test; Fatal ends the goroutine, as in a test.
type recorder struct {
	testing.TB
	errs  []string
	fatal bool
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatal(args ...any) {
	r.errs = append(r.errs, fmt.Sprint(args...))
	r.fatal = true
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) { r.Fatal(fmt.Sprintf(format, args...)) }

// do runs f with r as a test body would, returning once f has returned
// or called Fatal.
func (r *recorder) do(f func(tb testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
}

const stale = `# comment

cmd a
----
stale

# between
cmd b
----

cmd c
----
old
older`

const fresh = `# comment

cmd a
----
A1
A2

# between
cmd b
----
B

cmd c
----
`

func fakeRun(_, cmd string) []string {
	return map[string][]string{"cmd a": {"A1", "A2"}, "cmd b": {"B"}}[cmd]
}

func TestRunFileReportsMismatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.txt")
	if err := os.WriteFile(path, []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	var ran []string
	r.do(func(tb testing.TB) {
		runFile(tb, path, func(pos, cmd string) []string {
			ran = append(ran, pos+" "+cmd)
			return fakeRun(pos, cmd)
		}, false)
	})
	if want := []string{path + ":3 cmd a", path + ":8 cmd b", path + ":11 cmd c"}; !slices.Equal(ran, want) {
		t.Errorf("ran %q, want %q", ran, want)
	}
	want := []string{
		path + ":3: cmd a\n got:\n\tA1\n\tA2\nwant:\n\tstale",
		path + ":8: cmd b\n got:\n\tB\nwant:\n\t",
		path + ":11: cmd c\n got:\n\t\nwant:\n\told\n\tolder",
	}
	if r.fatal || !slices.Equal(r.errs, want) {
		t.Errorf("failures (fatal %v):\n%q\nwant:\n%q", r.fatal, r.errs, want)
	}
	if data, _ := os.ReadFile(path); string(data) != stale {
		t.Errorf("without -update the file changed:\n%s", data)
	}
}

func TestRunFileUpdate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.txt")
	if err := os.WriteFile(path, []byte(stale+"\n\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	r.do(func(tb testing.TB) { runFile(tb, path, fakeRun, true) })
	if len(r.errs) > 0 {
		t.Fatalf("with -update: %q", r.errs)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != fresh {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", data, fresh)
	}

	// The rewritten file passes, and rewriting it again changes nothing.
	r.do(func(tb testing.TB) { runFile(tb, path, fakeRun, false) })
	r.do(func(tb testing.TB) { runFile(tb, path, fakeRun, true) })
	if len(r.errs) > 0 {
		t.Errorf("on the rewritten file: %q", r.errs)
	}
	if data, _ := os.ReadFile(path); string(data) != fresh {
		t.Errorf("rewriting again changed the file:\n%s", data)
	}
}

func TestRunFileBadBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.txt")
	if err := os.WriteFile(path, []byte("cmd a\n----\nA1\nA2\n\ncmd b\nB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	ran := false
	r.do(func(tb testing.TB) {
		runFile(tb, path, func(pos, cmd string) []string { ran = true; return nil }, true)
	})
	want := []string{path + `:6: command "cmd b" not followed by ----`}
	if !r.fatal || !slices.Equal(r.errs, want) {
		t.Errorf("failures (fatal %v): %q, want fatal %q", r.fatal, r.errs, want)
	}
	if ran {
		t.Error("a command ran from a file that does not parse")
	}
	if data, _ := os.ReadFile(path); string(data) != "cmd a\n----\nA1\nA2\n\ncmd b\nB\n" {
		t.Errorf("a file that does not parse was rewritten:\n%s", data)
	}
}

func TestArgsFailOnBadValues(t *testing.T) {
	for _, tc := range []struct {
		line string
		get  func(a *Args)
		err  string
	}{
		{"init", func(a *Args) { a.Int("max") }, "f.txt:1: init: missing max=N"},
		{"init max=two", func(a *Args) { a.Int("max") }, `f.txt:1: max="two": want an integer`},
		{"report n=", func(a *Args) { a.IntOr("n", 1) }, `f.txt:1: n="": want an integer`},
		{"init", func(a *Args) { a.Duration("wait") }, "f.txt:1: init: missing wait=DUR"},
		{"init wait=5", func(a *Args) { a.Duration("wait") }, `f.txt:1: wait="5": time: missing unit in duration "5"`},
		{"advance", func(a *Args) { a.Only("advance DUR") }, "f.txt:1: usage: advance DUR"},
		{"advance 1s 2s", func(a *Args) { a.OnlyDuration("advance DUR") }, "f.txt:1: usage: advance DUR"},
		{"advance soon", func(a *Args) { a.OnlyDuration("advance DUR") }, `f.txt:1: time: invalid duration "soon"`},
	} {
		r := &recorder{TB: t}
		r.do(func(tb testing.TB) { tc.get(ParseArgs(tb, "f.txt:1", tc.line)) })
		if !r.fatal || !slices.Equal(r.errs, []string{tc.err}) {
			t.Errorf("%s: failures (fatal %v) %q, want fatal %q", tc.line, r.fatal, r.errs, tc.err)
		}
	}

	r := &recorder{TB: t}
	r.do(func(tb testing.TB) {
		a := ParseArgs(tb, "f.txt:1", "report n=2")
		if n, def := a.IntOr("n", 1), a.IntOr("m", 7); n != 2 || def != 7 {
			t.Errorf("IntOr: %d, %d; want 2, 7", n, def)
		}
	})
	if len(r.errs) > 0 {
		t.Errorf("IntOr on good values: %q", r.errs)
	}
}
