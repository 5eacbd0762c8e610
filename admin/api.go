package admin

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"sluice/admission"
	"sluice/breaker"
	"sluice/bulkhead"
	"sluice/monitor"
	"sluice/overload"
	"sluice/proxy"
)

// The JSON shapes of the monitoring API (docs/SPEC.md, "Reporting"). Field names
// are snake_case; times are Unix milliseconds; durations are milliseconds
// in fields whose names end in _ms.

type overview struct {
	Version       string         `json:"version"`
	StartTime     int64          `json:"start_time"`
	UptimeMs      int64          `json:"uptime_ms"`
	Timestamp     int64          `json:"timestamp"`
	Routes        int            `json:"routes"`
	Upstreams     int            `json:"upstreams"`
	RequestsTotal uint64         `json:"requests_total"`
	AdmittedTotal uint64         `json:"admitted_total"`
	RejectedTotal uint64         `json:"rejected_total"`
	RoutesByLevel map[string]int `json:"routes_by_level"`
	// Overload is the process-level overload manager's state.
	Overload overloadInfo `json:"overload"`
}

// overloadInfo is the overload manager's state: its limits, what they
// count now, and what it refused.
type overloadInfo struct {
	// State is "shedding" while the manager refuses new work (heap over
	// the memory limit, or the detector shedding a class), else "normal".
	State string `json:"state"`
	// Shedding lists the classes the saturation detector refuses now.
	Shedding          []string `json:"shedding"`
	Saturated         bool     `json:"saturated"` // the last sample's p99 was over the threshold
	SchedLatencyP99Ms float64  `json:"sched_latency_p99_ms"`
	// SchedLatencyLimitMs is the detector's threshold; 0: the detector is off.
	SchedLatencyLimitMs float64 `json:"sched_latency_limit_ms"`
	MemoryOver          bool    `json:"memory_over"`
	HeapBytes           uint64  `json:"heap_bytes"`
	MemoryLimitBytes    int64   `json:"memory_limit_bytes"` // 0: off
	Connections         struct {
		Open    int64  `json:"open"`
		Refused uint64 `json:"refused_total"`
		Max     int64  `json:"max"` // 0: unlimited
		// Parked are refused connections kept open, each request on them
		// answered 503 overloaded; ParkedRefused counts those answers.
		Parked        int64  `json:"parked"`
		ParkedRefused uint64 `json:"parked_refused_total"`
	} `json:"connections"`
	Inflight struct {
		Now int64 `json:"now"`
		Max int64 `json:"max"` // 0: unlimited
	} `json:"inflight"`
	// RefusedTotal counts the requests refused overloaded, by cause:
	// max_inflight and memory at the door (route ""), saturation on the
	// route whose class was shed.
	RefusedTotal map[string]uint64 `json:"refused_total"`
}

func overloadOf(st overload.State) overloadInfo {
	o := overloadInfo{
		State:             "normal",
		Shedding:          st.Shedding.Classes(),
		Saturated:         st.Saturated,
		SchedLatencyP99Ms: ms(st.SchedP99),
		MemoryOver:        st.MemoryOver,
		HeapBytes:         st.HeapBytes,
		MemoryLimitBytes:  st.Limits.MemoryLimit,
		RefusedTotal:      map[string]uint64{},
	}
	if st.Limits.SchedLatency > 0 {
		o.SchedLatencyLimitMs = ms(st.Limits.SchedLatency)
	}
	if st.Overloaded() {
		o.State = "shedding"
	}
	o.Connections.Open, o.Connections.Refused, o.Connections.Max = st.ConnectionsOpen, st.ConnectionsRefused, st.Limits.MaxConnections
	o.Connections.Parked, o.Connections.ParkedRefused = st.ConnectionsParked, st.ParkedRefused
	o.Inflight.Now, o.Inflight.Max = st.Inflight, st.Limits.MaxInflight
	for _, c := range overload.Causes {
		o.RefusedTotal[c.String()] = st.Refused[c]
	}
	return o
}

