package config

import (
	"testing"
	"time"
)

func TestParseFaultToggle(t *testing.T) {
	f, d, err := ParseFaultToggle("body", []byte(`{"abort": {"status": 502, "percent": 30}, "header": "x-fault", "duration": "30s"}`))
	if err != nil {
		t.Fatal(err)
	}
	if d != 30*time.Second || f.Abort == nil || f.Abort.Status != 502 || f.Abort.Percent != 30 || f.Header != "X-Fault" || f.Delay != nil {
		t.Fatalf("got %+v (abort %+v), %v", f, f.Abort, d)
	}
	f, _, err = ParseFaultToggle("body", []byte(`{"delay": {"duration": "1s"}, "duration": "1m"}`))
	if err != nil || f.Delay.Percent != 100 || f.Delay.Duration != time.Second {
		t.Fatalf("defaults: %+v, %v", f, err)
	}

	for _, tc := range []struct{ name, body, want string }{
		{"no duration", `{"abort": {"status": 503}}`, `body:1:1: "duration" is required (Go syntax such as "30s", at most 24h0m0s)`},
		{"too long", `{"abort": {}, "duration": "25h"}`, `body:1:27: duration must be > 0 and at most 24h0m0s, got 25h0m0s`},
		{"bad duration", `{"abort": {}, "duration": 30}`, `body:1:27: bad duration "30": time: missing unit in duration "30" (use Go syntax such as 250ms or 30s)`},
		{"bad percent", `{"reset": {"percent": 101}, "duration": "1s"}`, `body:1:23: reset.percent must be between 0 and 100, got 101`},
		{"unknown kind", `{"drop": {}, "duration": "1s"}`, `body:1:2: unknown key "drop" at top level (known keys: delay, abort, body_rate, reset, header, count_as_failure)`},
		{"empty fault", `{"duration": "1s"}`, `body:1:1: a fault needs at least one of delay, abort, body_rate, reset`},
		{"not an object", `[1]`, `body:1:1: expected a JSON object: a fault block plus "duration"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseFaultToggle("body", []byte(tc.body))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v\nwant %s", err, tc.want)
			}
		})
	}
}
