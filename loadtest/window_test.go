package loadtest

import (
	"testing"
)

// TestJudgeNeedsTwoWindowsInARow: one window out of the bounds followed by
// one within them is a stall, not the knee; the search ends at the first
// of two in a row, and the capacity is the last window within the bounds
// before it.
func TestJudgeNeedsTwoWindowsInARow(t *testing.T) {
	ok := func(s int) Window {
		return Window{Second: s, Offered: float64(100 + s), OK: 100, Goodput: 100 + float64(s)}
	}
	slow := func(s int) Window { return Window{Second: s, OK: 100, AdmittedP99: 400} }
	refusing := func(s int) Window { return Window{Second: s, OK: 80, Refused: 20} }
	empty := func(s int) Window { return Window{Second: s} }
	for _, tc := range []struct {
		name    string
		windows []Window
		done    int // the window after which judge reports the search over; -1: never
		good    int // the capacity's window; -1: none
		breach  int // the breach's window; -1: none
		why     string
	}{
		{"a stall in between", []Window{ok(0), slow(1), ok(2), ok(3), refusing(4), refusing(5)}, 5, 3, 4, "refused 20.0% > 5.0%"},
		{"an empty window between the two", []Window{ok(0), refusing(1), empty(2), slow(3)}, 3, 0, 1, "refused 20.0% > 5.0%"},
		{"never out of the bounds", []Window{ok(0), ok(1)}, -1, 1, -1, ""},
		{"out of the bounds in the last window only", []Window{ok(0), ok(1), slow(2)}, -1, 1, 2, "admitted p99 400ms > 250ms"},
		{"out of the bounds from the start", []Window{slow(0), slow(1)}, 1, -1, 0, "admitted p99 400ms > 250ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &collector{o: Options{MaxP99: DefaultMaxP99, MaxRefused: DefaultMaxRefused}}
			done := -1
			for i, w := range tc.windows {
				if c.judge(w) && done < 0 {
					done = i
				}
			}
			c.endSearch()
			if done != tc.done {
				t.Errorf("search over after window %d, want %d", done, tc.done)
			}
			good, breach := -1, -1
			if c.lastGood != nil {
				good = c.lastGood.Second
			}
			if c.breach != nil {
				breach = c.breach.Second
			}
			if good != tc.good || breach != tc.breach || c.why != tc.why {
				t.Errorf("last good %d, breach %d (%q); want %d, %d (%q)", good, breach, c.why, tc.good, tc.breach, tc.why)
			}
		})
	}
}
