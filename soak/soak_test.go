package main

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestSoakBrief runs the soak for a few seconds: mixed load and faults must
// leave goroutines and descriptors where they started, and every request
// sent must be accounted for (answered, abandoned by its client, or a
// client-side error — and errors only where faults explain them).
func TestSoakBrief(t *testing.T) {
	var out bytes.Buffer
	rep, err := run(context.Background(), 7*time.Second, 150, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.flat() {
		t.Errorf("resources did not come back: start %+v, end %+v", rep.start, rep.end)
	}
	if rep.answered+rep.abandoned+rep.errors != rep.sent {
		t.Errorf("sent %d, accounted %d", rep.sent, rep.answered+rep.abandoned+rep.errors)
	}
	if rep.reloads < 1 || rep.restarts < 1 {
		t.Errorf("faults did not run: %d reloads, %d restarts", rep.reloads, rep.restarts)
	}
	if rep.errors > rep.sent/100 {
		t.Errorf("%d client errors of %d sent: sluice should answer, not drop", rep.errors, rep.sent)
	}
}
