package proxy

import (
	"net/http"

	"sluice/monitor"
)

// recordFailure adds a failed request to its route's and upstream's error
// rings; successes return at the first test, so they cost one comparison.
func recordFailure(rt *Route, tg *Target, st *reqState) {
	kind := failureKind(st)
	if kind == "" {
		return
	}
	e := monitor.ErrorEntry{Target: tg.URL.Host, Status: st.status, Kind: kind}
	switch {
	case kind == "5xx":
		e.Status, e.Detail = st.upstream, "upstream answered "+http.StatusText(st.upstream)
	case st.aborted:
		e.Status, e.Detail = st.upstream, "the response broke off mid-body"
	default:
		e.Detail = st.err.Error()
	}
	rt.errs.Add(e)
	rt.up.errs.Add(e)
}

// RecentErrors returns the route's recent upstream failures newest first,
// and whether older ones were dropped.
func (rt *Route) RecentErrors() ([]monitor.ErrorEntry, bool) { return rt.errs.Recent() }

// RecentErrors returns the upstream's recent failures newest first, and
// whether older ones were dropped.
func (u *Upstream) RecentErrors() ([]monitor.ErrorEntry, bool) { return u.errs.Recent() }
