// Package testutil holds helpers shared by sluice's tests.
package testutil

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// RawExchange writes raw (requests as bytes, pipelined as the test likes)
// on c, a connection to an HTTP/1 server, and reads the answers until the
// server closes the connection or sends a response that closes it. Each
// body is read to its end. A read error other than the connection ending
// (a timeout: the server hung) fails the test.
func RawExchange(t testing.TB, c net.Conn, raw string) []*http.Response {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var got []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			// ReadResponse reports a clean close as an unexpected EOF.
			if err != io.ErrUnexpectedEOF && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after %d answers: %v", len(got), err)
			}
			return got
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, resp)
		if resp.Close {
			return got
		}
	}
}

// KeepAliveGet sends one keep-alive GET of target to host on c, a
// connection to an HTTP/1 server, reads the answer through br (which the
// caller keeps for the connection's next answers) to its end, and returns
// it, leaving the connection open.
func KeepAliveGet(t testing.TB, c net.Conn, br *bufio.Reader, host, target string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// WaitFor polls cond until it holds, failing the test after 10 s: for
// conditions another goroutine or process brings about (a listener up, a
// file reloaded), never to time the code under test.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// RequestHead builds the raw head of an HTTP/1.1 request as the fuzz
// tests of request heads do: the request line, a Host unless lines has
// one, and lines split at "\n" into CRLF-terminated header lines, then
// the empty line.
func RequestHead(method, target, lines string) string {
	raw := method + " " + target + " HTTP/1.1\r\n"
	if !strings.Contains(strings.ToLower(lines), "host:") {
		raw += "Host: shop.example\r\n"
	}
	for l := range strings.SplitSeq(lines, "\n") {
		if l != "" {
			raw += l + "\r\n"
		}
	}
	return raw + "\r\n"
}
