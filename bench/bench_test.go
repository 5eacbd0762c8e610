package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const wrkOutput = `Running 10s test @ http://127.0.0.1:8080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   635.91us    0.89ms  12.92ms   93.69%
    Req/Sec    56.20k     8.07k   62.00k    86.54%
  Latency Distribution
     50%  250.00us
     75%  491.00us
     90%  700.00us
     99%    5.79ms
  1120552 requests in 10.01s, 140.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec: 111925.71
Transfer/sec:     13.98MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{RPS: 111925.71, P50: 250 * time.Microsecond, P99: 5790 * time.Microsecond, Non2xx: 12, Errors: 3}
	if r != want {
		t.Errorf("parseWrk = %+v, want %+v", r, want)
	}
	if _, err := parseWrk("wrk: connection refused\n"); err == nil {
		t.Error("parseWrk accepted output without figures")
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"250.00us": 250 * time.Microsecond, "1.50ms": 1500 * time.Microsecond,
		"2.00s": 2 * time.Second, "1.50m": 90 * time.Second,
	} {
		if got, err := parseWrkDuration(in); err != nil || got != want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseWrkDuration("3h"); err == nil {
		t.Error("parseWrkDuration accepted an unknown unit")
	}
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want response
		rest string // what must remain unread: the next response
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcNEXT", response{200, false, true}, "NEXT"},
		{"refusal with retry-after", "HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\nContent-Length: 0\r\n\r\nNEXT", response{503, true, true}, "NEXT"},
		{"chunked with trailer", "HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nNEXT", response{429, false, true}, "NEXT"},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nxNEXT", response{200, false, false}, "NEXT"},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nxNEXT", response{200, false, false}, "NEXT"},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nbody to the end", response{200, false, false}, ""},
		{"no body for 204", "HTTP/1.1 204 No Content\r\n\r\nNEXT", response{204, false, true}, "NEXT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.raw))
			got, err := readResponse(br)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("readResponse = %+v, want %+v", got, tc.want)
			}
			if rest, _ := io.ReadAll(br); string(rest) != tc.rest {
				t.Errorf("left %q unread, want %q", rest, tc.rest)
			}
		})
	}
	for _, bad := range []string{"", "HTTP/1.1 2x0 OK\r\n\r\n", "SSH-2.0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"} {
		if _, err := readResponse(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("readResponse(%q) accepted a broken response", bad)
		}
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i))
	}
	if q := quantile(ds, 0.5); q != 50 {
		t.Errorf("p50 = %d, want 50", q)
	}
	if q := quantile(ds, 0.99); q != 99 {
		t.Errorf("p99 = %d, want 99", q)
	}
	if q := quantile(nil, 0.99); q != 0 {
		t.Errorf("p99 of nothing = %d", q)
	}
}

func TestP99AnsweredCountsLostAsTimeout(t *testing.T) {
	res := &openResult{OKLat: []time.Duration{1, 2, 3}, Lost: 1}
	if p, ok := p99Answered(res, time.Second); !ok || p != time.Second {
		t.Errorf("p99Answered = %v, %v; want the timeout", p, ok)
	}
	if _, ok := p99Answered(&openResult{}, time.Second); ok {
		t.Error("p99Answered of a run that only refused reported a figure")
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1 000", 1234567.4: "1 234 567", -12345: "-12 345"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestChartsAreXML: every chart parses as XML, with the names escaped.
func TestChartsAreXML(t *testing.T) {
	rows := []overloadRow{
		{Proxy: "sluice", Factor: 2, Res: &openResult{OKLat: []time.Duration{time.Millisecond}, Measured: time.Second, OK: 1}},
		{Proxy: "a<b>&c", Factor: 5, Res: &openResult{Lost: 3, Measured: time.Second}},
	}
	for _, r := range rows {
		r.Res.summarize(time.Second)
	}
	over := []overheadRow{{Target: "x&y", Runs: []wrkResult{{RPS: 100, P99: time.Millisecond}}}}
	for name, svg := range map[string]string{
		"p99": overloadP99Chart(rows, time.Second), "goodput": goodputChart(rows), "overhead": overheadChart(over),
	} {
		dec := xml.NewDecoder(strings.NewReader(svg))
		for {
			_, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s chart is not XML: %v\n%s", name, err, svg)
			}
		}
	}
}

// TestFastUpstream: the hand-written upstream answers requests one after
// another on a keep-alive connection, skips request bodies, and closes
// after Connection: close.
func TestFastUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFastConn(c, []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), time.Minute)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	reqs := []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	}
	for i, req := range reqs {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		r, err := readResponse(br)
		if err != nil || r.status != 200 {
			t.Fatalf("request %d: %+v, %v", i, r, err)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("connection not closed after Connection: close (%v)", err)
	}
}

// TestOpenLoopCounts: every scheduled request is accounted for exactly
// once, as OK, refused (with or without Retry-After) or lost.
func TestOpenLoopCounts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	res, err := runOpen(context.Background(), openLoad{
		Addr: strings.TrimPrefix(srv.URL, "http://"), Path: "/", Rate: 400,
		Warmup: 50 * time.Millisecond, Duration: 250 * time.Millisecond, Timeout: 10 * time.Second, MaxConns: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 100 {
		t.Errorf("sent %d in the counted part, want 100 (250 ms at 400/s)", res.Sent)
	}
	if res.OK+res.Rejected+res.Lost != res.Sent || res.OK != len(res.OKLat) {
		t.Errorf("accounting: %d ok + %d refused + %d lost != %d sent (%d latencies)", res.OK, res.Rejected, res.Lost, res.Sent, len(res.OKLat))
	}
	if res.Lost != 0 {
		t.Errorf("lost %d of a local server's answers: %+v", res.Lost, res.Other)
	}
	if res.OKDone == 0 || res.OKDone > res.Sent+20 {
		t.Errorf("%d answers arrived in the counted window of %d requests", res.OKDone, res.Sent)
	}
}

// TestOpenLoopRefusals: 503 and 429 are refusals, with Retry-After
// counted; other statuses are lost.
func TestOpenLoopRefusals(t *testing.T) {
	i := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i++
		switch i % 4 {
		case 0:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(503)
		case 1:
			w.WriteHeader(429)
		case 2:
			w.WriteHeader(502)
		default:
			w.Write([]byte("ok"))
		}
	}))
	defer srv.Close()
	res, err := runOpen(context.Background(), openLoad{
		Addr: strings.TrimPrefix(srv.URL, "http://"), Path: "/", Rate: 200,
		Duration: 200 * time.Millisecond, Timeout: 10 * time.Second, MaxConns: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// One connection: the server sees requests in order, so the counts
	// are exact.
	if res.Sent != 40 || res.OK != 10 || res.Rejected != 20 || res.RetryHint != 10 || res.Lost != 10 || res.Other[502] != 10 {
		t.Errorf("got %+v", res)
	}
}

// The capped row's memory check compares 30× with 20× only where the cap
// bound in both runs; otherwise the doc says it is not judged.
func TestSaturatedMemoryCheckNeedsTheCapBinding(t *testing.T) {
	refused := func(n uint64) *uint64 { return &n }
	row := func(f float64, rss int64, conns *uint64) saturatedRow {
		return saturatedRow{Proxy: cappedPeer, Factor: f, Res: &openResult{}, RSS: rss << 20, ConnsRefused: conns}
	}
	memCheck := func(r *saturatedResult) *check {
		for _, c := range r.checks() {
			if strings.Contains(c.Target, "RSS bounded") {
				return &c
			}
		}
		return nil
	}
	unbound := &saturatedResult{Rows: []saturatedRow{row(20, 37, refused(0)), row(30, 66, refused(5000))}}
	if c := memCheck(unbound); c != nil {
		t.Errorf("cap not binding at 20×: got check %+v, want none", *c)
	}
	if n := unbound.capNote(); !strings.Contains(n, "20× 0, 30× 5 000") || !strings.Contains(n, "not judged") || strings.Contains(n, "under it at both") {
		t.Errorf("capNote = %q", n)
	}
	under := &saturatedResult{Rows: []saturatedRow{row(20, 37, refused(0)), row(30, 38, refused(0))}}
	if n := under.capNote(); !strings.Contains(n, "not judged") || !strings.Contains(n, "kept its connections under it at both (peak RSS 37.0 MiB at 20×, 38.0 MiB at 30×)") {
		t.Errorf("capNote, cap never binding = %q", n)
	}
	for _, tc := range []struct {
		rss20, rss30 int64
		met          bool
	}{{66, 67, true}, {40, 66, false}} {
		r := &saturatedResult{Rows: []saturatedRow{row(20, tc.rss20, refused(10)), row(30, tc.rss30, refused(5000))}}
		c := memCheck(r)
		if c == nil || c.Met != tc.met {
			t.Errorf("RSS %d → %d MiB, cap binding in both: check %+v, want met=%t", tc.rss20, tc.rss30, c, tc.met)
		}
		if n := r.capNote(); strings.Contains(n, "not judged") {
			t.Errorf("capNote = %q, want it judged", n)
		}
	}
}

func TestSaturatedMemoryCheckUnrecorded(t *testing.T) {
	r := &saturatedResult{Rows: []saturatedRow{
		{Proxy: cappedPeer, Factor: 20, Res: &openResult{}, RSS: 37 << 20},
		{Proxy: cappedPeer, Factor: 30, Res: &openResult{}, RSS: 66 << 20},
	}}
	for _, c := range r.checks() {
		if strings.Contains(c.Target, "RSS bounded") {
			t.Errorf("no connection counts: got check %+v, want none", c)
		}
	}
	if n := r.capNote(); !strings.Contains(n, "did not record") {
		t.Errorf("capNote = %q, want it to say the counts were not recorded", n)
	}
}

// The overhead table shows the CPU per request of each proxy, "–" where
// none was measured, and the verdict compares sluice's with the floor's.
func TestOverheadCPUPerRequest(t *testing.T) {
	rows := []overheadRow{
		{Target: "direct (no proxy)", Runs: []wrkResult{{RPS: 100000, P99: time.Millisecond}}},
		{Target: floorRow, Runs: []wrkResult{{RPS: 80000, P50: 800 * time.Microsecond, P99: 2 * time.Millisecond, CPUPerReq: 11500 * time.Nanosecond}}},
		{Target: "sluice", Runs: []wrkResult{{RPS: 50000, P50: 1200 * time.Microsecond, P99: 5 * time.Millisecond, CPUPerReq: 23 * time.Microsecond}}},
	}
	table, _ := overheadTable(rows)
	for _, want := range []string{"| CPU per request |", "| direct (no proxy) | 100 000 | 100 % | – | 1.00 ms | – |", "| 11.5 µs |", "| 23.0 µs |"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if v := cpuVerdict(rows); !strings.Contains(v, "23.0 µs of CPU per request and the floor 11.5 µs (2.0×)") || !strings.Contains(v, "p50 was 1.50× the floor's and its p99 2.50×") {
		t.Errorf("cpuVerdict = %q", v)
	}
	rows[1].Runs[0].CPUPerReq = 0 // a run saved before the CPU was measured
	if v := cpuVerdict(rows); v != "" {
		t.Errorf("cpuVerdict without the floor's CPU = %q, want none", v)
	}
}

// The work table lists the floor, each amount of work and sluice with
// their p99 against the floor's; the verdict gives the most work within
// 1.5× the floor's p99 and the work row nearest sluice's CPU per request.
func TestWorkSection(t *testing.T) {
	us := time.Microsecond
	rows := []overheadRow{
		{Target: floorRow, Runs: []wrkResult{{RPS: 80000, P50: 700 * us, P99: 2 * time.Millisecond, CPUPerReq: 10 * us}}},
		{Target: "sluice", Runs: []wrkResult{{RPS: 55000, P50: 1000 * us, P99: 5400 * us, CPUPerReq: 19 * us}}},
	}
	work := []workRow{
		{Work: us, overheadRow: overheadRow{Runs: []wrkResult{{RPS: 78000, P50: 710 * us, P99: 2800 * us, CPUPerReq: 11 * us}}}},
		{Work: 2 * us, overheadRow: overheadRow{Runs: []wrkResult{{RPS: 72000, P50: 770 * us, P99: 4 * time.Millisecond, CPUPerReq: 13 * us}}}},
		{Work: 8 * us, overheadRow: overheadRow{Runs: []wrkResult{{RPS: 50000, P50: 1100 * us, P99: 7 * time.Millisecond, CPUPerReq: 20 * us}}}},
	}
	table, verdict := workSection(rows, work)
	for _, want := range []string{
		"| nothing added (the floor row) | 80 000 | 700 µs | 2.00 ms | 1.00× | 10.0 µs |",
		"| 1 µs of busy work | 78 000 | 710 µs | 2.80 ms | 1.40× | 11.0 µs |",
		"| 8 µs of busy work | 50 000 | 1.10 ms | 7.00 ms | 3.50× | 20.0 µs |",
		"| *sluice (its overhead row)* | 55 000 | 1.00 ms | 5.40 ms | 2.70× | 19.0 µs |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, want := range []string{"adds up to 1 µs of CPU work per request keeps its p99 within 1.5×",
		"sluice's CPU per request (19.0 µs) is nearest the floor's with 8 µs of work (20.0 µs), whose p99 was 3.50× the floor's; sluice's was 2.70×."} {
		if !strings.Contains(verdict, want) {
			t.Errorf("verdict lacks %q: %q", want, verdict)
		}
	}
	work[0].Runs[0].P99 = 3100 * us // now no amount of work keeps within 1.5×
	if _, v := workSection(rows, work); !strings.Contains(v, "Even 1 µs of CPU work per request takes the floor's own p99 past 1.5×") {
		t.Errorf("verdict with no work within the target = %q", v)
	}
	if tb, v := workSection(rows, nil); tb != "" || v != "" {
		t.Errorf("without work rows: %q %q, want none", tb, v)
	}
}

// The open-loop table gives, per rate, the median p50 and p99 of the
// floor, sluice and HAProxy over the rounds, and sluice's p99 against the
// floor's; the verdict sorts the rates by the 1.5× bound.
func TestOpenSection(t *testing.T) {
	us := time.Microsecond
	run := func(p50, p99 time.Duration, lost int) openRun { return openRun{P50: p50, P99: p99, Lost: lost} }
	rows := []openRow{
		{Target: floorRow, Rate: 5000, Runs: []openRun{run(600*us, 1400*us, 0), run(610*us, 1300*us, 0), run(590*us, 9*time.Millisecond, 0)}},
		{Target: floorRow, Rate: 20000, Runs: []openRun{run(540*us, 1600*us, 0)}},
		{Target: "sluice", Rate: 5000, Runs: []openRun{run(620*us, 1500*us, 1), run(600*us, 1450*us, 0), run(615*us, 1600*us, 0)}},
		{Target: "sluice", Rate: 20000, Runs: []openRun{run(530*us, 3600*us, 0)}},
		{Target: "HAProxy", Rate: 5000, Runs: []openRun{run(500*us, 1000*us, 0)}},
	}
	table, verdict := openSection(rows)
	for _, want := range []string{
		"| 5 000 req/s | 600 µs / 1.40 ms | 615 µs / 1.50 ms | 1.07× | 500 µs / 1.00 ms | 1 |",
		"| 20 000 req/s | 540 µs / 1.60 ms | 530 µs / 3.60 ms | 2.25× | – | 0 |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if want := "within 1.5× the floor's at 5 000 req/s (1.07×), and went past it at 20 000 req/s (2.25×)."; !strings.Contains(verdict, want) {
		t.Errorf("verdict = %q, want it to contain %q", verdict, want)
	}
	if tb, v := openSection(nil); tb != "" || v != "" {
		t.Errorf("before the part ran: %q %q, want none", tb, v)
	}
}
