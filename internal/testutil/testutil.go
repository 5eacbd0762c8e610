// Package testutil holds helpers shared by sluice's tests.
package testutil

import (
	"bytes"
	"sync"
)

// SyncBuffer is a log sink a test can read while the code under test
// writes to it from other goroutines.
type SyncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
