package server

import (
	"bufio"
	"context"
	"io"
	"sync"
	"time"
)

// bufferedWriter batches access-log lines: a write(2) per request would
// cost more than the rest of the log line, so lines are buffered and
// flushed every flushEvery, when the buffer fills, and on Close.
type bufferedWriter struct {
	mu sync.Mutex // guards w
	w  *bufio.Writer
}

const flushEvery = 100 * time.Millisecond

func newBufferedWriter(w io.Writer) *bufferedWriter {
	return &bufferedWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

// Flush writes out what is buffered.
func (b *bufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

// run flushes every flushEvery until ctx is done, then once more.
func (b *bufferedWriter) run(ctx context.Context) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = b.Flush()
			return
		case <-t.C:
			_ = b.Flush()
		}
	}
}
