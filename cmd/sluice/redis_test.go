package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/internal/testutil"
)

// TestRunRedisCredentials: Redis refusing the password is a clear startup
// error naming Redis's answer; with fail_open sluice starts, limits locally,
// and goes global once the password file is right. A reload to a block
// Redis refuses fails and the old config keeps serving.
func TestRunRedisCredentials(t *testing.T) {
	bin := buildSluice(t)
	r := testutil.StartRedis(t, testutil.RedisOptions{Password: "right-one"})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	defer up.Close()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "redis-password")
	cfgPath := filepath.Join(dir, "sluice.yaml")
	proxyAddr, adminAddr := freeAddr(t), freeAddr(t)
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(name+".tmp", []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(name+".tmp", name); err != nil {
			t.Fatal(err)
		}
	}
	// The saturation detector is off: it judges the machine, which the
	// tests share with other packages, and would refuse requests overloaded.
	config := func(failOpen bool, pw string) string {
		return fmt.Sprintf(`
server: {listen: %q, access_log: false, sched_latency_limit: 0}
admin: {listen: %q}
redis: {addrs: [%q], password_file: %q, fail_open: %v, timeout: 500ms}
upstreams: [{name: u, targets: [%q]}]
routes:
  - {name: a, match: {path_prefix: /}, upstream: u, rate_limit: {rps: 100, scope: global}}
`, proxyAddr, adminAddr, r.Addr, pw, failOpen, up.URL)
	}

	write(pwFile, "wrong-one\n")
	write(cfgPath, config(false, pwFile))
	out, err := exec.Command(bin, "run", "-config", cfgPath).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "WRONGPASS") || !strings.Contains(string(out), "fail_open") {
		t.Fatalf("run with a wrong Redis password: exit %d, output:\n%s\nwant exit 1 naming WRONGPASS and fail_open", code, out)
	}

	write(cfgPath, config(true, pwFile))
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitHTTP(t, "http://"+adminAddr+"/readyz", stderr)
	if code, _ := httpGet(t, "http://"+proxyAddr+"/"); code != 200 {
		t.Fatalf("fail_open with a wrong password: proxy answered %d", code)
	}
	storeUp := func() string {
		_, body := httpGet(t, "http://"+adminAddr+"/metrics")
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, "sluice_ratelimit_store_up "); ok {
				return v
			}
		}
		return "absent"
	}
	if got := storeUp(); got != "0" {
		t.Fatalf("sluice_ratelimit_store_up = %s with the password refused", got)
	}
	if !strings.Contains(stderr.String(), "WRONGPASS") {
		t.Errorf("the refused password is not logged:\n%s", stderr)
	}
	write(pwFile, "right-one\n")
	deadline := time.Now().Add(15 * time.Second)
	for storeUp() != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("store never came up with the right password:\n%s", stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A reload to a Redis block whose password Redis refuses is an error.
	// (The generous timeout above keeps a busy test machine from marking
	// the old store down: what is checked here is that it stays in place.)
	bad := filepath.Join(dir, "bad-password")
	write(bad, "nope")
	write(cfgPath, config(false, bad))
	cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(15 * time.Second)
	for !strings.Contains(stderr.String(), "config reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload error logged:\n%s", stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := httpGet(t, "http://"+proxyAddr+"/"); code != 200 || storeUp() != "1" {
		t.Errorf("after the refused reload: proxy %d, store_up %s; the old config must keep serving", code, storeUp())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
