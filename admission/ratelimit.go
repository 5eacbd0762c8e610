package admission

import (
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"sluice/config"
	"sluice/redisstore"
)

// RateLimiter is a route's token bucket (golang.org/x/time/rate), either one
// for the whole route or one per key (client IP or a header's value). With
// scope global the buckets are shared by every replica through Redis (see
// globalBucket), and the local buckets are the fallback while Redis cannot
// answer.
type RateLimiter struct {
	keyCfg string     // as configured: none, client_ip or header:<Name>
	limit  rate.Limit // the configured rate and burst, shared or not
	burst  int
	header string // canonical header name for header:<Name> keys
	byIP   bool   // key client_ip

	// The local buckets: the limit itself with scope local, the fallback
	// share with scope global.
	single *rate.Limiter            // key none
	table  *keyTable[*rate.Limiter] // per-key buckets; nil for key none

	localLimit rate.Limit // the local buckets' rate and burst
	localBurst int

	global *globalBucket // nil: scope local
}

// NewRateLimiter builds the local limiter a validated rate_limit block
// describes, whatever its scope.
func NewRateLimiter(c config.RateLimit) *RateLimiter { return newRateLimiter(c, "", nil) }

// newRateLimiter builds the limiter of route's rate_limit block c: shared
// through s when c.Scope is global and s is not nil.
func newRateLimiter(c config.RateLimit, route string, s *redisstore.Store) *RateLimiter {
	l := &RateLimiter{keyCfg: c.Key, limit: rate.Limit(c.RPS), burst: c.Burst}
	switch {
	case c.Key == "client_ip":
		l.byIP = true
	case strings.HasPrefix(c.Key, "header:"):
		l.header = strings.TrimPrefix(c.Key, "header:")
	}
	keyed := l.byIP || l.header != ""
	localLimit, localBurst := l.limit, l.burst
	if c.Scope == "global" && s != nil {
		l.global = newGlobalBucket(s, route, c.RPS, c.Burst, c.Replicas, keyed, c.MaxKeys)
		// While Redis is down each replica limits alone. With replicas set
		// it takes its share, so N replicas together stay near the global
		// limit; unset, it takes the whole limit: a replica cannot count
		// its peers, and admitting N× the limit for a while is safer for an
		// outage than throttling a lone replica to a fraction of it.
		if c.Replicas > 0 {
			localLimit = rate.Limit(c.RPS / float64(c.Replicas))
			localBurst = max(1, (c.Burst+c.Replicas-1)/c.Replicas)
		}
	}
	l.localLimit, l.localBurst = localLimit, localBurst
	if !keyed {
		l.single = rate.NewLimiter(localLimit, localBurst)
		return l
	}
	l.table = newKeyTable(c.MaxKeys, func(string) *rate.Limiter { return rate.NewLimiter(localLimit, localBurst) })
	return l
}

// Global reports whether the buckets are shared through Redis.
func (l *RateLimiter) Global() bool { return l.global != nil }

// Fallback is the rate and burst of the local buckets: the limit itself for
// scope local, the share a replica keeps to while Redis is down for global.
func (l *RateLimiter) Fallback() (rps float64, burst int) {
	if l.single != nil {
		return float64(l.single.Limit()), l.single.Burst()
	}
	return float64(l.localLimit), l.localBurst
}

// Store is the shared store of a global limit, nil for a local one.
func (l *RateLimiter) Store() *redisstore.Store {
	if l.global == nil {
		return nil
	}
	return l.global.store
}

// RPS is the refill rate.
func (l *RateLimiter) RPS() float64 { return float64(l.limit) }

// Key is the bucket key as configured: none, client_ip or header:<Name>.
func (l *RateLimiter) Key() string { return l.keyCfg }

// Burst is the bucket size, the q of RateLimit-Policy.
func (l *RateLimiter) Burst() int { return l.burst }

// Window is the time an empty bucket takes to fill, the w of
// RateLimit-Policy: burst requests are allowed per window.
func (l *RateLimiter) Window() time.Duration {
	return time.Duration(float64(l.burst) / float64(l.limit) * float64(time.Second))
}

// Keys is the number of per-key buckets held now.
func (l *RateLimiter) Keys() int {
	if l.table == nil {
		return 0
	}
	return l.table.len()
}

