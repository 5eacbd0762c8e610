package server

import (
	"os/exec"
	"testing"

	"sluice/internal/testutil"
)

// TestAlertRules checks the alerting rules documented in docs/OPERATIONS.md
// with the real promtool: they parse, and each fires on the series it is
// written for (docs/alerts_test.yml).
func TestAlertRules(t *testing.T) {
	promtool := testutil.NeedTool(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../docs"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
