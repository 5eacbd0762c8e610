package adaptive

import (
	"sync"
	"testing"
	"time"
)

// TestConcurrentUse calls OnSample and Limit from many goroutines at once,
// with finish times out of order as they are from real requests; run it
// with -race. The limit must stay in bounds throughout.
func TestConcurrentUse(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.name, func(t *testing.T) {
			o := Options{Initial: 20, Min: 2, Max: 64}
			l := alg.new(o)
			const workers, each = 16, 2000
			var wg sync.WaitGroup
			errs := make(chan string, workers)
			for w := range workers {
				wg.Go(func() {
					now := epoch.Add(time.Duration(w) * time.Millisecond)
					for i := range each {
						now = now.Add(time.Duration(1+(i*7+w)%5) * time.Millisecond)
						rtt := time.Duration(10+(i+w)%40) * time.Millisecond
						got, _ := l.OnSample(now, rtt, 1+(i+w)%70, (i+w)%97 == 0)
						if lim := l.Limit(); got < o.Min || got > o.Max || lim < o.Min || lim > o.Max {
							errs <- "limit out of bounds"
							return
						}
					}
				})
			}
			wg.Go(func() { // a reader only, as an admission fast path is
				for range workers * each {
					if lim := l.Limit(); lim < o.Min || lim > o.Max {
						errs <- "Limit out of bounds"
						return
					}
				}
			})
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Fatal(e)
			}
		})
	}
}
