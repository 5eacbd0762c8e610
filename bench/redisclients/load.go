package main

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// keyCount is how many bucket keys the callers share: a proxy has a few
// hot routes, so many callers hit the same key.
const keyCount = 16

// result is what one timed run measured.
type result struct {
	client   string
	conc     int
	deadline time.Duration // 0: no per-call deadline

	calls, errs, overBudget int64
	elapsed                 time.Duration
	lat                     hist

	mallocs     uint64        // heap allocations in the client process
	cpu         time.Duration // user+system CPU of the client process
	redisCalls  int64         // EVALSHA+EVAL Redis executed
	redisReads  int64         // read syscalls of redis-server
	redisCPU    time.Duration // user+system CPU of redis-server
	netIn       int64         // total_net_input_bytes delta
	instOps     int64         // instantaneous_ops_per_sec near the end
	connsOpened int64         // total_connections_received delta (own INFO reads excluded)
}

func (r *result) throughput() float64 { return float64(r.calls) / r.elapsed.Seconds() }
func (r *result) allocsPerCall() float64 {
	return float64(r.mallocs) / float64(max(r.calls, 1))
}
func (r *result) cpuPer1000() time.Duration {
	return time.Duration(float64(r.cpu) * 1000 / float64(max(r.calls, 1)))
}

type snapshot struct {
	mallocs uint64
	cpu     time.Duration
	info    map[string]string
	reads   int64
}

func takeSnapshot(s *server) (snapshot, error) {
	var sn snapshot
	info, err := s.info("commandstats", "stats", "cpu")
	if err != nil {
		return sn, err
	}
	sn.info = info
	sn.reads = s.readSyscalls()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sn.mallocs = ms.Mallocs
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	sn.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return sn, nil
}

func redisCPU(m map[string]string) time.Duration {
	return time.Duration((floatField(m, "used_cpu_user") + floatField(m, "used_cpu_sys")) * float64(time.Second))
}

// runLoad drives conc callers, each calling take back to back for dur,
// every call with its own context (with a deadline when deadline > 0).
func runLoad(t taker, s *server, conc int, dur, deadline time.Duration) (*result, error) {
	res := &result{client: t.name(), conc: conc, deadline: deadline}
	callers := make([]func(context.Context) (decision, error), conc)
	for i := range callers {
		callers[i] = t.newCaller("bench:{route" + strconv.Itoa(i%keyCount) + "}")
	}
	// Warm up: connections dialled, script cached on the server.
	for i := range callers {
		if _, err := callers[i](context.Background()); err != nil {
			return nil, err
		}
	}
	hists := make([]hist, conc)
	counts := make([][3]int64, conc) // calls, errs, overBudget
	var stop atomic.Bool
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range conc {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			call, h, n := callers[i], &hists[i], &counts[i]
			<-start
			for !stop.Load() {
				t0 := time.Now()
				var err error
				if deadline > 0 {
					ctx, cancel := context.WithTimeout(context.Background(), deadline)
					_, err = call(ctx)
					cancel()
				} else {
					_, err = call(context.Background())
				}
				d := time.Since(t0)
				h.record(d)
				n[0]++
				if err != nil {
					n[1]++
				}
				if deadline > 0 && (d > deadline || errors.Is(err, context.DeadlineExceeded)) {
					n[2]++
				}
			}
		}(i)
	}
	runtime.GC()
	before, err := takeSnapshot(s)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	close(start)
	time.Sleep(dur)
	near, _ := s.info("stats")
	stop.Store(true)
	wg.Wait()
	res.elapsed = time.Since(t0)
	after, err := takeSnapshot(s)
	if err != nil {
		return nil, err
	}
	for i := range conc {
		res.lat.merge(&hists[i])
		res.calls += counts[i][0]
		res.errs += counts[i][1]
		res.overBudget += counts[i][2]
	}
	res.mallocs = after.mallocs - before.mallocs
	res.cpu = after.cpu - before.cpu
	res.redisCalls = cmdCalls(after.info, "evalsha") + cmdCalls(after.info, "eval") -
		cmdCalls(before.info, "evalsha") - cmdCalls(before.info, "eval")
	res.redisReads = after.reads - before.reads
	res.redisCPU = redisCPU(after.info) - redisCPU(before.info)
	res.netIn = intField(after.info, "total_net_input_bytes") - intField(before.info, "total_net_input_bytes")
	res.instOps = intField(near, "instantaneous_ops_per_sec")
	// The INFO reads themselves open connections: one for the snapshot
	// after, one for the stats near the end, counted once each.
	res.connsOpened = intField(after.info, "total_connections_received") -
		intField(before.info, "total_connections_received") - 2
	return res, nil
}
