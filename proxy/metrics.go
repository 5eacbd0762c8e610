package proxy

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/admission"
	"sluice/breaker"
	"sluice/bulkhead"
	"sluice/overload"
)

// latencyBuckets span proxy latencies: sub-millisecond refusals up to
// requests that run into a 30 s route timeout.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

var (
	descRequests    = prometheus.NewDesc("sluice_requests_total", "Requests answered, by route and status code (route empty: no route matched; 499: the client left).", []string{"route", "code"}, nil)
	descAdmitted    = prometheus.NewDesc("sluice_admission_admitted_total", "Requests admitted to the upstream.", []string{"route"}, nil)
	descRejected    = prometheus.NewDesc("sluice_admission_rejected_total", "Requests refused, by reason (the Sluice-Reject value).", []string{"route", "reason"}, nil)
	descQueueDepth  = prometheus.NewDesc("sluice_queue_depth", "Requests waiting in the route's queue now.", []string{"route"}, nil)
	descQueueCap    = prometheus.NewDesc("sluice_queue_capacity", "The route's queue.max_depth (only routes with a bulkhead).", []string{"route"}, nil)
	descInflight    = prometheus.NewDesc("sluice_inflight", "Admitted requests not yet finished.", []string{"route"}, nil)
	descBulkheadCap = prometheus.NewDesc("sluice_bulkhead_capacity", "The route's bulkhead.max_concurrent (only routes with a bulkhead).", []string{"route"}, nil)
	descBackpress   = prometheus.NewDesc("sluice_backpressure_ratio", "Share of recent samples in which a new request could not start at once.", []string{"route"}, nil)
	descBrState     = prometheus.NewDesc("sluice_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", []string{"upstream"}, nil)
	descBrTrans     = prometheus.NewDesc("sluice_breaker_transitions_total", "Circuit breaker state changes, by the state entered.", []string{"upstream", "to"}, nil)
	descClassAdm    = prometheus.NewDesc("sluice_admission_class_admitted_total", "Requests admitted, by priority class (routes with priority only).", []string{"route", "class"}, nil)
	descClassRej    = prometheus.NewDesc("sluice_admission_class_rejected_total", "Requests refused, by priority class and reason (routes with priority only).", []string{"route", "class", "reason"}, nil)
	descClassDepth  = prometheus.NewDesc("sluice_queue_class_depth", "Requests of each priority class waiting now (routes with priority only).", []string{"route", "class"}, nil)
	descLimit       = prometheus.NewDesc("sluice_concurrency_limit", "The adaptive concurrency limit now (routes with bulkhead.adaptive only); also sluice_bulkhead_capacity.", []string{"route"}, nil)
	descStoreUp     = prometheus.NewDesc("sluice_ratelimit_store_up", "1 while the redis block's store answers in time (global limits are shared), 0 while replicas limit locally.", nil, nil)
	descStoreErrs   = prometheus.NewDesc("sluice_ratelimit_store_errors_total", "Commands to the redis block's store that failed or overran redis.timeout.", nil, nil)
	descConns       = prometheus.NewDesc("sluice_connections", "Proxy connections: state=open those open now, state=refused those refused for server.max_connections since start (a count that only rises, kept in this gauge family beside open), state=parked the refused ones kept open now, each request on them answered 503 overloaded.", []string{"state"}, nil)
	descOvlState    = prometheus.NewDesc("sluice_overload_state", "1 while the overload manager sheds (heap over server.memory_limit, or the saturation detector refusing a class), else 0.", nil, nil)
	descOvlShed     = prometheus.NewDesc("sluice_overload_shed_level", "What the saturation detector sheds: 0 nothing, 1 class sheddable, 2 classes sheddable and default.", nil, nil)
	descOvlInflight = prometheus.NewDesc("sluice_overload_inflight", "Requests inside the proxy's door now, across all routes (what server.max_inflight caps).", nil, nil)
	descOvlHeap     = prometheus.NewDesc("sluice_overload_heap_bytes", "The live heap at the overload manager's last sample (what server.memory_limit caps).", nil, nil)
	descOvlMemLimit = prometheus.NewDesc("sluice_overload_memory_limit_bytes", "server.memory_limit in bytes; 0 when off.", nil, nil)
	descOvlSched    = prometheus.NewDesc("sluice_overload_sched_latency_seconds", "p99 scheduling latency over the overload manager's last sample interval.", nil, nil)
	descUpstream    = prometheus.NewDesc("sluice_upstream_requests_total", "Requests sent upstream, by the upstream's status (502/504 when it gave no answer).", []string{"upstream", "code"}, nil)
)

