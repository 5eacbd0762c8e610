// Package demo provides what `sluice demo` needs to run with no files: an
// embedded config, three synthetic upstreams on loopback, and an open-loop
// load (load.go) that pushes them past what they can take.
package demo

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

//go:embed demo.yaml
var configTemplate string

// Backends are the running synthetic upstreams.
type Backends struct {
	API, Slow, Flaky string // base URLs
	servers          []*http.Server
}

// Config returns the demo config with the backends' addresses filled in.
func (b *Backends) Config() []byte {
	r := strings.NewReplacer("${API}", b.API, "${SLOW}", b.Slow, "${FLAKY}", b.Flaky)
	return []byte(r.Replace(configTemplate))
}

// Close stops the backends.
func (b *Backends) Close() {
	for _, s := range b.servers {
		s.Close()
	}
}

// The synthetic upstreams' shapes; demo.yaml and ShowcaseLoad are tuned to them.
const (
	slowConcurrency = 8                      // the slow upstream serves this many at once ...
	slowService     = 100 * time.Millisecond // ... for this long each: 80 req/s
	flakyPeriod     = 20 * time.Second       // the flaky upstream fails ...
	flakyDown       = 6 * time.Second        // ... for the last 6 s of every 20 s
)

// SlowCapacity is what the slow upstream serves a second.
func SlowCapacity() float64 { return slowConcurrency / slowService.Seconds() }

// Start runs the three synthetic upstreams on 127.0.0.1 with free ports:
//   - api answers in about 2 ms, and streams server-sent events at /api/events;
//   - slow serves 8 requests at a time for 100 ms each (80 req/s); more wait
//     inside it, as a real saturated service's own queue would;
//   - flaky answers 503 for 6 s out of every 20 s (from 14 s after start),
//     to trip a breaker.
func Start(ctx context.Context) (*Backends, error) {
	b := &Backends{}
	var err error
	if b.API, err = b.serve(apiHandler()); err != nil {
		return nil, err
	}
	if b.Slow, err = b.serve(slowHandler(slowConcurrency, slowService)); err != nil {
		b.Close()
		return nil, err
	}
	if b.Flaky, err = b.serve(flakyHandler(time.Now(), flakyPeriod, flakyDown)); err != nil {
		b.Close()
		return nil, err
	}
	go func() { <-ctx.Done(); b.Close() }()
	return b, nil
}

// ShowcaseLoad is the load of `sluice demo -load` against the demo proxy
// at base, for d:
//   - /slow/work ramps from half the slow upstream's capacity to three
//     times it over the first 40% of d, holds there for 20%, and ramps back
//     down: the route goes amber then red, refuses first with queue_full
//     and then, past the route's rate limit, with rate_limited too, and
//     turns green again at the end;
//   - /flaky/thing gets a steady 20 req/s, so each burst of failures trips
//     the breaker within a fraction of a second and its probes heal it;
//   - /api/hello gets a steady 25 req/s, well inside its limit: the
//     healthy route stays green for contrast.
func ShowcaseLoad(base string, d time.Duration) *Load {
	c := SlowCapacity()
	return &Load{
		Base:     base,
		Duration: d,
		Streams: []Stream{
			{Path: "/slow/work", Rate: Schedule{{0, c / 2}, {d * 4 / 10, 3 * c}, {d * 6 / 10, 3 * c}, {d, c / 2}}},
			{Path: "/flaky/thing", Rate: Constant(20)},
			{Path: "/api/hello", Rate: Constant(25)},
		},
	}
}

func (b *Backends) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo upstream: %w", err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	b.servers = append(b.servers, s)
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(err)
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

func healthz(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiHandler() http.Handler {
	mux := http.NewServeMux()
	healthz(mux)
	mux.HandleFunc("/api/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 1; i <= 5; i++ {
			fmt.Fprintf(w, "id: %d\ndata: {\"tick\":%d,\"time\":%q}\n\n", i, i, time.Now().Format(time.RFC3339Nano))
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Second):
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		writeJSON(w, http.StatusOK, map[string]any{"service": "api", "path": r.URL.Path, "host": r.Host,
			"x_forwarded_for": r.Header.Get("X-Forwarded-For")})
	})
	return mux
}

func slowHandler(capacity int, service time.Duration) http.Handler {
	slots := make(chan struct{}, capacity)
	mux := http.NewServeMux()
	healthz(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		defer func() { <-slots }()
		time.Sleep(service)
		writeJSON(w, http.StatusOK, map[string]any{"service": "slow", "path": r.URL.Path})
	})
	return mux
}

func flakyHandler(start time.Time, period, down time.Duration) http.Handler {
	mux := http.NewServeMux()
	healthz(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if time.Since(start)%period >= period-down {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"service": "flaky", "error": "burst of failures"})
			return
		}
		time.Sleep(5 * time.Millisecond)
		writeJSON(w, http.StatusOK, map[string]any{"service": "flaky", "path": r.URL.Path})
	})
	return mux
}
