package monitor

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/clock"
	"sluice/internal/testutil"
)

const testInterval = 50 * time.Millisecond

// fakeSource is a route whose answers the test sets. Its mutex lets a test
// change them while Run samples on another goroutine.
type fakeSource struct {
	mu       sync.Mutex // guards all fields
	bp       bool
	pattern  []bool // if set, the answers cycle through it instead of bp
	calls    int
	panics   int // panic in this many Backpressured calls, then answer
	queue    float64
	bulkhead float64
	lastNow  time.Time
}

var _ Source = (*fakeSource)(nil)

func (f *fakeSource) Backpressured(now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastNow = now
	if f.panics > 0 {
		f.panics--
		panic("fake source broke")
	}
	if f.pattern != nil {
		b := f.pattern[f.calls%len(f.pattern)]
		f.calls++
		return b
	}
	return f.bp
}

func (f *fakeSource) QueueUsage() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queue
}

func (f *fakeSource) BulkheadUsage() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bulkhead
}

func (f *fakeSource) set(bp bool, queue, bulkhead float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bp, f.queue, f.bulkhead = bp, queue, bulkhead
}

func (f *fakeSource) setPanics(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.panics = n
}

func (f *fakeSource) seen() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastNow
}

// syncBuffer is a log sink that Run's goroutine and the test share.
type syncBuffer = testutil.SyncBuffer

// start is a time with a millisecond fraction, so EndTimestamp checks catch
// a truncation to seconds.
var start = time.Date(2026, 3, 1, 12, 0, 0, 123_456_789, time.UTC)

func newTestSampler(t *testing.T, window int) (*Sampler, *clock.Fake, *syncBuffer) {
	t.Helper()
	clk := clock.NewFake(start)
	logs := &syncBuffer{}
	return NewSampler(testInterval, window, clk, slog.New(slog.NewTextHandler(logs, nil))), clk, logs
}

func mustBackpressure(t *testing.T, s *Sampler, name string) Backpressure {
	t.Helper()
	bp, ok := s.Backpressure(name)
	if !ok {
		t.Fatalf("Backpressure(%q): route not tracked", name)
	}
	return bp
}

func wantRatio(t *testing.T, s *Sampler, name string, ratio float64, level Level, samples int) {
	t.Helper()
	bp := mustBackpressure(t, s, name)
	if bp.Ratio != ratio || bp.Level != level || bp.Samples != samples {
		t.Fatalf("%s: ratio %v level %s samples %d, want ratio %v level %s samples %d",
			name, bp.Ratio, bp.Level, bp.Samples, ratio, level, samples)
	}
}

// step advances the fake clock by one interval and samples by hand.
func step(s *Sampler, clk *clock.Fake, n int) {
	for range n {
		clk.Advance(s.Interval())
		s.Sample()
	}
}

func TestLevelOf(t *testing.T) {
	for _, tc := range []struct {
		ratio float64
		want  Level
	}{
		{0, LevelOK},
		{0.05, LevelOK},
		{0.1, LevelOK},
		{10.0 / 100, LevelOK}, // 10 of 100 samples, as the sampler computes it
		{0.1000001, LevelLow},
		{0.3, LevelLow},
		{0.5, LevelLow},
		{50.0 / 100, LevelLow},
		{0.5000001, LevelHigh},
		{0.9, LevelHigh},
		{1, LevelHigh},
	} {
		if got := LevelOf(tc.ratio); got != tc.want {
			t.Errorf("LevelOf(%v) = %s, want %s", tc.ratio, got, tc.want)
		}
	}
}

func TestNewSamplerRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		window   int
	}{
		{"zero interval", 0, 100},
		{"negative interval", -time.Second, 100},
		{"zero window", testInterval, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("NewSampler did not panic")
				}
			}()
			NewSampler(tc.interval, tc.window, nil, nil)
		})
	}
}

