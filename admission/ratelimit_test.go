package admission

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"sluice/config"
)

var t0 = time.Unix(1_700_000_000, 0)

func reqFrom(ip string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = ip + ":40000"
	return r
}

func TestRateLimitDelayIsTheBucketsReal(t *testing.T) {
	l := NewRateLimiter(config.RateLimit{RPS: 0.5, Burst: 1, Key: "none", MaxKeys: 1})
	r := reqFrom("192.0.2.1")
	steps := []struct {
		at        time.Duration
		ok        bool
		remaining int
		reset     time.Duration
		delay     time.Duration
	}{
		{0, true, 0, 2 * time.Second, 0},
		{0, false, 0, 2 * time.Second, 2 * time.Second}, // rps 0.5: the next token is 2 s away
		{500 * time.Millisecond, false, 0, 1500 * time.Millisecond, 1500 * time.Millisecond},
		{2 * time.Second, true, 0, 2 * time.Second, 0},
		{6 * time.Second, true, 0, 2 * time.Second, 0}, // idle long: bucket full (burst 1), then one taken
	}
	for i, s := range steps {
		ok, rem, reset, delay := l.Allow(r, t0.Add(s.at))
		if ok != s.ok || rem != s.remaining || reset != s.reset || delay != s.delay {
			t.Errorf("step %d at +%v: got ok=%v remaining=%d reset=%v delay=%v, want %v %d %v %v",
				i, s.at, ok, rem, reset, delay, s.ok, s.remaining, s.reset, s.delay)
		}
	}
}

func TestRateLimitBurstAndRemaining(t *testing.T) {
	l := NewRateLimiter(config.RateLimit{RPS: 10, Burst: 5, Key: "none", MaxKeys: 1})
	r := reqFrom("192.0.2.1")
	for i := 4; i >= 0; i-- {
		ok, rem, _, _ := l.Allow(r, t0)
		if !ok || rem != i {
			t.Fatalf("burst request: ok=%v remaining=%d, want true %d", ok, rem, i)
		}
	}
	if ok, _, reset, delay := l.Allow(r, t0); ok || delay != 100*time.Millisecond || reset != 500*time.Millisecond {
		t.Errorf("past burst: ok=%v delay=%v reset=%v, want false 100ms 500ms", ok, delay, reset)
	}
	if got := l.Window(); got != 500*time.Millisecond {
		t.Errorf("Window = %v, want 500ms (burst 5 at 10/s)", got)
	}
}

func TestRateLimitKeysIsolateClients(t *testing.T) {
	l := NewRateLimiter(config.RateLimit{RPS: 1, Burst: 2, Key: "client_ip", MaxKeys: 100})
	a, b := reqFrom("192.0.2.1"), reqFrom("192.0.2.2")
	for i := 0; i < 2; i++ {
		if ok, _, _, _ := l.Allow(a, t0); !ok {
			t.Fatalf("a request %d refused within burst", i)
		}
	}
	if ok, _, _, _ := l.Allow(a, t0); ok {
		t.Fatal("a allowed past its burst")
	}
	// X-Forwarded-For must not choose the bucket.
	a2 := reqFrom("192.0.2.1")
	a2.Header.Set("X-Forwarded-For", "198.51.100.7")
	if ok, _, _, _ := l.Allow(a2, t0); ok {
		t.Fatal("a escaped its bucket with X-Forwarded-For")
	}
	for i := 0; i < 2; i++ {
		if ok, _, _, _ := l.Allow(b, t0); !ok {
			t.Fatalf("b refused because of a (request %d)", i)
		}
	}
}

func TestRateLimitHeaderKey(t *testing.T) {
	l := NewRateLimiter(config.RateLimit{RPS: 1, Burst: 1, Key: "header:X-Api-Key", MaxKeys: 100})
	withKey := func(k string) *http.Request {
		r := reqFrom("192.0.2.9")
		if k != "" {
			r.Header.Set("X-Api-Key", k)
		}
		return r
	}
	for _, k := range []string{"alice", "bob", ""} {
		if ok, _, _, _ := l.Allow(withKey(k), t0); !ok {
			t.Errorf("key %q: first request refused", k)
		}
		if ok, _, _, _ := l.Allow(withKey(k), t0); ok {
			t.Errorf("key %q: second request allowed past burst 1", k)
		}
	}
	if n := l.Keys(); n != 3 {
		t.Errorf("Keys = %d, want 3 (alice, bob, and the shared no-header bucket)", n)
	}
}

func TestKeyTableBounded(t *testing.T) {
	const max = 1000
	tab := newKeyTable(max, func(string) *rate.Limiter { return rate.NewLimiter(1, 1) })
	for i := 0; i < 50*max; i++ {
		tab.get(fmt.Sprintf("k%d", i))
	}
	if n := tab.len(); n > max {
		t.Errorf("table holds %d keys, bound %d", n, max)
	}
}

// TestKeyTableKeepsHotKeys floods a one-shard table with one-off keys while
// a hot key is used between every insert: CLOCK's second chance keeps it,
// so a steady client keeps its bucket state under a key flood.
func TestKeyTableKeepsHotKeys(t *testing.T) {
	tab := newKeyTable(256, func(string) *rate.Limiter { return rate.NewLimiter(1, 1) })
	if len(tab.shards) != 1 {
		t.Fatalf("%d shards, want 1 for 256 keys", len(tab.shards))
	}
	hot := tab.get("hot")
	for i := 0; i < 10000; i++ {
		tab.get(fmt.Sprintf("flood-%d", i))
		if tab.get("hot") != hot {
			t.Fatalf("hot key evicted after %d flood keys", i)
		}
	}
}

// TestKeyTableMemory checks the table's memory stays bounded by max_keys
// however many distinct keys arrive.
func TestKeyTableMemory(t *testing.T) {
	measure := func(keys int) uint64 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tab := newKeyTable(10000, func(string) *rate.Limiter { return rate.NewLimiter(1, 1) })
		for i := 0; i < keys; i++ {
			tab.get(fmt.Sprintf("client-%d", i))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(tab)
		return after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc)
	}
	small, large := measure(10000), measure(200000)
	// Twenty times the keys must not take much more memory than the bound.
	if large > small*2 {
		t.Errorf("heap %d KiB for 200k keys vs %d KiB for 10k: not bounded by max_keys", large>>10, small>>10)
	}
}

func TestServiceTimeEWMA(t *testing.T) {
	var s serviceTime
	if s.mean() != 0 {
		t.Fatal("mean before any sample")
	}
	s.observe(80 * time.Millisecond)
	if s.mean() != 80*time.Millisecond {
		t.Errorf("first sample sets the mean: %v", s.mean())
	}
	s.observe(160 * time.Millisecond)
	if s.mean() != 90*time.Millisecond {
		t.Errorf("mean after 80ms, 160ms = %v, want 90ms (weight 1/8)", s.mean())
	}
	for i := 0; i < 200; i++ {
		s.observe(20 * time.Millisecond)
	}
	if m := s.mean(); m < 20*time.Millisecond || m > 21*time.Millisecond {
		t.Errorf("mean converges to the recent service time: %v", m)
	}
}
