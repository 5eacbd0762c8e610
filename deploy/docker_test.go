package deploy_test

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// stage is the instructions from one FROM to the next.
type stage struct {
	from  instruction
	image string
	name  string // AS name, or ""
	body  []instruction
}

func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var ins []instruction
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(l)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		ins = append(ins, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	var stages []stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{from: in, image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func (s stage) index(cmd, args string) int {
	return slices.IndexFunc(s.body, func(in instruction) bool { return in.cmd == cmd && in.args == args })
}

// builtBinary is where the build stage writes sluice.
const builtBinary = "/out/sluice"

// buildCommand is the builder's RUN that compiles sluice.
func buildCommand(t *testing.T, stages []stage) string {
	t.Helper()
	var found []string
	for _, in := range stages[0].all("RUN") {
		if strings.Contains(in.args, "go build") {
			found = append(found, in.args)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one RUN with go build in the first stage, got %q", found)
	}
	return found[0]
}

// TestDockerfile checks the image's structure: a Go builder, a static
// build cached by module layer, a small non-root final image running
// sluice on the config the Deployment mounts.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d FROM stages, want a builder and a final image", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build.image, "golang:1.26") || build.name == "" {
		t.Errorf("builder FROM %s, want golang:1.26 AS <name>", build.from.args)
	}

	// go.mod and go.sum alone, then the download, then the sources: the
	// module layer survives source edits.
	mods, dl, src := build.index("COPY", "go.mod go.sum ./"), build.index("RUN", "go mod download"), build.index("COPY", ". .")
	if mods < 0 || dl < 0 || src < 0 || !(mods < dl && dl < src) {
		t.Errorf("want COPY go.mod go.sum, RUN go mod download, COPY . . in that order; at %d, %d, %d", mods, dl, src)
	}
	cmd := buildCommand(t, stages)
	for _, part := range []string{"CGO_ENABLED=0 ", "go build ", "-trimpath", `-ldflags="-s -w"`, "-o " + builtBinary + " ", "./cmd/sluice"} {
		if !strings.Contains(cmd, part) {
			t.Errorf("build command %q lacks %s", cmd, part)
		}
	}

	switch {
	case final.image == "scratch":
	case strings.HasPrefix(final.image, "gcr.io/distroless/static") && strings.HasSuffix(final.image, ":nonroot"):
	default:
		t.Errorf("final image %s, want scratch or distroless static nonroot", final.image)
	}
	users := final.all("USER")
	if len(users) == 0 {
		t.Fatal("the final stage sets no USER")
	}
	uid, gid, _ := strings.Cut(users[len(users)-1].args, ":")
	for _, id := range []string{uid, gid} {
		// Numeric, so the kubelet can check runAsNonRoot against it.
		if n, err := strconv.Atoi(id); err != nil || n == 0 {
			t.Errorf("final USER %q: want numeric, non-root ids", users[len(users)-1].args)
		}
	}
	if final.index("COPY", "--from="+build.name+" "+builtBinary+" /usr/local/bin/sluice") < 0 {
		t.Errorf("the final stage does not copy %s from %s to /usr/local/bin/sluice", builtBinary, build.name)
	}

	// ENTRYPOINT in exec form (no shell in the image), on the path the
	// Deployment mounts its ConfigMap at.
	eps := final.all("ENTRYPOINT")
	if len(eps) != 1 {
		t.Fatalf("%d ENTRYPOINTs", len(eps))
	}
	var ep []string
	if err := json.Unmarshal([]byte(eps[0].args), &ep); err != nil {
		t.Fatalf("ENTRYPOINT is not in exec form: %v", err)
	}
	if want := []string{"/usr/local/bin/sluice", "run", "-config", "/etc/sluice/sluice.yaml"}; !slices.Equal(ep, want) {
		t.Errorf("ENTRYPOINT %q, want %q", ep, want)
	}
	m := loadManifests(t)
	var dep appsv1.Deployment
	m.get(t, "Deployment/sluice", &dep)
	if args := dep.Spec.Template.Spec.Containers[0].Args; !slices.Equal(args, ep[1:]) {
		t.Errorf("the Deployment's args %q differ from the image's %q", args, ep[1:])
	}

	// EXPOSE the ports the ConfigMap's config listens on.
	cfg, _ := sluiceConfig(t, m)
	var exposed []string
	for _, in := range final.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.args)...)
	}
	for _, listen := range []string{cfg.Server.Listen, cfg.Admin.Listen} {
		if p := strconv.Itoa(int(port(t, listen))); !slices.Contains(exposed, p) {
			t.Errorf("EXPOSE %v lacks %s (%s)", exposed, p, listen)
		}
	}
}