// Collector returns a Prometheus collector of the proxy's state. Counters
// are kept as atomics on the hot path and read only at scrape time, so
// metrics cost a request nothing but its two histogram observations. It is
// unchecked (no Describe) because reloads change the set of routes.
func (p *Proxy) Collector() prometheus.Collector { return collector{p} }

type collector struct{ p *Proxy }

func (collector) Describe(chan<- *prometheus.Desc) {}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	t := c.p.tab.Load()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, rt := range t.routes {
		rt.codes.each(func(code int, n uint64) { counter(descRequests, float64(n), rt.name, strconv.Itoa(code)) })
		rt.durHist.Collect(ch)
		adm := rt.adm
		counter(descAdmitted, float64(adm.Admitted()), rt.name)
		for _, r := range admission.Rejections {
			counter(descRejected, float64(adm.Rejected(r)), rt.name, r.String())
		}
		gauge(descInflight, float64(adm.Inflight()), rt.name)
		gauge(descQueueDepth, float64(adm.QueueDepth()), rt.name)
		if bh := adm.Bulkhead(); bh != nil {
			rt.qwaitHist.Collect(ch)
			gauge(descQueueCap, float64(bh.MaxDepth()), rt.name)
			gauge(descBulkheadCap, float64(bh.MaxConcurrent()), rt.name)
		}
		if adm.HasPriority() {
			for cl := range 3 {
				class := bulkhead.Class(cl)
				counter(descClassAdm, float64(adm.AdmittedClass(class)), rt.name, class.String())
				for _, r := range admission.Rejections {
					counter(descClassRej, float64(adm.RejectedClass(class, r)), rt.name, class.String(), r.String())
				}
				gauge(descClassDepth, float64(adm.Bulkhead().DepthOf(class)), rt.name, class.String())
				rt.classWait[cl].Collect(ch)
			}
		}
		collectFaults(ch, rt)
		if lim := adm.Adaptive(); lim != nil {
			gauge(descLimit, float64(lim.Limit()), rt.name)
		}
		if c.p.smp != nil {
			if bp, ok := c.p.smp.Backpressure(rt.name); ok {
				gauge(descBackpress, bp.Ratio, rt.name)
			}
		}
	}
	c.p.unmatched.each(func(code int, n uint64) { counter(descRequests, float64(n), "", strconv.Itoa(code)) })
	counter(descRejected, float64(c.p.DoorRefused()), "", admission.Overloaded.String())
	collectOverload(ch, c.p.ovl.State())
	if st := t.store; st != nil {
		up := 0.0
		if st.Up() {
			up = 1
		}
		gauge(descStoreUp, up)
		counter(descStoreErrs, float64(c.p.storeErrors(st)))
	}
	for _, u := range t.upstreams {
		u.codes.each(func(code int, n uint64) { counter(descUpstream, float64(n), u.name, strconv.Itoa(code)) })
		if br := u.br; br != nil {
			gauge(descBrState, float64(br.State()), u.name)
			for _, s := range []breaker.State{breaker.StateClosed, breaker.StateHalfOpen, breaker.StateOpen} {
				counter(descBrTrans, float64(br.Transitions(s)), u.name, s.String())
			}
		}
	}
}

// collectOverload reports the overload manager's state.
func collectOverload(ch chan<- prometheus.Metric, s overload.State) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descConns, float64(s.ConnectionsOpen), "open")
	gauge(descConns, float64(s.ConnectionsRefused), "refused")
	gauge(descConns, float64(s.ConnectionsParked), "parked")
	state := 0.0
	if s.Overloaded() {
		state = 1
	}
	gauge(descOvlState, state)
	gauge(descOvlShed, float64(s.Shedding))
	gauge(descOvlInflight, float64(s.Inflight))
	gauge(descOvlHeap, float64(s.HeapBytes))
	gauge(descOvlMemLimit, float64(s.Limits.MemoryLimit))
	gauge(descOvlSched, s.SchedP99.Seconds())
}
