package h1serve

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// reqCtx is a request's context. Its cancellation — the client leaving,
// or the handler returning — is made real only when someone asks for
// Done: then a context.WithCancel is made beneath it and, once the
// request has waited the server's watch delay, the connection is watched
// for the client leaving. Most requests never wait on their context, and
// then cost neither the watch nor the context.
type reqCtx struct {
	c     *conn
	mu    sync.Mutex // serialises making inner
	inner atomic.Pointer[cancelable]
	ended atomic.Bool
}

type cancelable struct {
	ctx    context.Context
	cancel context.CancelFunc
}

var _ context.Context = (*reqCtx)(nil)

func (x *reqCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

func (x *reqCtx) Done() <-chan struct{} { return x.real().Done() }

func (x *reqCtx) Err() error {
	if in := x.inner.Load(); in != nil {
		return in.ctx.Err()
	}
	if x.ended.Load() {
		return context.Canceled
	}
	return nil
}

// Value asks the real context once there is one, so that a child context
// finds the cancellation there and needs no goroutine to follow it
// (context.WithCancel looks its parent up by Value after calling Done).
func (x *reqCtx) Value(key any) any {
	if in := x.inner.Load(); in != nil {
		return in.ctx.Value(key)
	}
	return x.c.base.Value(key)
}

func (x *reqCtx) String() string { return "h1serve.requestContext" }

func (x *reqCtx) real() context.Context {
	if in := x.inner.Load(); in != nil {
		return in.ctx
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if in := x.inner.Load(); in != nil {
		return in.ctx
	}
	ctx, cancel := context.WithCancel(x.c.base)
	x.inner.Store(&cancelable{ctx, cancel})
	if x.ended.Load() {
		cancel()
	} else {
		x.c.armWatch(cancel)
	}
	return ctx
}

// end cancels the context: the handler has returned.
func (x *reqCtx) end() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ended.Store(true)
	if in := x.inner.Load(); in != nil {
		in.cancel()
	}
}
