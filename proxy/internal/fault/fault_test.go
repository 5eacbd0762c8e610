package fault

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestDrawAlwaysAndNever(t *testing.T) {
	sm := NewSampler(rand.New(rand.NewPCG(1, 2)))
	s := &Spec{Delay: time.Second, DelayPct: 100, AbortStatus: 502, AbortPct: 0}
	for range 100 {
		if p := sm.Draw(s, -1); p != (Plan{Delay: time.Second}) {
			t.Fatalf("plan %+v", p)
		}
	}
	// An override replaces the percent of configured kinds only.
	for range 100 {
		if p := sm.Draw(s, 100); p != (Plan{Delay: time.Second, Abort: 502}) {
			t.Fatalf("override 100: plan %+v", p)
		}
		if p := sm.Draw(s, 0); p != (Plan{}) {
			t.Fatalf("override 0: plan %+v", p)
		}
	}
	r := &Spec{HasReset: true, ResetPct: 100, AbortStatus: 503, AbortPct: 100, BodyRate: 10}
	if p := sm.Draw(r, -1); p != (Plan{Reset: true}) {
		t.Fatalf("reset wins over abort and body_rate: %+v", p)
	}
}

func TestOverride(t *testing.T) {
	for v, want := range map[string]float64{"50": 50, " 0 ": 0, "100": 100, "12.5": 12.5, "": -1, "yes": -1, "101": -1, "-1": -1, "NaN": -1} {
		if got := Override(v); got != want {
			t.Errorf("Override(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestKinds(t *testing.T) {
	var ks Kinds
	ks.Add(Abort)
	ks.Add(Delay)
	if got := ks.String(); got != "delay,abort" {
		t.Fatalf("got %q", got)
	}
}
