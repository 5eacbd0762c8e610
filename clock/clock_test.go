package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInOrderAndOnce(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(time.Second)
	c := f.NewTimer(3 * time.Second)
	if !c.Stop() {
		t.Fatal("Stop of an armed timer returned false")
	}
	f.Advance(time.Second)
	select {
	case got := <-b.C():
		if !got.Equal(time.Unix(1, 0)) {
			t.Errorf("b fired with %v", got)
		}
	default:
		t.Fatal("b not fired at its deadline")
	}
	select {
	case <-a.C():
		t.Fatal("a fired early")
	default:
	}
	f.Advance(5 * time.Second)
	<-a.C()
	select {
	case <-c.C():
		t.Fatal("stopped timer fired")
	default:
	}
	if f.Timers() != 0 || a.Stop() {
		t.Error("fired timers still armed")
	}
	if z := f.NewTimer(0); len(z.C()) != 1 {
		t.Error("zero-duration timer did not fire at once")
	}
}

func TestWaitTimers(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	done := make(chan struct{})
	go func() {
		tm := f.NewTimer(time.Minute)
		<-tm.C()
		close(done)
	}()
	f.WaitTimers(1)
	f.Advance(time.Minute)
	<-done
}

func TestReportingTellsEachDeadline(t *testing.T) {
	epoch := time.Unix(1000, 0)
	c := NewReporting(epoch)
	done := make(chan Timer)
	go func() { done <- c.NewTimer(3 * time.Second) }()
	if at := <-c.Armed; !at.Equal(epoch.Add(3 * time.Second)) {
		t.Fatalf("armed at %v, want +3s", at)
	}
	tm := <-done
	c.Advance(3 * time.Second)
	select {
	case <-tm.C():
	default:
		t.Fatal("a reported timer did not fire at its deadline")
	}
}

func TestSince(t *testing.T) {
	f := NewFake(time.Unix(1000, 0))
	start := f.Now()
	f.Advance(1500 * time.Millisecond)
	if got := Since(f, start); got != 1500*time.Millisecond {
		t.Errorf("Since on a fake = %v, want 1.5s", got)
	}
	if IsReal(f) || !IsReal(Real()) {
		t.Errorf("IsReal(fake) = %v, IsReal(Real()) = %v", IsReal(f), IsReal(Real()))
	}
	r := Real()
	if got := Since(r, r.Now().Add(-time.Hour)); got < time.Hour {
		t.Errorf("Since on the wall clock an hour ago = %v", got)
	}
}
