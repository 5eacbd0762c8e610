package admission

// Reason says why a request was refused, or that it was admitted. Its
// String is the Sluice-Reject header value of docs/SPEC.md's rejection table.
type Reason uint8

const (
	Admitted Reason = iota
	RateLimited
	QueueFull
	QueueTimeout
	BreakerOpen
	NoHealthyUpstream
	ShuttingDown
	// Overloaded: the process-level overload manager refused the request
	// (server.max_inflight, server.memory_limit, or the saturation
	// detector shedding its class), before admission.
	Overloaded
	// ClientGone: the client left while queued. Not a refusal: nothing is
	// written and the proxy logs 499.
	ClientGone

	// NumReasons is one more than the largest Reason, for tables indexed
	// by reason.
	NumReasons
)

var reasonNames = [NumReasons]string{
	Admitted:          "admitted",
	RateLimited:       "rate_limited",
	QueueFull:         "queue_full",
	QueueTimeout:      "queue_timeout",
	BreakerOpen:       "breaker_open",
	NoHealthyUpstream: "no_healthy_upstream",
	ShuttingDown:      "shutting_down",
	Overloaded:        "overloaded",
	ClientGone:        "client_gone",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Rejections lists the refusal reasons, in the order of docs/SPEC.md's
// rejection table, for reporting.
var Rejections = []Reason{RateLimited, QueueFull, QueueTimeout, BreakerOpen, NoHealthyUpstream, ShuttingDown, Overloaded}
