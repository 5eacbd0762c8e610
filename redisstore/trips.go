package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shared breakers: a replica whose breaker trips sets the key
// sluice:breaker:<upstream> to its own id, expiring when its open period
// ends (unless the key already ends later), and publishes
// "<replica> <upstream> <ms left>" on TripChannel. Every replica
// subscribes; one that missed a message (it started later, or Redis was
// down) reads the keys' holder and PTTL when it subscribes and again each
// TripPollInterval. A replica is never told of its own trips, by either
// path. Durations rather than instants travel, so replicas' clocks need
// not agree.
const (
	TripChannel      = "sluice:breaker"
	tripKeyPrefix    = "sluice:breaker:"
	TripPollInterval = time.Second
)

// TripHandler is told that upstream's breaker was tripped elsewhere and
// stays open for left.
type TripHandler func(upstream string, left time.Duration)

type tripState struct {
	once     sync.Once
	id       string    // this replica, to ignore its own messages
	pub      chan trip // made by Open
	watching atomic.Bool
	mu       sync.Mutex // guards names, handler, cancel, done
	names    []string
	handler  TripHandler
	cancel   context.CancelFunc
	done     chan struct{}
}

type trip struct {
	upstream string
	left     time.Duration
}

// openTripKey sets the trip's key unless it already holds a later end, and
// publishes the trip. The channel is an argument, not a key: in a Redis
// Cluster a script's keys must share a slot, and PUBLISH reaches every
// node's subscribers anyway.
var openTripKey = redis.NewScript(`
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
end
return redis.call('PUBLISH', ARGV[4], ARGV[3])
`)

// WatchTrips starts sharing the trips of the breakers named: h is called
// (from one goroutine, in order) for trips published by other replicas and
// for open periods found by polling; PublishTrip sends this replica's own.
// A later call replaces the names and handler.
func (s *Store) WatchTrips(names []string, h TripHandler) {
	t := &s.trips
	t.mu.Lock()
	t.names, t.handler = append([]string(nil), names...), h
	started := t.done != nil
	t.mu.Unlock()
	if len(names) == 0 && !started {
		return // nothing shared yet: no subscription
	}
	t.once.Do(func() {
		var b [8]byte
		rand.Read(b[:])
		t.id = hex.EncodeToString(b[:])
		ctx, cancel := context.WithCancel(context.Background())
		t.mu.Lock()
		t.cancel, t.done = cancel, make(chan struct{})
		t.mu.Unlock()
		s.wg.Go(func() { s.publishLoop(ctx) })
		s.wg.Go(func() { defer close(t.done); s.watchLoop(ctx) })
		t.watching.Store(true)
	})
	t.resync(s)
}

// PublishTrip tells the other replicas that upstream's breaker tripped here
// and stays open for left. It never blocks: with Redis down, or more trips
// queued than the publisher keeps up with, the trip stays local.
func (s *Store) PublishTrip(upstream string, left time.Duration) {
	t := &s.trips
	if !t.watching.Load() || !s.up.Load() {
		return
	}
	select {
	case t.pub <- trip{upstream, left}:
	default:
	}
}

func (s *Store) publishLoop(ctx context.Context) {
	t := &s.trips
	for {
		select {
		case <-ctx.Done():
			return
		case tr := <-t.pub:
			ms := max(tr.left.Milliseconds(), 1)
			msg := t.id + " " + tr.upstream + " " + strconv.FormatInt(ms, 10)
			cctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout+s.timeout)
			err := openTripKey.Run(cctx, s.client, []string{tripKeyPrefix + tr.upstream}, ms, t.id, msg, TripChannel).Err()
			cancel()
			if err != nil && ctx.Err() == nil {
				s.fail(err)
			}
		}
	}
}

// watchLoop receives published trips and polls the keys. go-redis
// resubscribes by itself after a lost connection; the poll covers what was
// published meanwhile.
func (s *Store) watchLoop(ctx context.Context) {
	t := &s.trips
	ps := s.client.Subscribe(ctx, TripChannel)
	defer ps.Close()
	msgs := ps.Channel()
	tick := time.NewTicker(TripPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			id, rest, _ := strings.Cut(m.Payload, " ")
			name, ms, _ := strings.Cut(rest, " ")
			n, err := strconv.ParseInt(ms, 10, 64)
			if id == t.id || err != nil || n <= 0 {
				continue
			}
			t.deliver(name, time.Duration(n)*time.Millisecond)
		case <-tick.C:
			if s.up.Load() {
				t.poll(ctx, s)
			}
		}
	}
}

// resync polls the keys at once (on watch, and when Redis comes back).
func (t *tripState) resync(s *Store) {
	t.mu.Lock()
	started := t.done != nil
	t.mu.Unlock()
	if !started {
		return
	}
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout+s.timeout)
		defer cancel()
		t.poll(ctx, s)
	})
}

func (t *tripState) poll(ctx context.Context, s *Store) {
	t.mu.Lock()
	names := t.names
	t.mu.Unlock()
	if len(names) == 0 {
		return
	}
	pipe := s.client.Pipeline()
	ttls := make([]*redis.DurationCmd, len(names))
	holders := make([]*redis.StringCmd, len(names))
	for i, n := range names {
		holders[i] = pipe.Get(ctx, tripKeyPrefix+n)
		ttls[i] = pipe.PTTL(ctx, tripKeyPrefix+n)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		if ctx.Err() == nil {
			s.fail(err)
		}
		return
	}
	for i, c := range ttls {
		// The key holds the replica whose trip set its end: this one's
		// own trips are not news to it, polled any more than published.
		if holder, err := holders[i].Result(); err == nil && holder == t.id {
			continue
		}
		if left, err := c.Result(); err == nil && left > 0 {
			t.deliver(names[i], left)
		}
	}
}

func (t *tripState) deliver(name string, left time.Duration) {
	t.mu.Lock()
	h := t.handler
	t.mu.Unlock()
	if h != nil {
		h(name, left)
	}
}

func (t *tripState) close() {
	t.mu.Lock()
	cancel := t.cancel
	t.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
