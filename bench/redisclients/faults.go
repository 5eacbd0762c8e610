package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// budget is sluice's decision budget: no request may wait longer than this
// for Redis.
const budget = 5 * time.Millisecond

// timeoutReport is what happens on the call after one whose context
// expired while Redis did not answer.
type timeoutReport struct {
	client        string
	timedOut      time.Duration // how long the expiring call took
	timedOutErr   string
	next          time.Duration // the next call, right after Redis answers again
	nextErr       string
	nextOK        bool // the next call's reply is a valid decision
	after10Max    time.Duration
	after10Errs   int
	connsOpened   int64 // connections the client opened because of the timeout
	lateReplyMixd bool  // a later call got a reply shaped like another call's
}

// checkTimeout warms a client, pauses Redis so that one call's 5 ms
// deadline expires in flight, resumes Redis, and watches the next calls on
// the same client.
func checkTimeout(kind string, s *server) (*timeoutReport, error) {
	t, err := newTaker(kind, s.addr)
	if err != nil {
		return nil, err
	}
	defer t.close()
	call := t.newCaller("fault:{timeout}")
	for range 20 {
		if _, err := call(context.Background()); err != nil {
			return nil, err
		}
	}
	time.Sleep(100 * time.Millisecond) // idle-connection refill settles
	before, err := s.info("stats")
	if err != nil {
		return nil, err
	}
	rep := &timeoutReport{client: kind}
	s.pause()
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	t0 := time.Now()
	_, err = call(ctx)
	rep.timedOut = time.Since(t0)
	cancel()
	rep.timedOutErr = errString(err)
	time.Sleep(20 * time.Millisecond)
	s.resume()
	ctx, cancel = context.WithTimeout(context.Background(), budget)
	t0 = time.Now()
	d, err := call(ctx)
	rep.next = time.Since(t0)
	cancel()
	rep.nextErr = errString(err)
	rep.nextOK = err == nil && d.got == benchWant
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), budget)
		t0 := time.Now()
		d, err := call(ctx)
		rep.after10Max = max(rep.after10Max, time.Since(t0))
		cancel()
		if err != nil {
			rep.after10Errs++
		} else if d.got != benchWant {
			rep.lateReplyMixd = true
		}
	}
	time.Sleep(100 * time.Millisecond)
	after, err := s.info("stats")
	if err != nil {
		return nil, err
	}
	rep.connsOpened = intField(after, "total_connections_received") - intField(before, "total_connections_received") - 1
	return rep, nil
}

// outageReport is what callers saw while Redis was down or stalled and
// once it was back.
type outageReport struct {
	client, fault string
	conc          int
	down          time.Duration // how long the fault lasted

	callsDuring, failsDuring int
	p50During, maxDuring     time.Duration
	overBudgetDuring         int
	errSample                string

	recovered     bool
	toFirstOK     time.Duration // from Redis answering again to the first good reply
	failsAfter    int           // failed calls started after Redis was back
	maxAfter      time.Duration
	connsAfter    int64    // connections the server accepted from the client after it came back
	okAfterLastMs int      // good replies in the last 100 ms of the run
	slow          []string // the slowest calls over budget: start (from the fault), duration, error
}

type event struct {
	start, end time.Time
	err        error
}

// checkOutage runs conc callers, each calling with a 5 ms deadline and
// 200 µs between calls, and in the middle either kills Redis and starts it
// again on the same port after down ("kill"), or stops it with SIGSTOP for
// down ("stall"). The same client object lives through it all.
func checkOutage(kind, fault string, s *server, conc int, down time.Duration) (*outageReport, error) {
	t, err := newTaker(kind, s.addr)
	if err != nil {
		return nil, err
	}
	defer t.close()
	var mu sync.Mutex // guards events
	var events []event
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := range conc {
		call := t.newCaller("fault:{" + fault + strconv.Itoa(i%keyCount) + "}")
		if _, err := call(context.Background()); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), budget)
				t0 := time.Now()
				_, err := call(ctx)
				t1 := time.Now()
				cancel()
				mu.Lock()
				events = append(events, event{t0, t1, err})
				mu.Unlock()
				time.Sleep(200 * time.Microsecond)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	var before map[string]string
	faultStart := time.Now()
	switch fault {
	case "kill":
		s.kill()
		time.Sleep(down)
		if err := s.start(); err != nil {
			stop.Store(true)
			wg.Wait()
			return nil, err
		}
		// start returns once PING is answered: the server is back.
	case "stall":
		before, _ = s.info("stats")
		s.pause()
		time.Sleep(down)
		s.resume()
	}
	back := time.Now()
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()
	after, err := s.info("stats")
	if err != nil {
		return nil, err
	}

	rep := &outageReport{client: kind, fault: fault, conc: conc, down: back.Sub(faultStart)}
	var during []time.Duration
	var slow []event
	var firstOK time.Time
	end := events[len(events)-1].end
	for _, e := range events {
		d := e.end.Sub(e.start)
		switch {
		case e.start.Before(faultStart):
		case e.start.Before(back):
			rep.callsDuring++
			during = append(during, d)
			if e.err != nil {
				rep.failsDuring++
				if rep.errSample == "" {
					rep.errSample = errString(e.err)
				}
			}
			if d > budget+budget/5 {
				rep.overBudgetDuring++
				slow = append(slow, e)
			}
		default:
			if e.err != nil {
				rep.failsAfter++
			} else if firstOK.IsZero() || e.end.Before(firstOK) {
				firstOK = e.end
			}
			rep.maxAfter = max(rep.maxAfter, d)
			if e.err == nil && end.Sub(e.end) < 100*time.Millisecond {
				rep.okAfterLastMs++
			}
		}
	}
	sort.Slice(slow, func(i, j int) bool { return slow[i].end.Sub(slow[i].start) > slow[j].end.Sub(slow[j].start) })
	for _, e := range slow[:min(len(slow), 4)] {
		rep.slow = append(rep.slow, fmt.Sprintf("+%v took %v: %s", rd(e.start.Sub(faultStart)), rd(e.end.Sub(e.start)), errString(e.err)))
	}
	if len(during) > 0 {
		sort.Slice(during, func(i, j int) bool { return during[i] < during[j] })
		rep.p50During = during[len(during)/2]
		rep.maxDuring = during[len(during)-1]
	}
	if !firstOK.IsZero() {
		rep.recovered = true
		rep.toFirstOK = max(firstOK.Sub(back), 0)
	}
	switch fault {
	case "kill":
		// The restarted server counts from zero; the PING that said it was
		// back and this INFO are its only other connections.
		rep.connsAfter = intField(after, "total_connections_received") - 2
	case "stall":
		rep.connsAfter = intField(after, "total_connections_received") - intField(before, "total_connections_received") - 1
	}
	return rep, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return fmt.Sprintf("%T: %s", err, s)
}
