package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"sluice/admission"
)

type ctxKey struct{}

// TestRouteCtx: Deadline and Err answer without making a real context;
// Done makes one, which ends at the deadline or with the client; children
// follow it; release ends it.
func TestRouteCtx(t *testing.T) {
	client, cancelClient := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	defer cancelClient()

	none := routeCtx{client: client}
	if _, ok := none.Deadline(); ok || none.Err() != nil || none.Done() != client.Done() || none.cancel != nil {
		t.Error("no route timeout: want the client's context itself")
	}

	past := routeCtx{client: client, deadline: time.Now().Add(-time.Millisecond)}
	if d, ok := past.Deadline(); !ok || !d.Equal(past.deadline) {
		t.Errorf("Deadline %v %v, want the route's", d, ok)
	}
	if err := past.Err(); err != context.DeadlineExceeded || past.ctx != nil {
		t.Errorf("past deadline: Err %v, real context made %v; want DeadlineExceeded, none", err, past.ctx != nil)
	}
	child, stop := context.WithCancel(&past)
	defer stop()
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a child of a context past its deadline did not end")
	}
	if past.Value(ctxKey{}) != "v" || child.Value(ctxKey{}) != "v" {
		t.Error("the client's values are lost")
	}
	past.release()

	future := routeCtx{client: client, deadline: time.Now().Add(time.Hour)}
	if future.Err() != nil || future.Value(ctxKey{}) != "v" {
		t.Error("future deadline: Err or Value wrong before a real context")
	}
	done := future.Done()
	real := future.real()
	cancelClient()
	<-done
	if !errors.Is(future.Err(), context.Canceled) {
		t.Errorf("client gone: Err %v, want Canceled", future.Err())
	}
	future.release()
	if real.Err() == nil {
		t.Error("release left the real context running")
	}

	gone := routeCtx{client: client, deadline: time.Now().Add(time.Hour)}
	if !errors.Is(gone.Err(), context.Canceled) {
		t.Errorf("client gone before a real context: Err %v, want Canceled", gone.Err())
	}
}

// TestRouteDeadlineEndsQueueWait: a request queued behind a held slot is
// refused (503, queue_timeout) when its route deadline passes, long before
// the queue's own max_wait: the wait is the first use of the deadline as a
// context.
func TestRouteDeadlineEndsQueueWait(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	p := startProxy(t, fmt.Sprintf(`
upstreams: [{name: u, targets: ["%s"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, timeout: 100ms, bulkhead: {max_concurrent: 1}, queue: {max_depth: 1, max_wait: 10m}}]
`, up.URL))
	adm := p.Routes()[0].Admission()
	held, ok := adm.Bulkhead().TryAcquire() // the only slot, held past the deadline
	if !ok {
		t.Fatal("no free slot")
	}
	// Without the deadline the request would wait max_wait (10 minutes);
	// the client gives up long before that.
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(p.URL + "/queued")
	held.Release()
	if err != nil {
		t.Fatalf("queued request: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("queued past the route deadline: %d, Retry-After %q; want 503 with one", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := adm.Rejected(admission.QueueTimeout); n != 1 {
		t.Errorf("queue_timeout count %d, want 1", n)
	}
	if resp, _ := get(t, p.URL+"/next"); resp.StatusCode != 200 {
		t.Errorf("after the slot was given back: %d, want 200", resp.StatusCode)
	}
}
