package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: health
// checkers, samplers, transports' connection loops and queue waiters must all
// end with the proxy that started them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
