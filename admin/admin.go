// Package admin serves sluice's admin listener: liveness and readiness now,
// metrics, the monitoring API and the dashboard as they arrive. It is never
// mounted on the proxy listener.
package admin

import (
	"net/http"
)

// Options are what the admin handler needs from the running process.
type Options struct {
	// Ready reports whether the proxy is serving (false while draining).
	// If nil, the process is always ready.
	Ready func() bool
}

// Handler returns the admin listener's handler.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// Alive: the process answers. Load balancers use /readyz to decide traffic.
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if o.Ready != nil && !o.Ready() {
			writeText(w, http.StatusServiceUnavailable, "draining\n")
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	})
	return mux
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
