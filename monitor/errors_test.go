package monitor

import (
	"strconv"
	"testing"
	"time"

	"sluice/clock"
)

func TestErrorRingOrderAndWraparound(t *testing.T) {
	start := time.UnixMilli(1_000_000)
	clk := clock.NewFake(start)
	r := NewErrorRing(clk)
	if got, trunc := r.Recent(); len(got) != 0 || trunc {
		t.Fatalf("empty ring: %v %v", got, trunc)
	}
	for i := 0; i < ErrorRingSize; i++ {
		r.Add(ErrorEntry{Target: strconv.Itoa(i), Status: 502, Kind: "refused"})
		clk.Advance(time.Millisecond)
	}
	got, trunc := r.Recent()
	if len(got) != ErrorRingSize || trunc {
		t.Fatalf("full ring: len %d truncated %v", len(got), trunc)
	}
	if got[0].Target != strconv.Itoa(ErrorRingSize-1) || got[0].Time != start.UnixMilli()+ErrorRingSize-1 {
		t.Fatalf("newest = %+v", got[0])
	}
	if got[ErrorRingSize-1].Target != "0" || got[ErrorRingSize-1].Time != start.UnixMilli() {
		t.Fatalf("oldest = %+v", got[ErrorRingSize-1])
	}
	r.Add(ErrorEntry{Target: "new"})
	got, trunc = r.Recent()
	if len(got) != ErrorRingSize || !trunc || r.Len() != ErrorRingSize {
		t.Fatalf("after wrap: len %d truncated %v", len(got), trunc)
	}
	if got[0].Target != "new" || got[ErrorRingSize-1].Target != "1" {
		t.Fatalf("after wrap: newest %q oldest %q", got[0].Target, got[ErrorRingSize-1].Target)
	}
}
