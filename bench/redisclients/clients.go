package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// takeLua is sluice's shared token bucket script, read by main from
// redisstore/take.lua of the sluice module this one sits in (a nested
// module cannot embed its parent's files), so both measure the same script.
var takeLua string

// takeLuaPath is that file, relative to this module's directory.
const takeLuaPath = "../../redisstore/take.lua"

// The bucket parameters every measured call sends: a bucket that never runs
// dry, so each call does the full read-refill-write of the script.
const (
	benchRPS      = 1000000
	benchBurst    = 1000000
	benchWant     = 1
	benchGiveback = 0
)

// decision is the script's reply.
type decision struct {
	got, milliTokens, waitMicros int64
}

// taker is one client library running the take script. A caller owns one
// taker call site per goroutine: prepared inputs are per caller, so the
// measured cost is the library's, not the caller's argument building.
type taker interface {
	name() string
	newCaller(key string) func(ctx context.Context) (decision, error)
	close()
}

// goRedis is github.com/redis/go-redis/v9 configured for a proxy's hot
// path: the caller's context deadline bounds every socket wait, no retries
// (a retry cannot fit in a 5 ms decision budget), a pool wide enough for
// the proxy's concurrency, and a pool wait no longer than the budget.
type goRedis struct {
	c      *redis.Client
	script *redis.Script
}

// quietLogger drops go-redis's internal log lines (one per failed dial
// while Redis is down); failures are counted by the callers instead.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietLogger{}) }

func newGoRedis(addr string) *goRedis {
	c := redis.NewClient(&redis.Options{
		Addr:                  addr,
		Protocol:              3,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		PoolSize:              64,
		MinIdleConns:          8,
		PoolTimeout:           5 * time.Millisecond,
		DialTimeout:           100 * time.Millisecond,
		DialerRetries:         1,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		DisableIdentity:       true,
	})
	return &goRedis{c: c, script: redis.NewScript(takeLua)}
}

func (g *goRedis) name() string { return "go-redis" }
func (g *goRedis) close()       { g.c.Close() }

func (g *goRedis) newCaller(key string) func(ctx context.Context) (decision, error) {
	keys := []string{key}
	args := []any{benchRPS, benchBurst, benchWant, benchGiveback}
	return func(ctx context.Context) (decision, error) {
		v, err := g.script.Run(ctx, g.c, keys, args...).Int64Slice()
		if err != nil {
			return decision{}, err
		}
		if len(v) != 3 {
			return decision{}, fmt.Errorf("take: %d values", len(v))
		}
		return decision{v[0], v[1], v[2]}, nil
	}
}

// rueidisClient is github.com/redis/rueidis with its default
// auto-pipelining (concurrent callers share a few connections and their
// commands go out in one write), client-side caching off (the bucket
// changes on every call), no retries, and a 1 s bound on an unanswered
// connection.
type rueidisClient struct {
	c      rueidis.Client
	script *rueidis.Lua
}

func newRueidis(addr string) (*rueidisClient, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:      []string{addr},
		DisableCache:     true,
		DisableRetry:     true,
		ConnWriteTimeout: time.Second,
		Dialer:           net.Dialer{Timeout: 100 * time.Millisecond, KeepAlive: time.Second},
	})
	if err != nil {
		return nil, err
	}
	return &rueidisClient{c: c, script: rueidis.NewLuaScript(takeLua)}, nil
}

func (r *rueidisClient) name() string { return "rueidis" }
func (r *rueidisClient) close()       { r.c.Close() }

func (r *rueidisClient) newCaller(key string) func(ctx context.Context) (decision, error) {
	keys := []string{key}
	args := []string{itoa(benchRPS), itoa(benchBurst), itoa(benchWant), itoa(benchGiveback)}
	return func(ctx context.Context) (decision, error) {
		vs, err := r.script.Exec(ctx, r.c, keys, args).ToArray()
		if err != nil {
			return decision{}, err
		}
		if len(vs) != 3 {
			return decision{}, fmt.Errorf("take: %d values", len(vs))
		}
		var d decision
		var errs [3]error
		d.got, errs[0] = vs[0].AsInt64()
		d.milliTokens, errs[1] = vs[1].AsInt64()
		d.waitMicros, errs[2] = vs[2].AsInt64()
		return d, errors.Join(errs[:]...)
	}
}

func itoa(n int) string { return fmt.Sprint(n) }

func newTaker(kind, addr string) (taker, error) {
	switch kind {
	case "go-redis":
		return newGoRedis(addr), nil
	case "rueidis":
		return newRueidis(addr)
	}
	return nil, fmt.Errorf("unknown client %q", kind)
}

var clientKinds = []string{"go-redis", "rueidis"}
