package redisstore

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/config"
	"sluice/internal/testutil"
)

func redisConfig(addr string) config.Redis {
	return config.Redis{Addrs: []string{addr}, DialTimeout: 200 * time.Millisecond, Timeout: 50 * time.Millisecond}
}

func open(t *testing.T, cfg config.Redis) (*Store, *testutil.LogRecorder) {
	t.Helper()
	rec := &testutil.LogRecorder{}
	s, err := Open(cfg, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, rec
}

// TestTake checks the shared bucket's arithmetic: a new bucket is full, a
// take never exceeds what it holds, an empty one says how long until its
// next token, and given-back tokens return, capped at burst.
func TestTake(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	s, _ := open(t, redisConfig(r.Addr))
	if !s.Up() {
		t.Fatalf("store down after Open: %s", s.LastError())
	}
	// 1 token/s: refill during the test is at most a few tokens.
	g, err := s.Take("k", 1, 10, 4, 0)
	if err != nil || g.Got != 4 || g.Left < 5.99 || g.Left > 6.2 {
		t.Fatalf("first take = %+v, %v; want 4 got, ~6 left", g, err)
	}
	g, _ = s.Take("k", 1, 10, 100, 0)
	if g.Got != 6 {
		t.Fatalf("take of 100 from ~6 got %d, want 6", g.Got)
	}
	g, _ = s.Take("k", 1, 10, 1, 0)
	if g.Got != 0 || g.Wait <= 800*time.Millisecond || g.Wait > time.Second {
		t.Fatalf("take from an empty bucket = %+v; want 0 got and a wait just under 1s", g)
	}
	g, _ = s.Take("k", 1, 10, 0, 25)
	if g.Got != 0 || g.Left != 10 {
		t.Fatalf("giving back 25 = %+v; want the bucket capped at burst 10", g)
	}
	if ttl := r.Do("PTTL", "k"); ttl == ":-1" || ttl == ":-2" {
		t.Fatalf("bucket key PTTL %s: it must expire once it would be full again", ttl)
	}
	if got := s.Commands(); got != 4 {
		t.Errorf("Commands = %d, want 4", got)
	}
	// The script cache is empty after a restart: Take reloads it.
	r.Do("SCRIPT", "FLUSH")
	if _, err := s.Take("k", 1, 10, 1, 0); err != nil {
		t.Fatalf("take after SCRIPT FLUSH: %v", err)
	}
}

// TestDownAndBack kills Redis: the next take fails at once, the store goes
// down (logged once however many takes fail), takes fail with ErrDown
// without touching the network, and the prober brings the store back,
// logged once, when Redis is restarted on the same port.
func TestDownAndBack(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	s, rec := open(t, redisConfig(r.Addr))
	if _, err := s.Take("k", 100, 100, 1, 0); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	start := time.Now()
	if _, err := s.Take("k", 100, 100, 1, 0); err == nil {
		t.Fatal("take with Redis killed succeeded")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("failed take took %v", el)
	}
	if s.Up() || s.Errors() == 0 {
		t.Fatalf("Up=%v Errors=%d after a failed take", s.Up(), s.Errors())
	}
	for range 100 {
		if _, err := s.Take("k", 100, 100, 1, 0); !errors.Is(err, ErrDown) {
			t.Fatalf("take while down: %v, want ErrDown", err)
		}
	}
	if n := len(rec.Find("WARN", "redis store down")); n != 1 {
		t.Fatalf("%d down records, want 1:\n%s", n, rec)
	}
	r.Start()
	testutil.WaitFor(t, "store up again", s.Up)
	if _, err := s.Take("k", 100, 100, 1, 0); err != nil {
		t.Fatalf("take after restart: %v", err)
	}
	if n := len(rec.Find("INFO", "redis store up")); n != 1 {
		t.Fatalf("%d up records, want 1:\n%s", n, rec)
	}
}

// TestFrozen puts a relay that stops answering between the store and
// Redis: a take waits no longer than the decision timeout, the store goes
// down, and it stays down while Redis is silent, then comes back.
func TestFrozen(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	f := testutil.StartFreezer(t, r.Addr)
	cfg := redisConfig(f.Addr)
	cfg.Timeout = 20 * time.Millisecond
	s, _ := open(t, cfg)
	if _, err := s.Take("k", 100, 100, 1, 0); err != nil {
		t.Fatal(err)
	}
	f.Freeze()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	for range 20 {
		wg.Go(func() {
			start := time.Now()
			s.Take("k", 100, 100, 1, 0)
			el := time.Since(start)
			mu.Lock()
			worst = max(worst, el)
			mu.Unlock()
		})
	}
	wg.Wait()
	if s.Up() {
		t.Fatal("store up with Redis silent")
	}
	// The budget plus scheduling slack on a loaded machine; what matters is
	// that nothing waits for the 1s socket timeouts.
	if worst > 500*time.Millisecond {
		t.Errorf("slowest take with Redis silent took %v; the decision timeout is %v", worst, cfg.Timeout)
	}
	time.Sleep(3 * ProbeInterval)
	if s.Up() {
		t.Fatal("prober marked a silent Redis up")
	}
	f.Thaw()
	testutil.WaitFor(t, "store up after thaw", s.Up)
}

// TestSilentAtStart: a server that accepts and never answers is not a
// startup error; the store starts down.
func TestSilentAtStart(t *testing.T) {
	s, rec := open(t, redisConfig(testutil.StartSilent(t)))
	if s.Up() {
		t.Fatal("store up against a silent server")
	}
	if len(rec.Find("WARN", "down at start")) != 1 {
		t.Fatalf("no down-at-start record:\n%s", rec)
	}
}

// TestCredentials: a wrong password is an error naming Redis's refusal,
// unless fail_open is set; the right one, read from the file with its
// trailing newline trimmed, works.
func TestCredentials(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{Password: "s3cret"})
	dir := t.TempDir()
	write := func(name, pw string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(pw), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := redisConfig(r.Addr)
	cfg.PasswordFile = write("wrong", "nope\n")
	_, err := Open(cfg, slog.New(&testutil.LogRecorder{}))
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") || !strings.Contains(err.Error(), r.Addr) {
		t.Fatalf("Open with a wrong password: %v; want an error naming the address and WRONGPASS", err)
	}
	cfg.PasswordFile = ""
	if _, err := Open(cfg, slog.New(&testutil.LogRecorder{})); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("Open without a password: %v; want NOAUTH", err)
	}
	cfg.PasswordFile = write("wrong", "nope\n")
	cfg.FailOpen = true
	s, rec := open(t, cfg)
	if s.Up() || len(rec.Find("WARN", "WRONGPASS")) != 1 {
		t.Fatalf("fail_open with a wrong password: Up=%v, log:\n%s", s.Up(), rec)
	}
	// A rotated secret is read again on the next connection.
	write("wrong", "s3cret\n")
	testutil.WaitFor(t, "store up once the password file is right", s.Up)

	cfg.FailOpen = false
	cfg.PasswordFile = write("right", "s3cret\n")
	s2, _ := open(t, cfg)
	if _, err := s2.Take("k", 1, 1, 1, 0); err != nil {
		t.Fatal(err)
	}
	cfg.DB = 99
	if _, err := Open(cfg, slog.New(&testutil.LogRecorder{})); err == nil || !strings.Contains(err.Error(), "DB index") {
		t.Fatalf("Open with db 99: %v; want Redis's DB index error", err)
	}
	cfg.DB = 0
	cfg.PasswordFile = filepath.Join(dir, "missing")
	if _, err := Open(cfg, nil); err == nil || !strings.Contains(err.Error(), "redis.password_file") {
		t.Fatalf("Open with a missing password file: %v", err)
	}
}

// TestTLS: with tls and ca_file the store verifies Redis's certificate and
// works; without the CA the certificate is refused, a startup error.
func TestTLS(t *testing.T) {
	cert := testutil.NewCert(t, "127.0.0.1")
	r := testutil.StartRedis(t, testutil.RedisOptions{TLS: &cert})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	cert.Install(t, caFile, filepath.Join(t.TempDir(), "key.pem"))
	cfg := redisConfig(r.Addr)
	// A TLS handshake under -race on a loaded machine can take a while:
	// the refusal must come from the certificate, not from a timeout.
	cfg.DialTimeout = 5 * time.Second
	cfg.TLS, cfg.CAFile = true, caFile
	s, _ := open(t, cfg)
	if g, err := s.Take("k", 1, 5, 2, 0); err != nil || g.Got != 2 {
		t.Fatalf("take over TLS: %+v, %v", g, err)
	}
	cfg.CAFile = ""
	if s2, err := Open(cfg, slog.New(&testutil.LogRecorder{})); err == nil || !strings.Contains(err.Error(), "x509") {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("Open over TLS without the CA: %v; want a certificate error", err)
	}
}
