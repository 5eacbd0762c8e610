package admin

import (
	"net/http"
	"strconv"

	"sluice/monitor"
)

// recentErrors is the body of the errors endpoints: newest first;
// Truncated is true when the ring dropped older entries.
type recentErrors struct {
	Errors    []monitor.ErrorEntry `json:"errors"`
	Truncated bool                 `json:"truncated"`
}

// errorsAPI registers the recent-errors endpoints with api, the mux hook
// routesAPI uses for every authenticated GET.
func (s *Server) errorsAPI(api func(string, http.HandlerFunc)) {
	api("/api/v1/routes/{name}/errors", s.routeErrors)
	api("/api/v1/upstreams/{name}/errors", s.upstreamErrors)
}

func (s *Server) routeErrors(w http.ResponseWriter, r *http.Request) {
	rt := s.findRoute(w, r)
	if rt == nil {
		return
	}
	var out recentErrors
	out.Errors, out.Truncated = rt.RecentErrors()
	writeJSON(w, out)
}

func (s *Server) upstreamErrors(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, u := range s.o.Proxy.Upstreams() {
		if u.Name() == name {
			var out recentErrors
			out.Errors, out.Truncated = u.RecentErrors()
			writeJSON(w, out)
			return
		}
	}
	writeProblem(w, http.StatusNotFound, "no upstream named "+strconv.Quote(name))
}
