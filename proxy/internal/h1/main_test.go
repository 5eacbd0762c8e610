package h1

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: a
// connection's context watch or the idle pruner must end with its transport.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