// Allow takes one token from the bucket of r's key at now. It reports
// whether the request may go on, the whole tokens left, the time until
// the bucket is full again, and when refused the real delay until the next
// token (the Retry-After of rate_limited).
func (l *RateLimiter) Allow(r *http.Request, now time.Time) (ok bool, remaining int, reset, delay time.Duration) {
	var key string
	if l.single == nil {
		key = l.key(r)
	}
	lim := l.single
	if g := l.global; g != nil && g.store.Up() {
		var decided bool
		if ok, remaining, reset, delay, decided = g.allow(key, now); decided {
			if ok {
				// What the shared bucket admits is spent from the local
				// share too, so that a switch to it (Redis slow or gone)
				// starts from this replica's recent spending, not a full
				// burst: flapping must not grant the burst again each time.
				if lim == nil {
					lim = l.table.get(key)
				}
				lim.AllowN(now, 1)
			}
			return ok, remaining, reset, delay
		}
	}
	if lim == nil {
		lim = l.table.get(key)
	}
	ok = lim.AllowN(now, 1)
	tokens := lim.TokensAt(now)
	if !ok {
		// The bucket holds less than one token; the next arrives when the
		// deficit has refilled at the configured rate.
		delay = l.durationFor(1 - tokens)
	}
	remaining = int(math.Max(0, math.Floor(tokens)))
	// Every local bucket has burst localBurst and none is ever resized:
	// lim.Burst would take the bucket's lock a third time.
	reset = l.durationFor(float64(l.localBurst) - tokens)
	return ok, remaining, reset, delay
}

func (l *RateLimiter) durationFor(tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	return time.Duration(tokens / float64(l.limit) * float64(time.Second))
}

// maxKeyLen caps the bytes of a key kept in the table: a key is an
// attacker's choice, and a long one should cost no more than a short one.
const maxKeyLen = 128

func (l *RateLimiter) key(r *http.Request) string {
	var k string
	if l.byIP {
		// The socket address, never X-Forwarded-For: a client must not be
		// able to choose its own bucket.
		k = r.RemoteAddr
		if host, _, err := net.SplitHostPort(k); err == nil {
			k = host
		}
	} else {
		k = r.Header.Get(l.header) // absent header: the shared "" bucket
	}
	if len(k) > maxKeyLen {
		k = k[:maxKeyLen]
	}
	return k
}

// keyTable is a bounded map from key to bucket, sharded to spread lock
// contention. Each shard evicts with CLOCK (second chance): a key used since
// the hand last passed survives one more round, so keys in steady use stay
// while a flood of one-off keys evicts mostly itself. Memory is bounded by
// maxKeys whatever the traffic.
type keyTable[T any] struct {
	seed   maphash.Seed
	shards []keyShard[T]
	fresh  func(key string) T
}

type keyShard[T any] struct {
	mu   sync.Mutex // guards m, ring, hand
	m    map[string]*keyEntry[T]
	ring []*keyEntry[T] // eviction order, at most cap entries
	hand int
	cap  int
}

type keyEntry[T any] struct {
	key  string
	val  T
	used bool // set on each hit; cleared as the hand passes
}

func newKeyTable[T any](maxKeys int, fresh func(key string) T) *keyTable[T] {
	n := 1
	for n < 64 && n*256 < maxKeys { // shards of at least 256 keys, at most 64 shards
		n *= 2
	}
	t := &keyTable[T]{seed: maphash.MakeSeed(), shards: make([]keyShard[T], n), fresh: fresh}
	per, extra := maxKeys/n, maxKeys%n
	for i := range t.shards {
		c := per
		if i < extra {
			c++
		}
		t.shards[i] = keyShard[T]{m: make(map[string]*keyEntry[T]), cap: max(c, 1)}
	}
	return t
}

func (t *keyTable[T]) get(key string) T {
	s := &t.shards[maphash.String(t.seed, key)&uint64(len(t.shards)-1)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok {
		e.used = true
		return e.val
	}
	k := strings.Clone(key)
	e := &keyEntry[T]{key: k, val: t.fresh(k)}
	if len(s.ring) < s.cap {
		s.ring = append(s.ring, e)
	} else {
		s.evictLocked(e)
	}
	s.m[e.key] = e
	return e.val
}

// evictLocked replaces the first entry not used since the hand last passed.
func (s *keyShard[T]) evictLocked(e *keyEntry[T]) {
	for {
		v := s.ring[s.hand]
		if v.used {
			v.used = false
			s.hand = (s.hand + 1) % len(s.ring)
			continue
		}
		delete(s.m, v.key)
		s.ring[s.hand] = e
		s.hand = (s.hand + 1) % len(s.ring)
		return
	}
}

func (t *keyTable[T]) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
