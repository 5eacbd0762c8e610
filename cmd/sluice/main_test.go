package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestValidateGolden runs `sluice validate` on every bad config in
// testdata/bad and compares what it prints with the .golden file. The
// config package's golden test covers every kind of error and its exact
// FILE:LINE:COL; this one checks that the command prints them unchanged,
// one per line on stderr and nothing on stdout, and exits 1.
func TestValidateGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{"validate", "-config", f}, &stdout, &stderr)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				os.WriteFile(golden, stderr.Bytes(), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if stderr.String() != string(want) {
				t.Errorf("output:\n%s\nwant:\n%s", stderr.String(), want)
			}
			for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if !regexp.MustCompile(`^` + regexp.QuoteMeta(f) + `:\d+:\d+: \S`).MatchString(line) {
					t.Errorf("line %q is not FILE:LINE:COL: message", line)
				}
			}
		})
	}
}

func TestValidateGood(t *testing.T) {
	f := "testdata/good.yaml"
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-config", f}, &stdout, &stderr); code != 0 {
		t.Errorf("%s: exit %d: %s", f, code, stderr.String())
	}
	if got, want := stdout.String(), f+": ok\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
}

func TestUsageAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage:") {
		t.Errorf("no args: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "sluice ") {
		t.Errorf("version: exit %d, stdout %q", code, out.String())
	}
	errb.Reset()
	if code := run([]string{"validate"}, &out, &errb); code != 2 || errb.String() != "sluice validate: -config FILE is required\n" {
		t.Errorf("validate without -config: exit %d, stderr %q; want 2 and the usage error", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"validate", "-frobnicate"}, &out, &errb); code != 2 {
		t.Errorf("validate with an unknown flag: exit %d, want 2", code)
	}
	errb.Reset()
	if code := run([]string{"run", "-config", "/nonexistent/sluice.yaml"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "/nonexistent/sluice.yaml") {
		t.Errorf("run with missing file: exit %d, stderr %q", code, errb.String())
	}
}

// buildSluice builds the real binary once per test run.
func buildSluice(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startBinary runs the binary and returns the process and a reader of its stdout.
func startBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewReader(stdout), &stderr
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func stopAndWait(t *testing.T, cmd *exec.Cmd, stderr *bytes.Buffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGTERM\nstderr:\n%s", stderr.String())
	}
}

// TestDemoBinary is the README's first command as a newcomer runs it: the
// demo needs no files, proxies to its built-in upstreams, prints its URLs,
// and drains cleanly on SIGTERM.
func TestDemoBinary(t *testing.T) {
	bin := buildSluice(t)
	cmd, out, stderr := startBinary(t, bin, "demo", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0")
	proxy, admin := demoURLs(t, out, stderr)

	code, body := httpGet(t, proxy+"/api/hello")
	var reply map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &reply) != nil || reply["service"] != "api" || reply["path"] != "/api/hello" {
		t.Errorf("/api/hello: %d %s", code, body)
	}
	if code, body := httpGet(t, proxy+"/slow/work"); code != 200 || !strings.Contains(body, `"service":"slow"`) {
		t.Errorf("/slow/work: %d %s", code, body)
	}
	if code, body := httpGet(t, proxy+"/flaky/x"); code != 200 && code != 503 {
		t.Errorf("/flaky/x: %d %s", code, body)
	}
	if code, _ := httpGet(t, proxy+"/nowhere"); code != 404 {
		t.Errorf("/nowhere: %d, want 404", code)
	}
	if code, _ := httpGet(t, admin+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	if code, body := httpGet(t, admin+"/"); code != 200 || !strings.Contains(body, "<html") {
		t.Errorf("dashboard: %d %.80q", code, body)
	}
	// The SSE endpoint streams: the first event arrives before the stream ends.
	resp, err := http.Get(proxy + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if err != nil || first != "id: 1\n" {
		t.Errorf("/api/events first line %q, %v", first, err)
	}
	stopAndWait(t, cmd, stderr)
	assertJSONLog(t, stderr.String(), "request", "stopped")
}

// assertJSONLog checks that every line of a log is a slog JSON object
// and that the messages in want all occur.
func assertJSONLog(t *testing.T, log string, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		var rec struct {
			Time  string `json:"time"`
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Time == "" || rec.Level == "" || rec.Msg == "" {
			t.Errorf("log line is not a slog JSON record: %q", line)
			continue
		}
		seen[rec.Msg] = true
	}
	for _, m := range want {
		if !seen[m] {
			t.Errorf("no %q line in the log:\n%s", m, log)
		}
	}
}

// demoURLs reads the proxy and dashboard URLs the demo prints.
func demoURLs(t *testing.T, out *bufio.Reader, stderr *bytes.Buffer) (proxy, admin string) {
	t.Helper()
	for proxy == "" || admin == "" {
		line, err := out.ReadString('\n')
		if err != nil {
			t.Fatalf("demo output ended: %v\nstderr:\n%s", err, stderr.String())
		}
		switch f := strings.Fields(line); {
		case len(f) == 2 && f[0] == "proxy":
			proxy = f[1]
		case len(f) == 2 && f[0] == "dashboard":
			admin = strings.TrimSuffix(f[1], "/")
		}
	}
	return proxy, admin
}

// TestDemoLoadBinary runs the demo with a short built-in load: it must
// finish by itself and leave its traffic in the monitoring API.
func TestDemoLoadBinary(t *testing.T) {
	bin := buildSluice(t)
	cmd, out, stderr := startBinary(t, bin, "demo", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-load", "-duration", "3s")
	_, admin := demoURLs(t, out, stderr)
	for {
		line, err := out.ReadString('\n')
		if err != nil {
			t.Fatalf("demo output ended before the load finished: %v\nstderr:\n%s", err, stderr.String())
		}
		if strings.HasPrefix(line, "load finished after 3s") {
			break
		}
	}
	_, body := httpGet(t, admin+"/api/v1/routes/slow")
	var d struct {
		AdmittedTotal uint64 `json:"admitted_total"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil || d.AdmittedTotal == 0 {
		t.Errorf("slow route after the load: %v %s", err, body)
	}
	stopAndWait(t, cmd, stderr)
	assertJSONLog(t, stderr.String(), "request", "stopped")
}

func TestDemoFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"demo", "-load", "-listen", "192.0.2.1:8080"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "loopback") {
		t.Errorf("-load off loopback: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"demo", "-load", "-duration", "0s"}, &out, &errb); code != 2 {
		t.Errorf("-load -duration 0: exit %d, stderr %q", code, errb.String())
	}
}

// TestRunBinary runs `sluice run -config FILE` against a real upstream.
func TestRunBinary(t *testing.T) {
	bin := buildSluice(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s", r.URL.Path)
	}))
	defer up.Close()
	cfgPath := filepath.Join(t.TempDir(), "sluice.yaml")
	proxyAddr, adminAddr := freeAddr(t), freeAddr(t)
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
server: {listen: "%s"}
admin: {listen: "%s"}
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u}]
`, proxyAddr, adminAddr, up.URL)), 0o644)
	cmd, _, stderr := startBinary(t, bin, "run", "-config", cfgPath)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice run never became ready\nstderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := httpGet(t, "http://"+proxyAddr+"/hello"); code != 200 || body != "upstream saw /hello" {
		t.Errorf("proxied: %d %q", code, body)
	}
	stopAndWait(t, cmd, stderr)
	assertJSONLog(t, stderr.String(), "request", "stopped")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.NotFoundHandler())
	addr := s.Listener.Addr().String()
	s.Close()
	return addr
}
