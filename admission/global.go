package admission

import (
	"math"
	"sync"
	"time"

	"sluice/redisstore"
)

// A global rate limit is one token bucket per key shared by every replica,
// kept in Redis (package redisstore). Asking Redis for each request would
// add a round trip to every request and send Redis as many commands as the
// proxy serves, so each replica leases tokens instead: it takes a batch
// from the shared bucket, spends it locally, and gives back what is left
// when the lease expires, in the same script call as its next take.
//
// The lease is sized from the key's recent local demand (every request for
// the key, admitted or refused), enough for leaseTTL of it, and capped at maxLease = burst ÷ (8 × replicas) (replicas
// 1 when unset), at least 1. A replica asks for the next lease when half of
// the current one is spent, in the background, so a request under steady
// load does not wait on Redis.
//
// Accuracy: the shared bucket never hands out more than rps × t + burst
// tokens, but tokens leased before a window and spent inside it count
// twice against the bucket's shape, so over any window N replicas admit at
// most rps × t + burst + N × 1.5 × maxLease; with replicas set that extra
// is at most 3/16 of burst. In exchange Redis sees one command per lease.
// A replica that holds leased tokens while another is refused is the
// fairness price; leases expire after leaseTTL, so it lasts at most that.
//
// When the shared bucket is empty the script says how long until it holds
// the lease this replica asks for (one token for a quiet key); until then
// the replica refuses locally with that Retry-After, without asking again.
// So under overload each replica asks about once per lease's worth of
// refill, not once per refusal nor once per token. Retry-After and the RateLimit header come from the
// shared bucket's answers, not from a local guess: RateLimit's r is the
// tokens the shared bucket held at its last answer to this replica.
const leaseTTL = 100 * time.Millisecond

type globalBucket struct {
	store    *redisstore.Store
	prefix   string // Redis key prefix: sluice:rl:<route>:
	rps      float64
	burst    int
	maxLease int
	single   *lease
	table    *keyTable[*lease]
}

// lease is one key's tokens taken from the shared bucket.
type lease struct {
	key        string     // the bucket's key, "" for a route-wide bucket
	mu         sync.Mutex // guards everything below
	tokens     int        // leased tokens left to spend here
	expires    time.Time  // then the tokens left go back to the bucket
	back       int        // tokens to give back with the next take
	emptyUntil time.Time  // the shared bucket has no token until then
	shared     float64    // tokens the shared bucket held at its last answer
	want       int        // size of the next lease
	asked      int        // requests since the last take, admitted or not: the demand
	since      time.Time  // when the last take was asked for
	pending    *refill    // non-nil while a take is in flight
	waiting    int        // requests waiting for the take in flight
}

type refill struct {
	done chan struct{}
	err  error
}

func newGlobalBucket(s *redisstore.Store, route string, rps float64, burst, replicas int, keyed bool, maxKeys int) *globalBucket {
	g := &globalBucket{
		store:    s,
		prefix:   "sluice:rl:" + route + ":",
		rps:      rps,
		burst:    burst,
		maxLease: max(1, burst/(8*max(replicas, 1))),
	}
	if keyed {
		g.table = newKeyTable(maxKeys, func(key string) *lease { return &lease{key: key, want: 1} })
	} else {
		g.single = &lease{want: 1}
	}
	return g
}

