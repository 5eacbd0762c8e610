// Package redisstore is sluice's connection to the Redis that replicas share:
// the token buckets of global rate limits and the trips of shared breakers.
//
// # Decisions in Redis
//
// A global bucket's arithmetic runs in one Lua script (take.lua), atomically
// in Redis and on Redis's clock, so replicas' clocks never matter. The
// script gives back the unspent tokens of a replica's previous lease and
// takes up to the number asked for: the caller (package admission) spends
// them locally, so Redis sees one command per lease rather than one per
// request.
//
// # Redis down is not an outage
//
// Every command runs under the configured decision timeout (redis.timeout).
// The first command that fails or overruns it marks the store down: the
// change is logged once, counted in Errors, and from then on Up reports
// false, so callers decide locally without waiting on Redis at all. A
// prober pings Redis in the background and marks the store up again when a
// round trip fits in the decision timeout, logging that change once too.
package redisstore
