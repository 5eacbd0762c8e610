package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"sluice/admission"
	"sluice/bulkhead"
)

// TestPriorityClassesEndToEnd: with one slot held and a queue of 4, two
// sheddable requests fill the queue to 50 %, so a third sheddable one is
// refused at once while a critical one still queues, and the released slot
// goes to the critical request first, though it arrived last.
func TestPriorityClassesEndToEnd(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var order []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
		mu.Lock()
		order = append(order, r.Header.Get("X-Priority")+r.URL.Path)
		mu.Unlock()
	}))
	defer up.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - name: r
    match: {path_prefix: /}
    upstream: u
    bulkhead: {max_concurrent: 1}
    queue: {max_depth: 4, max_wait: 1m}
    priority: {class: default, header: X-Priority}
`, up.URL))
	adm := p.Routes()[0].Admission()
	send := func(path, class string) <-chan int {
		out := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest("GET", p.URL+path, nil)
			req.Header.Set("X-Priority", class)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				out <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			out <- resp.StatusCode
		}()
		return out
	}
	hold := send("/hold", "default")
	waitUntil(t, "slot held", func() bool { return adm.Inflight() == 1 })
	s1 := send("/s1", "sheddable")
	waitUntil(t, "s1 queued", func() bool { return adm.QueueDepth() == 1 })
	s2 := send("/s2", "sheddable")
	waitUntil(t, "s2 queued", func() bool { return adm.QueueDepth() == 2 })
	if got := <-send("/s3", "sheddable"); got != 503 {
		t.Errorf("sheddable at 50%% queue usage: %d, want 503 queue_full at once", got)
	}
	crit := send("/c1", "critical")
	waitUntil(t, "critical queued", func() bool { return adm.QueueDepth() == 3 })
	close(release)
	for _, ch := range []<-chan int{hold, s1, s2, crit} {
		if got := <-ch; got != 200 {
			t.Errorf("queued request answered %d", got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 4 || order[1] != "critical/c1" {
		t.Errorf("served in order %v: the critical request must be served first after the held one", order)
	}
	if n := adm.RejectedClass(bulkhead.ClassSheddable, admission.QueueFull); n != 1 {
		t.Errorf("sheddable queue_full %d, want 1", n)
	}
	if n := adm.AdmittedClass(bulkhead.ClassCritical); n != 1 {
		t.Errorf("critical admitted %d, want 1", n)
	}
}

// TestAdaptiveLimitBacksOffOnOverload: an upstream answering 503 drives an
// AIMD limit down to its minimum, and the bulkhead and metrics follow it.
func TestAdaptiveLimitBacksOffOnOverload(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer up.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes:
  - {name: r, match: {path_prefix: /}, upstream: u, bulkhead: {max_concurrent: 20, adaptive: {algorithm: aimd, min: 2, max: 40}}}
`, up.URL))
	for i := 0; i < 60; i++ {
		get(t, p.URL+"/")
	}
	// The algorithm's own path down (probes included) is adaptive's unit
	// tests' business; here: the overload answers reached the limiter, it
	// backed off well below its start, and the bulkhead and the metrics
	// follow its limit.
	adm := p.Routes()[0].Admission()
	lim := adm.Adaptive().Limit()
	if lim > 4 {
		t.Errorf("adaptive limit %d after 60 overload answers, want it backed off from 20 to at most 4", lim)
	}
	if got := adm.Bulkhead().Limit(); got != lim {
		t.Errorf("bulkhead limit %d, want the adaptive limit %d", got, lim)
	}
	if got := gather(t, p.Proxy)["sluice_concurrency_limit"]["route=r"]; got != float64(lim) {
		t.Errorf("sluice_concurrency_limit %v, want %d", got, lim)
	}
	if got := gather(t, p.Proxy)["sluice_bulkhead_capacity"]["route=r"]; got != float64(lim) {
		t.Errorf("sluice_bulkhead_capacity %v, want the current limit %d", got, lim)
	}
}