// TestDockerBuildIsStatic runs the Dockerfile's build command, as written
// but for the output path, and checks that it yields a static binary
// (nothing for a dynamic loader to do, as an image without libc needs)
// without symbols or build paths, that runs sluice's verbs on the
// ConfigMap's config.
func TestDockerBuildIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sluice")
	}
	cmd := buildCommand(t, parseDockerfile(t))
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	build := exec.Command("sh", "-c", strings.Replace(cmd, "-o "+builtBinary+" ", "-o "+bin+" ", 1))
	build.Dir = ".." // the Dockerfile's WORKDIR holds the module root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("program header %s: the binary is dynamically linked", p.Type)
		}
	}
	for _, s := range []string{".interp", ".dynamic", ".symtab", ".debug_info"} {
		if f.Section(s) != nil {
			t.Errorf("section %s present", s) // dynamic linking, or -s -w not applied
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(root+"/")) {
		t.Errorf("the binary holds the build path %s: -trimpath not applied", root)
	}

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "sluice ") {
		t.Errorf("sluice version: %v %q", err, out)
	}
	_, text := sluiceConfig(t, loadManifests(t))
	conf := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "validate", "-config", conf).CombinedOutput()
	if err != nil || string(out) != conf+": ok\n" {
		t.Errorf("sluice validate -config %s: %v\n%s", conf, err, out)
	}
	// run takes -config: a missing file is a config error (exit 1), not
	// an unknown flag (exit 2).
	missing := filepath.Join(dir, "missing.yaml")
	out, err = exec.Command(bin, "run", "-config", missing).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), missing) {
		t.Errorf("sluice run -config %s: %v\n%s", missing, err, out)
	}
}

// dockerignore reads the patterns of .dockerignore (no "!" exceptions:
// the matcher below does not implement them).
func dockerignore(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: exception %q is not supported by this test", l)
		}
		pats = append(pats, path.Clean(strings.TrimPrefix(l, "/")))
	}
	return pats
}

// ignored reports whether Docker leaves rel (slash-separated, from the
// context root) out of the build context: a pattern matches the path or
// one of its parent directories; a leading "**/" matches any depth.
func ignored(pats []string, rel string) bool {
	parts := strings.Split(rel, "/")
	for _, p := range pats {
		anyDepth := strings.HasPrefix(p, "**/")
		p = strings.TrimPrefix(p, "**/")
		for from := range parts {
			if from > 0 && !anyDepth {
				break
			}
			for to := from + 1; to <= len(parts); to++ {
				if ok, _ := path.Match(p, strings.Join(parts[from:to], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}

// TestDockerignoreKeepsSources: every file go build ./cmd/sluice reads,
// with cgo off as in the Dockerfile, is in the build context.
func TestDockerignoreKeepsSources(t *testing.T) {
	pats := dockerignore(t)
	for _, c := range []struct {
		path string
		want bool
	}{{".git/config", true}, {"config/testdata/full.yaml", true}, {"a/b.test", true}, {"cmd/sluice/main.go", false}, {"sluice", true}} {
		if got := ignored(pats, c.path); got != c.want {
			t.Fatalf("matcher: ignored(%s) = %v, want %v", c.path, got, c.want)
		}
	}
	list := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`,
		"./cmd/sluice")
	list.Dir = ".."
	list.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"go.mod", "go.sum"}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		rel, err := filepath.Rel(root, f[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range f[1:] {
			files = append(files, filepath.ToSlash(filepath.Join(rel, name)))
		}
	}
	if len(files) < 10 {
		t.Fatalf("go list found only %v", files)
	}
	for _, f := range files {
		if ignored(pats, f) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", f)
		}
	}
}
