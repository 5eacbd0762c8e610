package admin

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"sluice/config"
	"sluice/proxy"
)

// maxFaultBody bounds a POST /api/v1/routes/{name}/fault body; a fault
// block is a few hundred bytes.
const maxFaultBody = 64 << 10

// viewOf is a fault block as JSON with the YAML field names and Go
// duration strings, as POST takes it; nil without one.
func viewOf(f *config.Fault) map[string]any {
	if f == nil {
		return nil
	}
	m, err := config.Plain(f)
	if err != nil {
		return nil // a config value always marshals
	}
	return m
}

// faultSummary is the fault that applies to a route now, in the route
// summary and detail (field "fault", omitted when none) for the dashboard.
type faultSummary struct {
	Source string      `json:"source"` // "config", or "runtime" for a toggle of the admin API
	Kinds  []faultKind `json:"kinds"`
	Header string      `json:"header,omitempty"` // only requests carrying it are faulted
	Until  int64       `json:"until,omitempty"`  // Unix ms when a runtime fault ends
}

type faultKind struct {
	Kind    string  `json:"kind"` // delay, abort, body_rate, reset
	Percent float64 `json:"percent"`
}

func summaryOf(f *config.Fault) []faultKind {
	ks := []faultKind{}
	if f.Delay != nil {
		ks = append(ks, faultKind{"delay", f.Delay.Percent})
	}
	if f.Abort != nil {
		ks = append(ks, faultKind{"abort", f.Abort.Percent})
	}
	if f.BodyRate > 0 {
		ks = append(ks, faultKind{"body_rate", 100})
	}
	if f.Reset != nil {
		ks = append(ks, faultKind{"reset", f.Reset.Percent})
	}
	return ks
}

// activeFault summarises the fault of rt at now, nil when none applies.
// A runtime fault replaces the configured one while it lasts.
func activeFault(rt *proxy.Route, now time.Time) *faultSummary {
	fs, ok := rt.Fault(now)
	switch {
	case !ok:
		return nil
	case fs.Runtime != nil:
		return &faultSummary{Source: "runtime", Kinds: summaryOf(fs.Runtime), Header: fs.Runtime.Header, Until: fs.Until.UnixMilli()}
	default:
		return &faultSummary{Source: "config", Kinds: summaryOf(fs.Configured), Header: fs.Configured.Header}
	}
}

// faultState is the answer of GET, POST and DELETE /api/v1/routes/{name}/fault.
type faultState struct {
	Route      string         `json:"route"`
	Active     *faultSummary  `json:"active"`     // null: no fault applies
	Configured map[string]any `json:"configured"` // the route's fault block; null without one
	Runtime    map[string]any `json:"runtime"`    // the admin API's fault; null without one
	Until      int64          `json:"until"`      // Unix ms when Runtime ends; 0 without one
}

func (s *Server) faultAPI() {
	s.mux.Handle("GET /api/v1/routes/{name}/fault", s.authed(http.HandlerFunc(s.getFault)))
	s.mux.Handle("POST /api/v1/routes/{name}/fault", s.authed(http.HandlerFunc(s.postFault)))
	s.mux.Handle("DELETE /api/v1/routes/{name}/fault", s.authed(http.HandlerFunc(s.deleteFault)))
}

func (s *Server) writeFault(w http.ResponseWriter, name string) {
	for _, rt := range s.o.Proxy.Routes() {
		if rt.Name() != name {
			continue
		}
		now := s.o.Clock.Now()
		fs, _ := rt.Fault(now)
		out := faultState{Route: name, Active: activeFault(rt, now), Configured: viewOf(fs.Configured), Runtime: viewOf(fs.Runtime)}
		if fs.Runtime != nil {
			out.Until = fs.Until.UnixMilli()
		}
		writeJSON(w, out)
		return
	}
	writeProblem(w, http.StatusNotFound, "no route named "+strconv.Quote(name))
}

func (s *Server) getFault(w http.ResponseWriter, r *http.Request) {
	s.writeFault(w, r.PathValue("name"))
}

// postFault turns a fault on for the body's duration, without a reload.
// It ends by itself: the proxy drops it on the first request after.
func (s *Server) postFault(w http.ResponseWriter, r *http.Request) {
	if s.findRoute(w, r) == nil {
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFaultBody))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "the body could not be read (at most 64 KiB)")
		return
	}
	f, d, err := config.ParseFaultToggle("body", data)
	if err != nil {
		// Config errors are written for the user: positions in the body
		// and the rule broken, never internal state.
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := s.o.Proxy.SetFault(r.PathValue("name"), *f, d); err != nil {
		s.faultErr(w, r, err)
		return
	}
	s.writeFault(w, r.PathValue("name"))
}

func (s *Server) deleteFault(w http.ResponseWriter, r *http.Request) {
	if err := s.o.Proxy.ClearFault(r.PathValue("name")); err != nil {
		s.faultErr(w, r, err)
		return
	}
	s.writeFault(w, r.PathValue("name"))
}

func (s *Server) faultErr(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, proxy.ErrNoRoute) {
		writeProblem(w, http.StatusNotFound, "no route named "+strconv.Quote(r.PathValue("name")))
		return
	}
	writeProblem(w, http.StatusInternalServerError, "the fault could not be changed")
}