// allow takes one token for key at now. decided is false when Redis could
// not answer in time: the caller then decides with its local bucket.
//
// A request that finds the lease empty waits for a take (its own, or one
// already in flight, which many concurrent requests share). If others
// spent what that take brought while the shared bucket still had tokens,
// it asks again, sizing the lease for everyone waiting. Altogether it
// waits at most the decision timeout; then it is decided locally.
func (g *globalBucket) allow(key string, now time.Time) (ok bool, remaining int, reset, delay time.Duration, decided bool) {
	l := g.single
	if l == nil {
		l = g.table.get(key)
	}
	var deadline time.Time
	l.mu.Lock()
	l.asked++
	for {
		if l.tokens > 0 && !now.Before(l.expires) {
			l.back += l.tokens
			l.tokens = 0
		}
		if l.tokens > 0 {
			return g.spend(l, now)
		}
		if now.Before(l.emptyUntil) {
			return g.refuse(l, now)
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(g.store.Timeout())
		}
		left := time.Until(deadline)
		if left <= 0 {
			l.mu.Unlock()
			return false, 0, 0, 0, false
		}
		r := l.pending
		if r == nil {
			r = g.refill(l, now)
		}
		l.waiting++
		l.mu.Unlock()
		// The take has the same budget, but a request never waits past
		// its own deadline for it, however late Redis or the scheduler is.
		t := time.NewTimer(left)
		select {
		case <-r.done:
			t.Stop()
		case <-t.C:
		}
		l.mu.Lock()
		l.waiting--
		select {
		case <-r.done:
		default:
			l.mu.Unlock()
			return false, 0, 0, 0, false
		}
		if r.err != nil {
			l.mu.Unlock()
			return false, 0, 0, 0, false
		}
	}
}

// spend takes a leased token; called with l.mu held, which it releases.
func (g *globalBucket) spend(l *lease, now time.Time) (bool, int, time.Duration, time.Duration, bool) {
	l.tokens--
	if l.pending == nil && l.tokens <= l.want/2 && !now.Before(l.emptyUntil) {
		g.refill(l, now)
	}
	// The shared bucket's count at its last answer: it changes once per
	// take, not per request, so the header value stays cached (and it never
	// overstates what the replicas together may still admit by more than
	// their leases).
	remaining := int(l.shared)
	l.mu.Unlock()
	return true, remaining, g.resetFor(remaining), 0, true
}

// refuse answers from the shared bucket's last word, that it holds no token
// until l.emptyUntil; called with l.mu held, which it releases.
func (g *globalBucket) refuse(l *lease, now time.Time) (bool, int, time.Duration, time.Duration, bool) {
	delay := l.emptyUntil.Sub(now)
	l.mu.Unlock()
	return false, 0, g.resetFor(0), delay, true
}

func (g *globalBucket) resetFor(remaining int) time.Duration {
	missing := float64(g.burst - remaining)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / g.rps * float64(time.Second))
}

// refill starts a take for l in the background; called with l.mu held.
func (g *globalBucket) refill(l *lease, now time.Time) *refill {
	r := &refill{done: make(chan struct{})}
	l.pending = r
	if !l.since.IsZero() {
		// Size the lease from the demand since the previous take.
		if el := now.Sub(l.since); el > 0 {
			rate := float64(l.asked) / el.Seconds()
			l.want = min(g.maxLease, max(1, int(math.Ceil(rate*leaseTTL.Seconds()))))
		}
	}
	// Enough for the requests already waiting, too.
	l.want = min(g.maxLease, max(l.want, l.waiting+1))
	l.asked, l.since = 0, now
	want, back := l.want, l.back
	l.back = 0
	go func() {
		gr, err := g.store.Take(g.prefix+l.key, g.rps, g.burst, want, back)
		l.mu.Lock()
		if err == nil {
			l.tokens += gr.Got
			l.expires = now.Add(leaseTTL)
			l.shared = gr.Left
			if gr.Got == 0 {
				l.emptyUntil = now.Add(gr.Wait)
			}
		}
		r.err = err
		l.pending = nil
		l.mu.Unlock()
		close(r.done)
	}()
	return r
}

// backpressured reports whether the route-wide shared bucket was empty at
// its last answer.
func (g *globalBucket) backpressured(now time.Time) bool {
	if g.single == nil {
		return false
	}
	g.single.mu.Lock()
	defer g.single.mu.Unlock()
	return g.single.tokens == 0 && now.Before(g.single.emptyUntil)
}
