package proxy

import (
	"context"
	"time"
)

// routeCtx is a request's context with its route's deadline, made into a
// real context only when something has to wait on it.
//
// context.WithTimeout per request costs a timer, a context and an entry in
// the child map of net/http's request context (a map made per request for
// it), and most requests never wait on any of it: a free bulkhead slot is
// taken without waiting, and the upstream exchange (h1.Transport) bounds
// its reads with the deadline itself. Deadline and Err answer without a
// real context; Done, and so any select or child context, makes it.
//
// A routeCtx belongs to its request's goroutine and lives in the pooled
// reqState: what is handed to other goroutines, or may outlive the request
// (ReverseProxy and its transport), gets real() instead.
type routeCtx struct {
	client   context.Context // the client's request context
	deadline time.Time       // the route's deadline; zero: no timeout
	ctx      context.Context // the real context, once made
	cancel   context.CancelFunc
}

var _ context.Context = (*routeCtx)(nil)

// real returns the route's context, making it on first use.
func (c *routeCtx) real() context.Context {
	if c.ctx == nil {
		if c.deadline.IsZero() {
			c.ctx = c.client
		} else {
			c.ctx, c.cancel = context.WithDeadline(c.client, c.deadline)
		}
	}
	return c.ctx
}

// release frees the real context, if one was made. The request is over.
func (c *routeCtx) release() {
	if c.cancel != nil {
		c.cancel()
	}
	*c = routeCtx{}
}

func (c *routeCtx) Deadline() (time.Time, bool) {
	d, ok := c.client.Deadline()
	if !c.deadline.IsZero() && (!ok || c.deadline.Before(d)) {
		return c.deadline, true
	}
	return d, ok
}

func (c *routeCtx) Done() <-chan struct{} { return c.real().Done() }

func (c *routeCtx) Err() error {
	if c.ctx != nil {
		return c.ctx.Err()
	}
	if err := c.client.Err(); err != nil {
		return err
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value asks the real context once there is one, so that a child context
// finds its parent's cancellation there and needs no goroutine to follow
// it (context.WithCancel looks its parent up by Value after calling Done).
func (c *routeCtx) Value(key any) any {
	if c.ctx != nil {
		return c.ctx.Value(key)
	}
	return c.client.Value(key)
}

// waitCtx is the context a queue wait is given: the route's deadline, as
// Deadline and Err report it, with the client's cancellation as Done. The
// bulkhead ends a wait at its context's deadline with the timer it arms
// for max_wait anyway, so a wait needs no deadline context of its own:
// making one (routeCtx.real) costs a timer, a context and its
// registration with the client's, for every request that queues — a
// share of each CoDel refusal's CPU. Nothing may derive a context from
// it: a child would follow the client's cancellation, not the deadline.
type waitCtx struct{ *routeCtx }

func (c waitCtx) Done() <-chan struct{} {
	if c.ctx != nil {
		return c.ctx.Done()
	}
	return c.client.Done()
}