type routeSummary struct {
	Name              string        `json:"name"`
	Upstream          string        `json:"upstream"`
	Inflight          int64         `json:"inflight"`
	MaxConcurrent     int           `json:"max_concurrent"` // 0: unlimited
	QueueDepth        int           `json:"queue_depth"`
	QueueCapacity     int           `json:"queue_capacity"`
	AdmittedPerSec    float64       `json:"admitted_per_sec"`
	RejectedPerSec    float64       `json:"rejected_per_sec"`
	BackpressureLevel string        `json:"backpressure_level"`
	BackpressureRatio float64       `json:"backpressure_ratio"`
	Fault             *faultSummary `json:"fault,omitempty"` // the fault injected now; omitted when none
	// RecentErrors are the route's last few upstream failures, newest
	// first (all of them at /api/v1/routes/{name}/errors); omitted when
	// there are none.
	RecentErrors []monitor.ErrorEntry `json:"recent_errors,omitempty"`
}

// summaryErrors is how many of a route's recent upstream failures its
// summary carries: enough for the dashboard card, cheap to poll each second.
const summaryErrors = 3

type quantilesMs struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
}

type rateLimitInfo struct {
	RPS   float64 `json:"rps"`
	Burst int     `json:"burst"`
	Key   string  `json:"key"`
	Keys  int     `json:"keys"` // per-key buckets held now
	Scope string  `json:"scope"`
	// Store is the shared store of a global limit; omitted for a local one.
	Store *storeInfo `json:"store,omitempty"`
}

// storeInfo is the state of the Redis a global limit shares its buckets
// through. While it is down the route limits locally, to FallbackRPS and
// FallbackBurst.
type storeInfo struct {
	Up            bool    `json:"up"`
	ErrorsTotal   uint64  `json:"errors_total"`
	LastError     string  `json:"last_error,omitempty"`
	FallbackRPS   float64 `json:"fallback_rps"`
	FallbackBurst int     `json:"fallback_burst"`
}

type routeDetail struct {
	routeSummary
	AdmittedTotal          uint64               `json:"admitted_total"`
	RejectedTotal          map[string]uint64    `json:"rejected_total"`
	RejectedPerSecByReason map[string]float64   `json:"rejected_per_sec_by_reason"`
	RequestsByCode         map[string]uint64    `json:"requests_by_code"`
	LatencyMs              quantilesMs          `json:"latency_ms"`
	QueueWaitMs            quantilesMs          `json:"queue_wait_ms"`
	MeanServiceMs          float64              `json:"mean_service_ms"`
	QueueMaxWaitMs         int64                `json:"queue_max_wait_ms"`
	TimeoutMs              int64                `json:"timeout_ms"`
	RateLimit              *rateLimitInfo       `json:"rate_limit"`
	Backpressure           monitor.Backpressure `json:"backpressure"`
	Breaker                *breakerInfo         `json:"breaker"`
	QueueDiscipline        string               `json:"queue_discipline"`
	Adaptive               *adaptiveInfo        `json:"adaptive"` // null for a fixed limit
	Classes                map[string]classInfo `json:"classes"`  // null without priority classes
}

type adaptiveInfo struct {
	Limit int `json:"limit"` // the current limit, also max_concurrent
}

type classInfo struct {
	Admitted    uint64            `json:"admitted_total"`
	Rejected    map[string]uint64 `json:"rejected_total"`
	QueueDepth  int               `json:"queue_depth"`
	QueueWaitMs quantilesMs       `json:"queue_wait_ms"`
}

type targetInfo struct {
	URL      string `json:"url"`
	Healthy  bool   `json:"healthy"`
	Inflight int64  `json:"inflight"`
}

type breakerInfo struct {
	State       string            `json:"state"`
	OpenUntil   int64             `json:"open_until"` // 0 unless open
	OpenForMs   int64             `json:"open_for_ms"`
	Transitions map[string]uint64 `json:"transitions"`
	Shared      bool              `json:"shared"` // trips are shared with the other replicas
}

type upstreamInfo struct {
	Name           string            `json:"name"`
	Balance        string            `json:"balance"`
	HealthyTargets int               `json:"healthy_targets"`
	Targets        []targetInfo      `json:"targets"`
	Breaker        *breakerInfo      `json:"breaker"` // null without a breaker
	RequestsByCode map[string]uint64 `json:"requests_by_code"`
}

