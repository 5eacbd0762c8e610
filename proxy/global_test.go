package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/testutil"
)

// globalYAML is a route limited globally, shared by replicas through the
// Redis at addr. The decision timeout is generous: these tests check the
// shared bound, which a slow -race run must not turn into a fallback.
func globalYAML(upstream, addr string, rps float64, burst int, extra string) string {
	return fmt.Sprintf(`
redis:
  addrs: [%q]
  timeout: 200ms
upstreams:
  - name: api
    targets: [%q]
routes:
  - name: api
    match: {path_prefix: /}
    upstream: api
    rate_limit: {rps: %v, burst: %d, scope: global%s}
`, addr, upstream, rps, burst, extra)
}

// replicas starts n proxies on one config, as n replicas of a Deployment.
func replicas(t *testing.T, n int, yaml string) []*testProxy {
	ps := make([]*testProxy, n)
	for i := range ps {
		ps[i] = startProxy(t, yaml)
	}
	return ps
}

// rlCount counts a load's rlCount; every request must be answered exactly once.
type rlCount struct {
	sent, ok, limited, other, errs atomic.Int64
	mu                             sync.Mutex
	bad                            []string
}

func (c *rlCount) note(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bad) < 10 {
		c.bad = append(c.bad, fmt.Sprintf(format, args...))
	}
}

// load sends requests from workers goroutines per replica until stop is
// closed, and checks each answer: 200, or 429 with the rate-limit headers.
func load(t *testing.T, ps []*testProxy, workers int, stop <-chan struct{}, c *rlCount) *sync.WaitGroup {
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	t.Cleanup(client.CloseIdleConnections)
	for _, p := range ps {
		for range workers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					c.sent.Add(1)
					resp, err := client.Get(p.URL + "/x")
					if err != nil {
						c.errs.Add(1)
						c.note("request error: %v", err)
						continue
					}
					resp.Body.Close()
					switch resp.StatusCode {
					case 200:
						c.ok.Add(1)
					case 429:
						c.limited.Add(1)
						if resp.Header.Get("Retry-After") == "" || resp.Header.Get("Sluice-Reject") != "rate_limited" ||
							resp.Header.Get("Ratelimit") == "" || resp.Header.Get("Ratelimit-Policy") == "" {
							c.note("429 without its headers: %v", resp.Header)
						}
					default:
						c.other.Add(1)
						c.note("status %d", resp.StatusCode)
					}
				}
			})
		}
	}
	return &wg
}

func (c *rlCount) check(t *testing.T) {
	t.Helper()
	if got := c.ok.Load() + c.limited.Load() + c.other.Load() + c.errs.Load(); got != c.sent.Load() {
		t.Errorf("%d requests sent, %d answered", c.sent.Load(), got)
	}
	if c.errs.Load() > 0 || c.other.Load() > 0 || len(c.bad) > 0 {
		t.Errorf("%d errors, %d other statuses: %s", c.errs.Load(), c.other.Load(), strings.Join(c.bad, "; "))
	}
}

// TestGlobalLimitAcrossReplicas: three replicas under concurrent load admit
// together no more than one bucket allows, rps × t + burst plus the
// documented lease tolerance (3 replicas × 1.5 × a lease of 1 here), and
// at least most of it.
func TestGlobalLimitAcrossReplicas(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	up := echoUpstream(t, "u")
	const rps, burst = 40, 8
	ps := replicas(t, 3, globalYAML(up.URL, r.Addr, rps, burst, ", replicas: 3"))
	var c rlCount
	stop := make(chan struct{})
	start := time.Now()
	wg := load(t, ps, 4, stop, &c)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	el := time.Since(start).Seconds()
	c.check(t)
	bound := rps*el + burst + 3*1.5*1
	if got := float64(c.ok.Load()); got > bound || got < 0.6*rps*el {
		t.Errorf("3 replicas admitted %v in %.2fs; want at most %.1f (rps × t + burst + tolerance) and most of it", got, el, bound)
	}
	if c.limited.Load() == 0 {
		t.Error("no request was refused: the load did not exceed the limit")
	}
	var cmds uint64
	for _, p := range ps {
		if !p.Store().Up() {
			t.Errorf("a replica's store is down: %s", p.Store().LastError())
		}
		cmds += p.Store().Commands()
	}
	t.Logf("admitted %d, refused %d in %.2fs; %d Redis commands for %d requests", c.ok.Load(), c.limited.Load(), el, cmds, c.sent.Load())
	if cmds >= uint64(c.sent.Load()) {
		t.Errorf("%d Redis commands for %d requests: refusals of an empty bucket must not each ask Redis", cmds, c.sent.Load())
	}
}

