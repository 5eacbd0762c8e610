package loadtest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a run leaves a goroutine behind: a
// worker, a result reader or an idle connection.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
