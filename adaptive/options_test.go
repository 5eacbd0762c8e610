package adaptive

import (
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		err  string // substring; empty: valid
	}{
		{"ok", Options{Initial: 10, Min: 1, Max: 100}, ""},
		{"all equal", Options{Initial: 1, Min: 1, Max: 1}, ""},
		{"min zero", Options{Initial: 1, Min: 0, Max: 10}, "min must be >= 1"},
		{"max below min", Options{Initial: 5, Min: 5, Max: 4}, "max 4 must be >= min 5"},
		{"initial below min", Options{Initial: 1, Min: 2, Max: 10}, "initial 1 must be within"},
		{"initial above max", Options{Initial: 11, Min: 2, Max: 10}, "initial 11 must be within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

func TestConstructorsPanicOnInvalidOptions(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil {
					t.Fatal("no panic for Min 0")
				}
			}()
			alg.new(Options{Initial: 1, Min: 0, Max: 1})
		})
	}
}

func TestInitialLimit(t *testing.T) {
	for _, alg := range algorithms {
		if got := alg.new(Options{Initial: 7, Min: 1, Max: 10}).Limit(); got != 7 {
			t.Errorf("%s: Limit() before any sample = %d, want Initial 7", alg.name, got)
		}
	}
}