func (s *Server) routesAPI() {
	api := func(pattern string, h http.HandlerFunc) { s.mux.Handle("GET "+pattern, s.authed(h)) }
	api("/api/v1/overview", s.overview)
	api("/api/v1/routes", s.routes)
	api("/api/v1/routes/{name}", s.route)
	api("/api/v1/routes/{name}/backpressure", s.backpressure)
	api("/api/v1/upstreams", s.upstreams)
	api("/api/v1/upstreams/{name}", s.upstream)
	api("/api/v1/config", s.config)
	s.errorsAPI(api)
	api("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "no such API endpoint")
	})
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	now := s.o.Clock.Now()
	p := s.o.Proxy
	o := overview{
		Version:       s.o.Version,
		StartTime:     s.o.Started.UnixMilli(),
		UptimeMs:      now.Sub(s.o.Started).Milliseconds(),
		Timestamp:     now.UnixMilli(),
		Routes:        len(p.Routes()),
		Upstreams:     len(p.Upstreams()),
		RoutesByLevel: map[string]int{"ok": 0, "low": 0, "high": 0},
	}
	for _, rt := range p.Routes() {
		rt.Codes(func(_ int, n uint64) { o.RequestsTotal += n })
		adm := rt.Admission()
		o.AdmittedTotal += adm.Admitted()
		for _, reason := range admission.Rejections {
			o.RejectedTotal += adm.Rejected(reason)
		}
		o.RoutesByLevel[string(s.bp(rt.Name()).Level)]++
	}
	p.UnmatchedCodes(func(_ int, n uint64) { o.RequestsTotal += n })
	o.RejectedTotal += p.DoorRefused()
	o.Overload = overloadOf(p.Overload().State())
	writeJSON(w, o)
}

func (s *Server) bp(name string) monitor.Backpressure {
	if smp := s.o.Proxy.Sampler(); smp != nil {
		if b, ok := smp.Backpressure(name); ok {
			return b
		}
	}
	return monitor.Backpressure{Level: monitor.LevelOK}
}

func (s *Server) summary(rt *proxy.Route) routeSummary {
	adm := rt.Admission()
	bp := s.bp(rt.Name())
	rs := routeSummary{
		Name:              rt.Name(),
		Upstream:          rt.Upstream().Name(),
		Inflight:          adm.Inflight(),
		QueueDepth:        adm.QueueDepth(),
		BackpressureLevel: string(bp.Level),
		BackpressureRatio: bp.Ratio,
		Fault:             activeFault(rt, s.o.Clock.Now()),
	}
	if errs, _ := rt.RecentErrors(); len(errs) > 0 {
		rs.RecentErrors = errs[:min(len(errs), summaryErrors)]
	}
	if bh := adm.Bulkhead(); bh != nil {
		rs.MaxConcurrent, rs.QueueCapacity = bh.MaxConcurrent(), bh.MaxDepth()
	}
	r := s.rates.Rates(rt.Name())
	rs.AdmittedPerSec, rs.RejectedPerSec = r.Admitted, r.Rejected
	return rs
}

func (s *Server) routes(w http.ResponseWriter, r *http.Request) {
	out := []routeSummary{}
	for _, rt := range s.o.Proxy.Routes() {
		out = append(out, s.summary(rt))
	}
	writeJSON(w, out)
}

