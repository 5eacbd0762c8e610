package server

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind, except
// the two certmagic keeps for the life of the process (certmagicLeftovers).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, certmagicLeftovers()...)
}
