package overload

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: the
// sampler and the lingering refusals end with their context and listener.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
