package bulkhead

import "sync/atomic"

// Permit is a held slot. Release it exactly once, when the work is done.
// It is a small value (a pointer and a generation), so handing one out
// allocates nothing. The zero Permit is invalid.
type Permit struct {
	s   *permitState
	gen uint64 // s.gen when the permit was issued
}

// permitState is the recycled half of a Permit. Its generation moves
// forward once per Release, so every Permit value ever issued from it is
// valid for exactly one Release: a second Release of the same permit, or
// of a copy, finds the generation moved on and panics, even if the state
// has since been reissued to someone else.
type permitState struct {
	b    *Bulkhead
	gen  atomic.Uint64
	next *permitState // free list link, guarded by b.mu
}

// Release gives the slot back: to the next waiter if one is queued (by
// class, then discipline), else to the pool, or nowhere while a limit
// lowered by SetLimit drains. A second Release of the same permit panics
// before touching any count; Release never blocks beyond the bulkhead's
// short critical section.
func (p Permit) Release() {
	s := p.s
	if s == nil {
		panic("bulkhead: Release of the zero Permit")
	}
	// The CAS is what makes Release exactly-once: of two racing Releases
	// of one permit, only one moves the generation on.
	if !s.gen.CompareAndSwap(p.gen, p.gen+1) {
		panic("bulkhead: Permit released twice")
	}
	b := s.b
	b.mu.Lock()
	b.releaseLocked(s)
	b.mu.Unlock()
}

// issueLocked makes a Permit from a retired state, or a new one if none is
// free. The states in the free list have no live Permit: their generation
// is past every value handed out.
func (b *Bulkhead) issueLocked() Permit {
	s := b.free
	if s == nil {
		s = &permitState{b: b}
	} else {
		b.free = s.next
		s.next = nil
	}
	return Permit{s: s, gen: s.gen.Load()}
}
