package breaker

import (
	"errors"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"sluice/clock"
	"sluice/config"
)

// TestAdmitRechecksGate plays the race Allow guards against: a caller passes
// the gate, another request trips the breaker, and the caller then reaches
// gobreaker, whose 1ns open period is already over, so gobreaker admits it
// as a half-open probe. admit must refuse it and hand the probe slot back.
func TestAdmitRechecksGate(t *testing.T) {
	cfg := config.Breaker{
		ConsecutiveFailures: 1,
		FailureRatio:        0.5,
		MinRequests:         100,
		Window:              time.Hour,
		OpenTimeout:         30 * time.Second,
		HalfOpenRequests:    1,
	}
	clk := clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	b := New("users", cfg, clk)

	c := b.cur.Load()
	if c.gateClosed() { // the racing caller's first check: passes
		t.Fatal("gate closed before any failure")
	}
	done, err := b.Allow() // another request trips the breaker
	if err != nil {
		t.Fatal(err)
	}
	done(Failure)
	// Wait out gobreaker's 1ns timeout on the wall clock; this State call
	// itself moves gobreaker to half-open. A spin, not a sleep: it is over
	// after a couple of nanoseconds.
	for c.cb.State() != gobreaker.StateHalfOpen {
	}

	if _, err := b.admit(c); !errors.Is(err, ErrOpen) {
		t.Fatalf("admit after the trip: err %v, want ErrOpen", err)
	}
	if n := c.cb.Counts(); n.Requests != 1 || n.TotalExclusions != 1 {
		t.Fatalf("gobreaker counts %+v: the probe slot was not handed back as an exclusion", n)
	}
	if got := b.State(); got != StateOpen {
		t.Fatalf("State() = %v, want open", got)
	}
	if got := b.Transitions(StateHalfOpen); got != 0 {
		t.Fatalf("Transitions(half-open) = %d during the open period, want 0", got)
	}

	// The slot is free: after the open period, the one probe is admitted.
	clk.Advance(cfg.OpenTimeout)
	probe, err := b.Allow()
	if err != nil {
		t.Fatalf("probe after OpenTimeout: %v", err)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("second probe: err %v, want ErrOpen", err)
	}
	probe(Success)
	if got := b.State(); got != StateClosed {
		t.Fatalf("State() = %v after the probe succeeded, want closed", got)
	}
}

func TestReadyToTrip(t *testing.T) {
	tests := []struct {
		name string
		c    gobreaker.Counts
		want bool
	}{
		{"consecutive", gobreaker.Counts{Requests: 3, TotalFailures: 3, ConsecutiveFailures: 3}, true},
		{"below consecutive and min", gobreaker.Counts{Requests: 2, TotalFailures: 2, ConsecutiveFailures: 2}, false},
		{"ratio at min", gobreaker.Counts{Requests: 10, TotalSuccesses: 5, TotalFailures: 5, ConsecutiveFailures: 1}, true},
		{"ratio below min", gobreaker.Counts{Requests: 9, TotalSuccesses: 4, TotalFailures: 5, ConsecutiveFailures: 1}, false},
		{"below ratio", gobreaker.Counts{Requests: 10, TotalSuccesses: 6, TotalFailures: 4, ConsecutiveFailures: 1}, false},
		// 20 admitted, 10 in flight: 5 of 10 counted failed.
		{"in flight not counted", gobreaker.Counts{Requests: 20, TotalSuccesses: 5, TotalFailures: 5, ConsecutiveFailures: 1}, true},
		// 20 admitted, 11 ignored: 9 counted is below MinRequests.
		{"exclusions not counted", gobreaker.Counts{Requests: 20, TotalSuccesses: 4, TotalFailures: 5, TotalExclusions: 11, ConsecutiveFailures: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readyToTrip(tt.c, 3, 10, 0.5); got != tt.want {
				t.Errorf("readyToTrip(%+v) = %v, want %v", tt.c, got, tt.want)
			}
		})
	}
}
