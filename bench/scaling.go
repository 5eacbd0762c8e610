package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"sluice/admission"
	"sluice/config"
)

// routingResult is the cost of one lookup at one table size.
type routingResult struct {
	Routes  int
	IndexNS float64 // median ns/op of the index, requests spread over the table
	HotNS   float64 // the same with traffic on 10 routes (10 000 only; 0 otherwise)
	ScanNS  float64 // median ns/op of the linear scan it replaced
}

// runRouting runs the routing package's BenchmarkRouting (count times) and
// takes the median of each figure. The benchmark lives with the code it
// measures, so `go test -bench BenchmarkRouting ./proxy/internal/routing`
// gives the same numbers.
func runRouting(root string, count int, benchtime string) ([]routingResult, string, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkRouting$", "-benchmem",
		"-benchtime", benchtime, "-count", strconv.Itoa(count), "./proxy/internal/routing/")
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, string(out), fmt.Errorf("go test -bench BenchmarkRouting: %w", err)
	}
	samples := map[string][]float64{} // "index/routes=10" → ns/op
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkRouting/") || f[3] != "ns/op" {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkRouting/")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // the GOMAXPROCS suffix
		}
		v, err := strconv.ParseFloat(f[2], 64)
		if err == nil {
			samples[name] = append(samples[name], v)
		}
	}
	var res []routingResult
	for _, n := range []int{10, 1000, 10000} {
		ix, sc := samples[fmt.Sprintf("index/routes=%d", n)], samples[fmt.Sprintf("scan/routes=%d", n)]
		if len(ix) == 0 || len(sc) == 0 {
			return nil, string(out), fmt.Errorf("BenchmarkRouting: no figures for %d routes", n)
		}
		rr := routingResult{Routes: n, IndexNS: median(ix), ScanNS: median(sc)}
		if hot := samples[fmt.Sprintf("index-hot10/routes=%d", n)]; len(hot) > 0 {
			rr.HotNS = median(hot)
		}
		res = append(res, rr)
	}
	return res, string(out), nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// keysResult is the memory of a keyed rate limiter after a flood of
// distinct keys.
type keysResult struct {
	MaxKeys   int
	Sent      int     // distinct keys sent
	Held      int     // buckets held afterwards
	HeapDelta int64   // live heap after minus before, bytes
	PerKey    float64 // HeapDelta / Held
	NSPerReq  float64 // time per Allow with a new key
}

// runKeys sends n distinct header keys through a header-keyed rate limiter
// bounded by maxKeys, in this process, and measures the live heap before
// and after (after a GC each time).
func runKeys(n, maxKeys int) keysResult {
	rl := admission.NewRateLimiter(config.RateLimit{RPS: 100, Burst: 100, Key: "header:X-Key", MaxKeys: maxKeys})
	req, _ := http.NewRequest("GET", "http://bench.local/", nil)
	before := liveHeap()
	now := time.Now()
	start := time.Now()
	var kb []byte
	for i := 0; i < n; i++ {
		kb = strconv.AppendInt(append(kb[:0], "client-"...), int64(i), 10)
		req.Header["X-Key"] = []string{string(kb)}
		rl.Allow(req, now)
	}
	took := time.Since(start)
	after := liveHeap()
	r := keysResult{MaxKeys: maxKeys, Sent: n, Held: rl.Keys(), HeapDelta: after - before}
	r.PerKey = float64(r.HeapDelta) / float64(max(1, r.Held))
	r.NSPerReq = float64(took.Nanoseconds()) / float64(n)
	runtime.KeepAlive(rl)
	return r
}

func liveHeap() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
