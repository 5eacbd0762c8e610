package config

import (
	"cmp"
	"net/textproto"
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"
)

// Fault injects failures into a route's admitted requests, as Envoy's
// fault filter does. Each kind is drawn on its own, per request, with its
// percent; a request drawn for several gets the delay first, then a reset
// in preference to an abort. Faults run after admission, so an injected
// delay holds the bulkhead slot like a slow upstream would.
type Fault struct {
	// Delay holds the request for Duration before it goes on (to the
	// upstream, or to an abort or reset drawn with it). Omitted = no delay.
	Delay *FaultDelay `yaml:"delay"`
	// Abort answers Status without contacting the upstream, with the
	// header "Sluice-Fault: abort" and a problem+json body. Omitted = none.
	Abort *FaultAbort `yaml:"abort"`
	// BodyRate, in bytes per second, paces the response body the upstream
	// sends back to the client, in chunks of a tenth of a second's worth.
	// It applies to every eligible request that is forwarded (with a
	// header percent, to that share of them). Default 0 (no pacing).
	BodyRate int64 `yaml:"body_rate"`
	// Reset drops the client's connection instead of answering: an HTTP/1
	// connection is closed with a TCP RST (SO_LINGER 0), an HTTP/2 stream
	// is reset (RST_STREAM). Omitted = none.
	Reset *FaultReset `yaml:"reset"`
	// Header, if set, names a request header: only requests carrying it
	// are faulted. When its value (spaces trimmed) is a number from 0 to
	// 100, it replaces every configured percent for that request, so
	// "X-Fault: 50" faults half of the marked requests and "X-Fault: 0"
	// none; any other value (empty included) keeps the configured
	// percents. Default "" (every request is eligible).
	Header string `yaml:"header"`
	// CountAsFailure lets injected faults reach the upstream's breaker: an
	// abort whose status is one of the breaker's failure_statuses, and a
	// reset, count as failures. Default false: injected faults never trip
	// the breaker.
	CountAsFailure bool `yaml:"count_as_failure"`
}

// FaultDelay is an injected delay.
type FaultDelay struct {
	// Duration is how long the request is held. Required, > 0. The wait
	// ends early, as an upstream's would, when the route's timeout passes
	// (504) or the client leaves.
	Duration time.Duration `yaml:"duration"`
	// Percent of eligible requests delayed, 0 to 100. Default 100.
	Percent float64 `yaml:"percent"`
}

// FaultAbort is an injected answer.
type FaultAbort struct {
	// Status is the status answered, 200 to 599 (a final status; Envoy's
	// range). Default 503.
	Status int `yaml:"status"`
	// Percent of eligible requests aborted, 0 to 100. Default 100.
	Percent float64 `yaml:"percent"`
}

// FaultReset is an injected connection reset.
type FaultReset struct {
	// Percent of eligible requests reset, 0 to 100. Default 100.
	Percent float64 `yaml:"percent"`
}

// MaxFaultToggle bounds the duration of a fault turned on at run time, so
// a forgotten toggle cannot outlive a working day.
const MaxFaultToggle = 24 * time.Hour

// ParseFaultToggle decodes the body of POST /api/v1/routes/{name}/fault: a
// fault block as JSON (the YAML field names) plus "duration" (Go syntax,
// e.g. "30s", required, at most MaxFaultToggle). It is checked exactly as
// a route's fault block is, and its errors are Errors naming positions in
// the body, under name.
func ParseFaultToggle(name string, data []byte) (*Fault, time.Duration, error) {
	d := &decoder{file: name, pos: positions{}, maxVisits: maxVisits}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		d.syntaxError(err)
		return nil, 0, d.errs
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		d.errorAt(1, 1, `expected a JSON object: a fault block plus "duration"`)
		return nil, 0, d.errs
	}
	root := doc.Content[0]
	// "duration" belongs to the toggle, not to the fault block: take it
	// out and decode the rest as a route's fault block is decoded.
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: root.Line, Column: root.Column}
	var durKey, durVal *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if k.Kind == yaml.ScalarNode && k.Value == "duration" {
			if durKey != nil {
				d.errorf(k, "duplicate key %q (first at line %d)", k.Value, durKey.Line)
				continue
			}
			durKey, durVal = k, root.Content[i+1]
			continue
		}
		rest.Content = append(rest.Content, k, root.Content[i+1])
	}
	f := new(Fault)
	d.mapping("", rest, reflect.ValueOf(f).Elem())
	var dur time.Duration
	switch {
	case durKey == nil:
		d.errorAt(root.Line, root.Column, `"duration" is required (Go syntax such as "30s", at most %v)`, MaxFaultToggle)
	default:
		n := len(d.errs)
		d.duration(durVal, reflect.ValueOf(&dur).Elem())
		if len(d.errs) == n && (dur <= 0 || dur > MaxFaultToggle) {
			d.errorf(durVal, "duration must be > 0 and at most %v, got %v", MaxFaultToggle, dur)
		}
	}
	errs := d.errs
	if len(errs) == 0 {
		v := &validator{c: &Config{File: name, pos: d.pos}}
		v.fault("", f)
		errs = v.errs
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, 0, errs
	}
	return f, dur, nil
}

// fault checks and normalises a fault block at path p ("" for a toggle's
// body, where the keys stand at the top).
func (v *validator) fault(p string, f *Fault) {
	at := func(key string) string { return joinPath(p, key) }
	if f.Delay == nil && f.Abort == nil && f.Reset == nil && f.BodyRate == 0 {
		v.errorf(p, "%s needs at least one of delay, abort, body_rate, reset", cmp.Or(p, "a fault"))
	}
	if dl := f.Delay; dl != nil {
		v.positiveDuration(at("delay.duration"), dl.Duration)
		v.percent(at("delay.percent"), dl.Percent)
	}
	if ab := f.Abort; ab != nil {
		if ab.Status < 200 || ab.Status > 599 {
			v.errorf(at("abort.status"), "%s must be a final HTTP status 200-599, got %d", at("abort.status"), ab.Status)
		}
		v.percent(at("abort.percent"), ab.Percent)
	}
	if f.BodyRate < 0 {
		v.errorf(at("body_rate"), "%s must be >= 0 bytes/s (0 = no pacing), got %d", at("body_rate"), f.BodyRate)
	}
	if rs := f.Reset; rs != nil {
		v.percent(at("reset.percent"), rs.Percent)
	}
	if f.Header != "" {
		if !validToken(f.Header) {
			v.errorf(at("header"), "%s %q is not a valid header name", at("header"), f.Header)
		} else {
			f.Header = textproto.CanonicalMIMEHeaderKey(f.Header)
		}
	}
}

func (v *validator) percent(path string, pct float64) {
	if !(pct >= 0 && pct <= 100) {
		v.errorf(path, "%s must be between 0 and 100, got %v", path, pct)
	}
}
