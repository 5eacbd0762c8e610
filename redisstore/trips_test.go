package redisstore

import (
	"sync"
	"testing"
	"time"

	"sluice/internal/testutil"
)

type tripLog struct {
	mu   sync.Mutex
	got  map[string]time.Duration
	hits int
}

func (l *tripLog) handle(name string, left time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.got == nil {
		l.got = map[string]time.Duration{}
	}
	l.got[name] = left
	l.hits++
}

func (l *tripLog) left(name string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.got[name]
	return d, ok
}

// watchingPair starts a Redis and two replicas, a and b, watching the
// trips of upstream "api", each into a log of its own.
func watchingPair(t *testing.T) (r *testutil.Redis, a, b *Store, la, lb *tripLog) {
	t.Helper()
	r = testutil.StartRedis(t, testutil.RedisOptions{})
	a, _ = open(t, redisConfig(r.Addr))
	b, _ = open(t, redisConfig(r.Addr))
	la, lb = &tripLog{}, &tripLog{}
	a.WatchTrips([]string{"api"}, la.handle)
	b.WatchTrips([]string{"api"}, lb.handle)
	return r, a, b, la, lb
}

// TestTrips: a trip published by one replica reaches another at once with
// the time left, never its own publisher, and a replica that starts
// watching later finds the open period by polling.
func TestTrips(t *testing.T) {
	r, a, _, la, lb := watchingPair(t)
	// Let b's subscription settle, as a replica does long before a trip.
	testutil.WaitFor(t, "b subscribed", func() bool { return r.Do("PUBSUB", "NUMSUB", TripChannel) == TripChannel+" :2" })
	a.PublishTrip("api", 30*time.Second)
	testutil.WaitFor(t, "trip reaches b", func() bool { _, ok := lb.left("api"); return ok })
	if d, _ := lb.left("api"); d < 29*time.Second || d > 30*time.Second {
		t.Fatalf("b told %v left, want just under 30s", d)
	}
	if _, ok := la.left("api"); ok {
		t.Fatal("a was told of its own trip")
	}
	if ttl := r.Do("PTTL", "sluice:breaker:api"); ttl < ":29000" {
		t.Fatalf("trip key PTTL %s, want about 30000", ttl)
	}
	// A shorter trip does not cut the open period short.
	a.PublishTrip("api", time.Second)
	time.Sleep(50 * time.Millisecond)
	if ttl := r.Do("PTTL", "sluice:breaker:api"); ttl < ":28000" {
		t.Fatalf("a shorter trip cut the key's PTTL to %s", ttl)
	}

	c, _ := open(t, redisConfig(r.Addr))
	var lc tripLog
	c.WatchTrips([]string{"api", "other"}, lc.handle)
	testutil.WaitFor(t, "c finds the open period", func() bool { _, ok := lc.left("api"); return ok })
	if _, ok := lc.left("other"); ok {
		t.Fatal("c told of a trip nobody published")
	}
}

// TestTripsPollSkipsOwn: polling the keys tells a replica of the open
// periods others set, never of one it set itself, whenever the poll runs.
func TestTripsPollSkipsOwn(t *testing.T) {
	r, a, b, la, lb := watchingPair(t)
	a.PublishTrip("api", 30*time.Second)
	testutil.WaitFor(t, "trip key set", func() bool { return r.Do("EXISTS", "sluice:breaker:api") == ":1" })
	a.trips.poll(t.Context(), a)
	if _, ok := la.left("api"); ok {
		t.Fatal("a's poll told a of its own trip")
	}
	lb.mu.Lock()
	lb.got = nil
	lb.mu.Unlock()
	b.trips.poll(t.Context(), b)
	if d, ok := lb.left("api"); !ok || d < 29*time.Second {
		t.Fatalf("b's poll: %v %v, want the open period a set", d, ok)
	}
}
