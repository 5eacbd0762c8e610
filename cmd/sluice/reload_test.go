package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestRunBinaryReload drives the real binary: SIGHUP with an unchanged file
// reloads (counted once), an invalid file leaves the old config serving and
// is counted as an error, and a fixed file adds its route.
func TestRunBinaryReload(t *testing.T) {
	bin := buildSluice(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s", r.URL.Path)
	}))
	defer up.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sluice.yaml")
	proxyAddr, adminAddr := freeAddr(t), freeAddr(t)
	// The saturation detector is off: it judges the machine, which the
	// tests share with other packages, and would refuse requests overloaded.
	write := func(routes string) {
		t.Helper()
		tmp := cfgPath + ".tmp"
		os.WriteFile(tmp, []byte(fmt.Sprintf(`
server: {listen: "%s", access_log: false, sched_latency_limit: 0}
admin: {listen: "%s"}
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - {name: a, match: {path_prefix: /a}, upstream: u}
%s`, proxyAddr, adminAddr, up.URL, routes)), 0o644)
		os.Rename(tmp, cfgPath)
	}
	write("")
	cmd, _, stderr := startBinary(t, bin, "run", "-config", cfgPath)
	waitHTTP(t, "http://"+adminAddr+"/readyz", stderr)

	reloads := func(result string) int {
		_, body := httpGet(t, "http://"+adminAddr+"/metrics")
		m := regexp.MustCompile(`sluice_config_reloads_total\{result="` + result + `"\} (\d+)`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no reload counter in /metrics")
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %s\nstderr:\n%s", what, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	before := reloads("success")
	cmd.Process.Signal(syscall.SIGHUP)
	eventually("SIGHUP reload counted", func() bool { return reloads("success") == before+1 })

	os.WriteFile(cfgPath, []byte("routes: [oops\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	eventually("invalid reload counted", func() bool { return reloads("error") >= 1 })
	if code, body := httpGet(t, "http://"+proxyAddr+"/a"); code != 200 || body != "upstream saw /a" {
		t.Errorf("after an invalid reload the old config must serve: %d %q", code, body)
	}

	write("  - {name: b, match: {path_prefix: /b}, upstream: u}\n")
	cmd.Process.Signal(syscall.SIGHUP)
	eventually("new route served", func() bool {
		code, _ := httpGet(t, "http://"+proxyAddr+"/b")
		return code == 200
	})
	stopAndWait(t, cmd, stderr)
}

func waitHTTP(t *testing.T, url string, stderr interface{ String() string }) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered\nstderr:\n%s", url, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
