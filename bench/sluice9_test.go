package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOpenLoopVariants: requests go out by weight, each with its header,
// and are counted per variant; the window hook runs once.
func TestOpenLoopVariants(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Priority") == "critical" {
			w.Write([]byte("ok"))
			return
		}
		w.WriteHeader(503)
	}))
	defer srv.Close()
	var hooked atomic.Int32
	res, err := runOpen(context.Background(), openLoad{
		Addr: strings.TrimPrefix(srv.URL, "http://"), Path: "/", Rate: 400,
		Warmup: 50 * time.Millisecond, Duration: 250 * time.Millisecond, Timeout: 10 * time.Second, MaxConns: 16,
		Variants: []reqVariant{{Name: "critical", Header: "X-Priority: critical", Weight: 1}, {Name: "sheddable", Header: "X-Priority: sheddable", Weight: 9}},
		OnWindow: func() { hooked.Add(1) },
		TailFrom: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ByClass) != 2 {
		t.Fatalf("by class: %+v", res.ByClass)
	}
	c, s := res.ByClass[0], res.ByClass[1]
	if c.Sent+s.Sent != res.Sent || c.Sent != 10 || s.Sent != 90 {
		t.Errorf("sent %d critical + %d sheddable of %d, want 10 + 90", c.Sent, s.Sent, res.Sent)
	}
	if c.OK != c.Sent || s.Rejected != s.Sent || c.SuccessRate() != 1 || s.SuccessRate() != 0 {
		t.Errorf("by class: %+v", res.ByClass)
	}
	if hooked.Load() != 1 {
		t.Errorf("window hook ran %d times", hooked.Load())
	}
	if len(res.TailOKLat) == 0 || len(res.TailOKLat) >= res.OK || res.TailMeasured != 150*time.Millisecond {
		t.Errorf("tail: %d of %d answers, %v", len(res.TailOKLat), res.OK, res.TailMeasured)
	}
}

// TestUpstreamSlotsLowered: the control endpoint lowers the capacity
// upstream's slots at runtime, the free ones at once: right after it, six
// requests sent together are served one at a time (the upstream's peak of
// requests in service, not a duration, is what is checked).
func TestUpstreamSlotsLowered(t *testing.T) {
	srv := httptest.NewServer(upstreamHandler(2, 20*time.Millisecond, false))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	// burst sends n requests at once and returns the most the upstream
	// had in service at once since the last change of its slots.
	burst := func(n int) string {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				resp, err := http.Get(srv.URL + "/")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		wg.Wait()
		resp, err := http.Get(srv.URL + "/_bench/slots")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	if got := burst(6); got != "peak 1" && got != "peak 2" {
		t.Fatalf("two slots: %q", got)
	}
	if err := setUpstreamSlots(addr, 1); err != nil {
		t.Fatal(err)
	}
	if got := burst(6); got != "peak 1" {
		t.Errorf("six requests at once on one slot: %q, want one in service at a time", got)
	}
	if err := setUpstreamSlots(addr, 2); err == nil {
		t.Error("raising the slots was accepted")
	}
}