// TestGlobalRetryAfter: a request admitted by one replica empties the
// shared bucket for the others, which refuse with the shared bucket's own
// Retry-After, 2s at 0.5 rps, where a local bucket would have admitted.
func TestGlobalRetryAfter(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	up := echoUpstream(t, "u")
	ps := replicas(t, 3, globalYAML(up.URL, r.Addr, 0.5, 1, ""))
	if resp, _ := get(t, ps[0].URL+"/x"); resp.StatusCode != 200 || resp.Header.Get("Ratelimit") != `"api";r=0;t=2` {
		t.Fatalf("first request: %d %q", resp.StatusCode, resp.Header.Get("Ratelimit"))
	}
	for _, p := range ps[1:] {
		resp, _ := get(t, p.URL+"/x")
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" || resp.Header.Get("Ratelimit") != `"api";r=0;t=2` ||
			resp.Header.Get("Ratelimit-Policy") != `"api";q=1;w=2` {
			t.Errorf("another replica answered %d Retry-After %q RateLimit %q Policy %q; want 429, 2, r=0;t=2, q=1;w=2",
				resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Ratelimit"), resp.Header.Get("Ratelimit-Policy"))
		}
	}
}

// TestGlobalKeyed: with key header:X-Tenant each tenant has one shared
// bucket: a tenant's request at one replica spends its bucket at all, and
// another tenant is untouched.
func TestGlobalKeyed(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	up := echoUpstream(t, "u")
	ps := replicas(t, 2, globalYAML(up.URL, r.Addr, 0.5, 1, ", key: header:X-Tenant"))
	send := func(p *testProxy, tenant string) int {
		req, _ := http.NewRequest("GET", p.URL+"/x", nil)
		req.Header.Set("X-Tenant", tenant)
		resp, _ := do(t, req)
		return resp.StatusCode
	}
	if got := [4]int{send(ps[0], "a"), send(ps[1], "a"), send(ps[1], "b"), send(ps[0], "b")}; got != [4]int{200, 429, 200, 429} {
		t.Fatalf("statuses %v, want [200 429 200 429]", got)
	}
	if got := r.Do("EXISTS", "sluice:rl:api:a", "sluice:rl:api:b"); got != ":2" {
		t.Fatalf("EXISTS of both tenants' buckets = %s", got)
	}

	// key client_ip: one bucket per client address, shared the same way.
	r.Do("FLUSHALL")
	byIP := replicas(t, 2, globalYAML(up.URL, r.Addr, 0.5, 1, ", key: client_ip"))
	first, _ := get(t, byIP[0].URL+"/x")
	second, _ := get(t, byIP[1].URL+"/x")
	if first.StatusCode != 200 || second.StatusCode != 429 || second.Header.Get("Retry-After") != "2" {
		t.Fatalf("client_ip: %d then %d (Retry-After %q), want 200 then 429 with 2", first.StatusCode, second.StatusCode, second.Header.Get("Retry-After"))
	}
	if got := r.Do("EXISTS", "sluice:rl:api:127.0.0.1"); got != ":1" {
		t.Fatalf("EXISTS of the client's bucket = %s", got)
	}
}

// TestGlobalRedisKilled kills Redis under load: no request is lost or
// fails, every refusal keeps its headers, each replica falls back to its
// share (rps ÷ replicas) and says so, and global limiting resumes by
// itself when Redis is back.
func TestGlobalRedisKilled(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	up := echoUpstream(t, "u")
	const rps, burst = 60, 6
	ps := replicas(t, 3, globalYAML(up.URL, r.Addr, rps, burst, ", replicas: 3"))
	phase := func(d time.Duration) (admitted int64, secs float64) {
		var c rlCount
		stop := make(chan struct{})
		start := time.Now()
		wg := load(t, ps, 3, stop, &c)
		time.Sleep(d)
		close(stop)
		wg.Wait()
		c.check(t)
		return c.ok.Load(), time.Since(start).Seconds()
	}
	phase(500 * time.Millisecond)
	r.Kill()
	n, el := phase(1500 * time.Millisecond)
	for i, p := range ps {
		if p.Store().Up() {
			t.Errorf("replica %d: store up with Redis killed", i)
		}
	}
	// Each replica alone: 20/s with a burst of 2, plus leased tokens left.
	if bound := rps*el + 3*2 + burst; float64(n) > bound || float64(n) < 0.5*rps*el {
		t.Errorf("with Redis down 3 replicas admitted %d in %.2fs; want their shares, at most %.0f", n, el, bound)
	}
	r.Start()
	for i, p := range ps {
		testutil.WaitFor(t, fmt.Sprintf("replica %d store up", i), p.Store().Up)
	}
	r.Do("FLUSHALL")
	n, el = phase(1500 * time.Millisecond)
	if bound := rps*el + burst + 3*1.5; float64(n) > bound {
		t.Errorf("after Redis came back 3 replicas admitted %d in %.2fs; want at most %.1f", n, el, bound)
	}
	if got := r.Do("EXISTS", "sluice:rl:api:"); got != ":1" {
		t.Errorf("the shared bucket is not in use again: EXISTS = %s", got)
	}
}

// TestGlobalRedisSilent: Redis stops answering mid-load without closing a
// connection. Requests are decided within the decision timeout (no request
// waits for a socket timeout), nothing is lost, and limiting goes on
// locally until Redis rlCount again.
func TestGlobalRedisSilent(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	f := testutil.StartFreezer(t, r.Addr)
	up := echoUpstream(t, "u")
	yaml := strings.Replace(globalYAML(up.URL, f.Addr, 1000, 10, ", replicas: 3"), "timeout: 200ms", "timeout: 20ms", 1)
	ps := replicas(t, 3, yaml)
	var c rlCount
	var worst atomic.Int64
	stop := make(chan struct{})
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				c.sent.Add(1)
				resp, err := client.Get(p.URL + "/x")
				if err != nil {
					c.errs.Add(1)
					c.note("%v", err)
					continue
				}
				resp.Body.Close()
				if el := int64(time.Since(start)); el > worst.Load() {
					worst.Store(el)
				}
				switch resp.StatusCode {
				case 200:
					c.ok.Add(1)
				case 429:
					c.limited.Add(1)
				default:
					c.other.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	f.Freeze()
	time.Sleep(time.Second)
	for i, p := range ps {
		if p.Store().Up() {
			t.Errorf("replica %d: store up with Redis silent", i)
		}
	}
	close(stop)
	wg.Wait()
	c.check(t)
	// go-redis's socket timeouts are 1s: a request that waited for one
	// instead of the 20ms decision budget would show here.
	if w := time.Duration(worst.Load()); w > 800*time.Millisecond {
		t.Errorf("slowest request took %v with Redis silent; the decision timeout is 20ms", w)
	}
	f.Thaw()
	for i, p := range ps {
		testutil.WaitFor(t, fmt.Sprintf("replica %d store up", i), p.Store().Up)
	}
}

// TestGlobalOnCluster: with several addrs the store is a Redis Cluster
// client; buckets of different keys land on different nodes, and the
// shared bound and shared breakers hold as on one server.
func TestGlobalOnCluster(t *testing.T) {
	c := testutil.StartRedisCluster(t, 3)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	t.Cleanup(failing.Close)
	up := echoUpstream(t, "u")
	yaml := func(target string) string {
		return fmt.Sprintf(`
redis: {addrs: [%q, %q, %q], timeout: 200ms}
upstreams:
  - {name: api, targets: [%q]}
  - {name: flaky, targets: [%q], breaker: {consecutive_failures: 1, open_timeout: 30s, shared: true}}
routes:
  - {name: api, match: {path_prefix: /api}, upstream: api, rate_limit: {rps: 0.5, burst: 1, scope: global, key: "header:X-Tenant"}}
  - {name: flaky, match: {path_prefix: /flaky}, upstream: flaky}
`, c.Nodes[0].Addr, c.Nodes[1].Addr, c.Nodes[2].Addr, up.URL, target)
	}
	a, b := startProxy(t, yaml(failing.URL)), startProxy(t, yaml(up.URL))
	send := func(p *testProxy, tenant string) int {
		req, _ := http.NewRequest("GET", p.URL+"/api", nil)
		req.Header.Set("X-Tenant", tenant)
		resp, _ := do(t, req)
		return resp.StatusCode
	}
	tenants := []string{"t1", "t2", "t3", "t4", "t5", "t6"}
	for _, tn := range tenants {
		if got := [2]int{send(a, tn), send(b, tn)}; got != [2]int{200, 429} {
			t.Fatalf("tenant %s: %v, want [200 429]: one bucket per tenant across replicas", tn, got)
		}
	}
	nodes := map[string]bool{}
	for _, tn := range tenants {
		for _, n := range c.Nodes {
			if n.Do("EXISTS", "sluice:rl:api:"+tn) == ":1" {
				nodes[n.Addr] = true
			}
		}
	}
	if len(nodes) < 2 {
		t.Errorf("six tenants' buckets all on %v: the cluster client should spread keys over the nodes", nodes)
	}
	testutil.WaitFor(t, "b's trip watcher subscribed", func() bool {
		for _, n := range c.Nodes {
			if n.Do("PUBSUB", "NUMSUB", "sluice:breaker") != "sluice:breaker :0" {
				return true
			}
		}
		return false
	})
	get(t, a.URL+"/flaky")
	testutil.WaitFor(t, "b's shared breaker open", func() bool { return b.tab.Load().upstream("flaky").br.OpenFor() > 0 })
}