func TestSamplerLevels(t *testing.T) {
	s, clk, _ := newTestSampler(t, 100)
	idle := &fakeSource{}
	saturated := &fakeSource{bp: true, queue: 1, bulkhead: 1}
	// 3 backpressured samples in every 10, not adjacent, so that any
	// window of 100 consecutive samples holds exactly 30.
	thirty := &fakeSource{pattern: []bool{true, false, false, true, false, false, true, false, false, false}}
	s.SetSources(map[string]Source{"idle": idle, "saturated": saturated, "thirty": thirty})

	for i := 1; i <= 100; i++ {
		step(s, clk, 1)
		if bp := mustBackpressure(t, s, "idle"); bp.Samples != i {
			t.Fatalf("after %d samples Samples = %d", i, bp.Samples)
		}
	}
	wantRatio(t, s, "idle", 0, LevelOK, 100)
	wantRatio(t, s, "saturated", 1, LevelHigh, 100)
	wantRatio(t, s, "thirty", 0.3, LevelLow, 100)

	// The window slides: the saturated route goes idle, and its old
	// samples leave one per round.
	saturated.set(false, 0, 0)
	step(s, clk, 40)
	wantRatio(t, s, "saturated", 0.6, LevelHigh, 100)
	step(s, clk, 10)
	wantRatio(t, s, "saturated", 0.5, LevelLow, 100) // 0.5 is still low
	step(s, clk, 40)
	wantRatio(t, s, "saturated", 0.1, LevelOK, 100) // and 0.1 already ok
	step(s, clk, 10)
	wantRatio(t, s, "saturated", 0, LevelOK, 100)
	wantRatio(t, s, "thirty", 0.3, LevelLow, 100)
	wantRatio(t, s, "idle", 0, LevelOK, 100) // Samples stayed at the window
}

// The level is computed over the samples present, before the window fills.
func TestSamplerPartialWindow(t *testing.T) {
	s, clk, _ := newTestSampler(t, 100)
	src := &fakeSource{bp: true}
	s.SetSources(map[string]Source{"r": src})
	step(s, clk, 3)
	src.set(false, 0, 0)
	step(s, clk, 7)
	wantRatio(t, s, "r", 0.3, LevelLow, 10)
}

// A window that is not a multiple of 64 wraps inside a word of the ring.
func TestSamplerOddWindow(t *testing.T) {
	s, clk, _ := newTestSampler(t, 67)
	src := &fakeSource{bp: true}
	s.SetSources(map[string]Source{"r": src})
	step(s, clk, 67)
	wantRatio(t, s, "r", 1, LevelHigh, 67)
	src.set(false, 0, 0)
	step(s, clk, 66)
	wantRatio(t, s, "r", 1.0/67, LevelOK, 67)
	step(s, clk, 1)
	wantRatio(t, s, "r", 0, LevelOK, 67)
	src.set(true, 0, 0)
	step(s, clk, 67*3+5)
	wantRatio(t, s, "r", 1, LevelHigh, 67)
}

func TestSamplerBeforeFirstSample(t *testing.T) {
	s, _, _ := newTestSampler(t, 100)
	s.SetSources(map[string]Source{"r": &fakeSource{bp: true}})
	got := mustBackpressure(t, s, "r")
	want := Backpressure{Level: LevelOK, SampleIntervalMs: 50}
	if got != want {
		t.Fatalf("before the first sample: %+v, want %+v", got, want)
	}
	if _, ok := s.Backpressure("nope"); ok {
		t.Fatal("an unknown route is reported as tracked")
	}
}