func (s *Server) findRoute(w http.ResponseWriter, r *http.Request) *proxy.Route {
	name := r.PathValue("name")
	for _, rt := range s.o.Proxy.Routes() {
		if rt.Name() == name {
			return rt
		}
	}
	writeProblem(w, http.StatusNotFound, "no route named "+strconv.Quote(name))
	return nil
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	rt := s.findRoute(w, r)
	if rt == nil {
		return
	}
	adm := rt.Admission()
	now := s.o.Clock.Now()
	rates := s.rates.Rates(rt.Name())
	d := routeDetail{
		routeSummary:           s.summary(rt),
		AdmittedTotal:          adm.Admitted(),
		RejectedTotal:          map[string]uint64{},
		RejectedPerSecByReason: map[string]float64{},
		RequestsByCode:         map[string]uint64{},
		LatencyMs:              toMs(rt.Latency().Snapshot(now)),
		QueueWaitMs:            toMs(rt.QueueWait().Snapshot(now)),
		MeanServiceMs:          ms(adm.MeanServiceTime()),
		TimeoutMs:              rt.Timeout().Milliseconds(),
		Backpressure:           s.bp(rt.Name()),
		Breaker:                breakerOf(rt.Upstream(), now),
	}
	for i, reason := range admission.Rejections {
		d.RejectedTotal[reason.String()] = adm.Rejected(reason)
		d.RejectedPerSecByReason[reason.String()] = rates.ByReason[i]
	}
	rt.Codes(func(code int, n uint64) { d.RequestsByCode[strconv.Itoa(code)] = n })
	if bh := adm.Bulkhead(); bh != nil {
		d.QueueMaxWaitMs = bh.MaxWait().Milliseconds()
	}
	if rl := adm.RateLimiter(); rl != nil {
		d.RateLimit = &rateLimitInfo{RPS: rl.RPS(), Burst: rl.Burst(), Key: rl.Key(), Keys: rl.Keys(), Scope: "local"}
		if st := rl.Store(); st != nil {
			d.RateLimit.Scope = "global"
			frps, fburst := rl.Fallback()
			d.RateLimit.Store = &storeInfo{Up: st.Up(), ErrorsTotal: st.Errors(), LastError: st.LastError(), FallbackRPS: frps, FallbackBurst: fburst}
		}
	}
	if adm.Bulkhead() != nil {
		d.QueueDiscipline = adm.QueueDiscipline()
	}
	if lim := adm.Adaptive(); lim != nil {
		d.Adaptive = &adaptiveInfo{Limit: lim.Limit()}
	}
	if adm.HasPriority() {
		d.Classes = map[string]classInfo{}
		for c := range 3 {
			cl := bulkhead.Class(c)
			ci := classInfo{Admitted: adm.AdmittedClass(cl), Rejected: map[string]uint64{},
				QueueDepth: adm.Bulkhead().DepthOf(cl), QueueWaitMs: toMs(rt.ClassQueueWait(c).Snapshot(now))}
			for _, reason := range admission.Rejections {
				ci.Rejected[reason.String()] = adm.RejectedClass(cl, reason)
			}
			d.Classes[cl.String()] = ci
		}
	}
	writeJSON(w, d)
}

func (s *Server) backpressure(w http.ResponseWriter, r *http.Request) {
	if rt := s.findRoute(w, r); rt != nil {
		writeJSON(w, s.bp(rt.Name()))
	}
}

func breakerOf(u *proxy.Upstream, now time.Time) *breakerInfo {
	br := u.Breaker()
	if br == nil {
		return nil
	}
	bi := &breakerInfo{State: br.State().String(), OpenForMs: br.OpenFor().Milliseconds(), Transitions: map[string]uint64{}, Shared: u.SharedBreaker()}
	if until := br.OpenUntil(); !until.IsZero() {
		bi.OpenUntil = until.UnixMilli()
	}
	for _, st := range []breaker.State{breaker.StateClosed, breaker.StateHalfOpen, breaker.StateOpen} {
		bi.Transitions[st.String()] = br.Transitions(st)
	}
	return bi
}

func (s *Server) upstreamInfo(u *proxy.Upstream) upstreamInfo {
	ui := upstreamInfo{
		Name: u.Name(), Balance: u.Balance(), Targets: []targetInfo{},
		Breaker: breakerOf(u, s.o.Clock.Now()), RequestsByCode: map[string]uint64{},
	}
	for _, t := range u.Targets() {
		ui.Targets = append(ui.Targets, targetInfo{URL: t.URL.String(), Healthy: t.Healthy(), Inflight: t.Inflight()})
		if t.Healthy() {
			ui.HealthyTargets++
		}
	}
	u.Codes(func(code int, n uint64) { ui.RequestsByCode[strconv.Itoa(code)] = n })
	return ui
}

func (s *Server) upstreams(w http.ResponseWriter, r *http.Request) {
	out := []upstreamInfo{}
	for _, u := range s.o.Proxy.Upstreams() {
		out = append(out, s.upstreamInfo(u))
	}
	writeJSON(w, out)
}

func (s *Server) upstream(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, u := range s.o.Proxy.Upstreams() {
		if u.Name() == name {
			writeJSON(w, s.upstreamInfo(u))
			return
		}
	}
	writeProblem(w, http.StatusNotFound, "no upstream named "+strconv.Quote(name))
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	if s.o.Config == nil {
		writeProblem(w, http.StatusNotFound, "no config")
		return
	}
	m, err := s.o.Config().Public()
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, "the config could not be rendered")
		return
	}
	writeJSON(w, m)
}

func toMs(q monitor.Quantiles) quantilesMs {
	return quantilesMs{Count: q.Count, P50: ms(q.P50), P95: ms(q.P95), P99: ms(q.P99)}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeProblem writes an RFC 9457 problem body, as the proxy does.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail,
	})
}
