package admission

import (
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"sluice/config"
	"sluice/internal/testutil"
	"sluice/redisstore"
)

func openStore(tb testing.TB, addr string) *redisstore.Store {
	tb.Helper()
	s, err := redisstore.Open(config.Redis{Addrs: []string{addr}, DialTimeout: time.Second, Timeout: 200 * time.Millisecond},
		slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// TestLeaseSizing: under steady demand a replica's leases grow to the cap,
// burst ÷ (8 × replicas), so Redis sees far fewer commands than requests;
// every token granted is either spent or still held, never more.
func TestLeaseSizing(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	s := openStore(t, r.Addr)
	l := newRateLimiter(config.RateLimit{RPS: 1e6, Burst: 24000, Key: "none", MaxKeys: 1, Scope: "global", Replicas: 3}, "sized", s)
	req := httptest.NewRequest("GET", "/", nil)
	const n = 20000
	start := time.Now()
	for i := range n {
		// Time as a replica at 200k req/s sees it, so demand fills leases.
		if ok, _, _, _ := l.Allow(req, start.Add(time.Duration(i)*5*time.Microsecond)); !ok {
			t.Fatalf("request %d refused by a bucket of 1e6 rps", i)
		}
	}
	g := l.global
	if g.maxLease != 1000 {
		t.Fatalf("maxLease = %d, want 24000 / (8 × 3) = 1000", g.maxLease)
	}
	if got := s.Commands(); got > n/100 {
		t.Errorf("%d Redis commands for %d requests; leases of up to %d should need far fewer", got, n, g.maxLease)
	}
	g.single.mu.Lock()
	want := g.single.want
	g.single.mu.Unlock()
	if want != g.maxLease {
		t.Errorf("lease size after steady demand = %d, want the cap %d", want, g.maxLease)
	}
}

// TestGlobalFallsBackAtOnce: with the store down, decisions never touch
// Redis and follow the local share.
func TestGlobalFallsBackAtOnce(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	s := openStore(t, r.Addr)
	l := newRateLimiter(config.RateLimit{RPS: 30, Burst: 9, Key: "none", MaxKeys: 1, Scope: "global", Replicas: 3}, "fb", s)
	if rps, burst := l.Fallback(); rps != 10 || burst != 3 {
		t.Fatalf("fallback share = %v, %d; want 10, 3", rps, burst)
	}
	r.Kill()
	req := httptest.NewRequest("GET", "/", nil)
	now := time.Now()
	var admitted int
	for range 20 {
		if ok, _, _, delay := l.Allow(req, now); ok {
			admitted++
		} else if delay <= 0 {
			t.Fatal("a fallback refusal without a delay")
		}
	}
	// The first take finds Redis gone; the burst of 3 of the local share
	// decides the rest. The lease is empty at first, so none came from it.
	if admitted != 3 || s.Up() {
		t.Fatalf("admitted %d of 20 with Redis gone (store up %v); want the local burst, 3", admitted, s.Up())
	}
}

// TestGlobalSpendsLocalShare: what the shared bucket admitted is spent from
// the local share too, so a replica that just spent its share globally has
// no burst left locally when Redis goes: a flapping store must not grant
// the burst again at each switch.
func TestGlobalSpendsLocalShare(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	s := openStore(t, r.Addr)
	l := newRateLimiter(config.RateLimit{RPS: 30, Burst: 9, Key: "none", MaxKeys: 1, Scope: "global", Replicas: 3}, "spent", s)
	req := httptest.NewRequest("GET", "/", nil)
	now := time.Now()
	admitted := 0
	for range 40 {
		if ok, _, _, _ := l.Allow(req, now); ok {
			admitted++
		}
	}
	if admitted < 3 || !s.Up() {
		t.Fatalf("admitted %d globally (store up %v); want at least the local burst, 3", admitted, s.Up())
	}
	r.Kill()
	for i := range 10 {
		if ok, _, _, delay := l.Allow(req, now); ok {
			t.Fatalf("request %d admitted locally at the same instant after %d global admissions: the local share was not spent", i, admitted)
		} else if delay <= 0 {
			t.Fatal("a fallback refusal without a delay")
		}
	}
	// A third of a second later the share (10/s) has refilled three tokens.
	later := now.Add(time.Second / 3)
	got := 0
	for range 10 {
		if ok, _, _, _ := l.Allow(req, later); ok {
			got++
		}
	}
	if got != 3 {
		t.Fatalf("admitted %d locally a third of a second later; want the share's refill, 3", got)
	}
}

// BenchmarkGlobalAllow is a global limit's decision when the lease holds
// tokens: no Redis round trip, a mutex and counters. Run in parallel, as
// a proxy's requests are.
func BenchmarkGlobalAllow(b *testing.B) {
	r := testutil.StartRedis(b, testutil.RedisOptions{})
	s := openStore(b, r.Addr)
	l := newRateLimiter(config.RateLimit{RPS: 1e9, Burst: 1e8, Key: "none", MaxKeys: 1, Scope: "global"}, "bench", s)
	req := httptest.NewRequest("GET", "/", nil)
	b.ReportAllocs()
	var mu sync.Mutex
	refused := 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _, _, _ := l.Allow(req, time.Now()); !ok {
				mu.Lock()
				refused++
				mu.Unlock()
			}
		}
	})
	b.ReportMetric(float64(s.Commands())/float64(b.N), "cmds/op")
	if refused > 0 {
		b.Fatalf("%d refused", refused)
	}
}

// BenchmarkLocalAllow is the same decision for a local limit, for comparison.
func BenchmarkLocalAllow(b *testing.B) {
	l := NewRateLimiter(config.RateLimit{RPS: 1e9, Burst: 1e8, Key: "none", MaxKeys: 1})
	req := httptest.NewRequest("GET", "/", nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow(req, time.Now())
		}
	})
}