func TestSamplerNewestSample(t *testing.T) {
	s, clk, _ := newTestSampler(t, 100)
	src := &fakeSource{queue: 0.25, bulkhead: 0.5}
	s.SetSources(map[string]Source{"r": src})
	step(s, clk, 1)
	src.set(true, 0.75, 1)
	step(s, clk, 1)

	now := clk.Now()
	if !src.seen().Equal(now) {
		t.Fatalf("Backpressured got now %v, want the clock's %v", src.seen(), now)
	}
	got := mustBackpressure(t, s, "r")
	want := Backpressure{
		Level:            LevelLow,
		Ratio:            0.5,
		Samples:          2,
		SampleIntervalMs: 50,
		EndTimestamp:     now.UnixMilli(),
		QueueUsage:       0.75,
		BulkheadUsage:    1,
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if want.EndTimestamp%1000 != 223 { // start's .123 plus two 50 ms steps
		t.Fatalf("test setup: EndTimestamp %d has no millisecond part", want.EndTimestamp)
	}

	body, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"level":"low","ratio":0.5,"samples":2,"sample_interval_ms":50,"end_timestamp":` +
		jsonInt(now.UnixMilli()) + `,"queue_usage":0.75,"bulkhead_usage":1}`
	if string(body) != wantJSON {
		t.Fatalf("JSON\n got %s\nwant %s", body, wantJSON)
	}
}

func jsonInt(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Usage figures reach JSON, which has no NaN or Inf.
func TestSamplerClampsUsage(t *testing.T) {
	s, clk, _ := newTestSampler(t, 10)
	for _, tc := range []struct{ in, want float64 }{
		{math.NaN(), 0},
		{math.Inf(1), 1},
		{math.Inf(-1), 0},
		{-0.5, 0},
		{1.5, 1},
		{0.4, 0.4},
	} {
		s.SetSources(map[string]Source{"r": &fakeSource{queue: tc.in, bulkhead: tc.in}})
		step(s, clk, 1)
		bp := mustBackpressure(t, s, "r")
		if bp.QueueUsage != tc.want || bp.BulkheadUsage != tc.want {
			t.Errorf("usage %v reported as %v/%v, want %v", tc.in, bp.QueueUsage, bp.BulkheadUsage, tc.want)
		}
		if _, err := json.Marshal(bp); err != nil {
			t.Errorf("usage %v: %v", tc.in, err)
		}
	}
}

func TestSamplerSetSources(t *testing.T) {
	s, clk, _ := newTestSampler(t, 100)
	kept, dropped := &fakeSource{bp: true}, &fakeSource{bp: true}
	s.SetSources(map[string]Source{"kept": kept, "dropped": dropped})
	step(s, clk, 4)

	// A reload: "kept" comes back with a new Source (config reload builds
	// new admission objects), "dropped" goes, "new" arrives.
	kept2, added := &fakeSource{}, &fakeSource{bp: true}
	sources := map[string]Source{"kept": kept2, "new": added}
	s.SetSources(sources)
	sources["late"] = &fakeSource{} // the sampler copied the map

	wantRatio(t, s, "kept", 1, LevelHigh, 4)
	wantRatio(t, s, "new", 0, LevelOK, 0)
	for _, name := range []string{"dropped", "late"} {
		if _, ok := s.Backpressure(name); ok {
			t.Fatalf("%q is tracked", name)
		}
	}

	step(s, clk, 4)
	wantRatio(t, s, "kept", 0.5, LevelLow, 8) // history kept, new Source sampled
	wantRatio(t, s, "new", 1, LevelHigh, 4)
	if !kept.seen().Equal(start.Add(4 * testInterval)) {
		t.Fatalf("the replaced Source was sampled after SetSources (last at %v)", kept.seen())
	}

	// A name dropped and then added again starts empty.
	s.SetSources(map[string]Source{"kept": kept2})
	s.SetSources(map[string]Source{"kept": kept2, "new": added})
	wantRatio(t, s, "new", 0, LevelOK, 0)
	wantRatio(t, s, "kept", 0.5, LevelLow, 8)

	s.SetSources(nil)
	if _, ok := s.Backpressure("kept"); ok {
		t.Fatal("SetSources(nil) kept a route")
	}
	step(s, clk, 1) // a round with no routes is fine
}

func TestSamplerSetSourcesNil(t *testing.T) {
	s, _, _ := newTestSampler(t, 10)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `"r"`) {
			t.Fatalf("recovered %v, want a panic naming the route", r)
		}
	}()
	s.SetSources(map[string]Source{"r": nil})
}

// A panicking Source costs only its own route's sample; it is logged when it
// starts and when it stops, not every round.
func TestSamplerSourcePanics(t *testing.T) {
	s, clk, logs := newTestSampler(t, 100)
	bad, good := &fakeSource{bp: true}, &fakeSource{bp: true}
	s.SetSources(map[string]Source{"bad": bad, "good": good})
	step(s, clk, 2)

	bad.setPanics(3)
	step(s, clk, 3)
	wantRatio(t, s, "bad", 1, LevelHigh, 2)
	wantRatio(t, s, "good", 1, LevelHigh, 5)
	if bp := mustBackpressure(t, s, "bad"); bp.EndTimestamp != start.Add(2*testInterval).UnixMilli() {
		t.Fatalf("EndTimestamp %d moved on without a sample", bp.EndTimestamp)
	}

	step(s, clk, 1)
	wantRatio(t, s, "bad", 1, LevelHigh, 3)

	out := logs.String()
	if n := strings.Count(out, "backpressure source panicked"); n != 1 {
		t.Fatalf("panic logged %d times, want once:\n%s", n, out)
	}
	for _, want := range []string{"route=bad", "fake source broke", "works again", "skipped_samples=3"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
}

// runSampler starts Run and returns a stop function that cancels it and
// waits until the goroutine has returned.
func runSampler(t *testing.T, s *Sampler) (stop func()) {
	t.Helper()
	return runUntilStopped(t, s.Run)
}

// runUntilStopped runs run in a goroutine and returns a stop function,
// safe to call more than once and called at cleanup, that cancels run's
// context and waits until it has returned.
func runUntilStopped(t *testing.T, run func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// tick lets Run's armed timer fire n times. WaitTimers(1) returns only once
// Run has re-armed, that is, once the previous round is fully recorded.
func tick(clk *clock.Fake, interval time.Duration, n int) {
	for range n {
		clk.WaitTimers(1)
		clk.Advance(interval)
	}
	clk.WaitTimers(1)
}

func TestRunSamplesEveryInterval(t *testing.T) {
	s, clk, _ := newTestSampler(t, 100)
	s.SetSources(map[string]Source{"r": &fakeSource{bp: true}})
	stop := runSampler(t, s)

	clk.WaitTimers(1)
	if bp := mustBackpressure(t, s, "r"); bp.Samples != 0 {
		t.Fatalf("sampled %d times before the first interval", bp.Samples)
	}
	clk.Advance(testInterval - time.Nanosecond)
	if bp := mustBackpressure(t, s, "r"); bp.Samples != 0 || clk.Timers() != 1 {
		t.Fatalf("sampled before the interval was over: %+v", bp)
	}
	clk.Advance(time.Nanosecond)
	tick(clk, testInterval, 6)

	bp := mustBackpressure(t, s, "r")
	if bp.Samples != 7 {
		t.Fatalf("7 intervals gave %d samples", bp.Samples)
	}
	if want := start.Add(7 * testInterval).UnixMilli(); bp.EndTimestamp != want {
		t.Fatalf("EndTimestamp %d, want %d", bp.EndTimestamp, want)
	}

	stop()
	if n := clk.Timers(); n != 0 {
		t.Fatalf("%d timers left armed after Run returned", n)
	}
	clk.Advance(10 * testInterval)
	if bp := mustBackpressure(t, s, "r"); bp.Samples != 7 {
		t.Fatalf("sampled after cancel: %d samples", bp.Samples)
	}
}

func TestRunSourcePanicsOnce(t *testing.T) {
	s, clk, logs := newTestSampler(t, 100)
	src := &fakeSource{bp: true}
	s.SetSources(map[string]Source{"r": src})
	runSampler(t, s)

	tick(clk, testInterval, 2)
	src.setPanics(1)
	tick(clk, testInterval, 3)
	wantRatio(t, s, "r", 1, LevelHigh, 4)
	if !strings.Contains(logs.String(), "backpressure source panicked") {
		t.Fatalf("panic not logged:\n%s", logs)
	}
}

// panickyClock panics in the n-th call of Now, which Sample makes outside
// any Source: only Run's own recovery can catch that.
type panickyClock struct {
	*clock.Fake
	calls, at atomic.Int32
}

func (c *panickyClock) Now() time.Time {
	if c.calls.Add(1) == c.at.Load() {
		panic("clock broke")
	}
	return c.Fake.Now()
}

func TestRunRecoversRoundPanic(t *testing.T) {
	clk := &panickyClock{Fake: clock.NewFake(start)}
	clk.at.Store(2)
	logs := &syncBuffer{}
	s := NewSampler(testInterval, 100, clk, slog.New(slog.NewTextHandler(logs, nil)))
	s.SetSources(map[string]Source{"r": &fakeSource{bp: true}})
	runSampler(t, s)

	tick(clk.Fake, testInterval, 5)
	wantRatio(t, s, "r", 1, LevelHigh, 4)
	if out := logs.String(); !strings.Contains(out, "sampling round panicked") || !strings.Contains(out, "clock broke") {
		t.Fatalf("round panic not logged:\n%s", out)
	}
}

func TestSamplerDefaults(t *testing.T) {
	s := NewSampler(time.Second, 5, nil, nil)
	if s.Interval() != time.Second || s.Window() != 5 {
		t.Fatalf("Interval %v Window %d", s.Interval(), s.Window())
	}
	s.SetSources(map[string]Source{"r": &fakeSource{bp: true}})
	before := time.Now()
	s.Sample()
	if bp := mustBackpressure(t, s, "r"); bp.EndTimestamp < before.UnixMilli() {
		t.Fatalf("the nil clock is not the wall clock: EndTimestamp %d", bp.EndTimestamp)
	}
}
