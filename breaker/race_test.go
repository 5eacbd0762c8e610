//go:build race

package breaker_test

// raceEnabled reports whether the race detector is on; under it sync.Pool
// drops items at random, so allocation counts are not meaningful.
const raceEnabled = true
