package routing

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind. The
// package starts none; the check keeps it so.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
