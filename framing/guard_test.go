package framing

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// chunkConn is a connection whose reads return the given chunks in turn,
// then EOF: the guard's input, split as the network may split it.
type chunkConn struct {
	net.Conn // nil: only Read and RemoteAddr are used
	chunks   [][]byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *chunkConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// guardOutput is what net/http reads through the guard from in, split into
// the given chunks, with reads of size readSize.
func guardOutput(g *Guard, chunks []string, readSize int) string {
	cc := &chunkConn{}
	for _, c := range chunks {
		cc.chunks = append(cc.chunks, []byte(c))
	}
	gc := g.wrap(cc)
	var out strings.Builder
	p := make([]byte, readSize)
	for {
		n, err := gc.Read(p)
		out.Write(p[:n])
		if err != nil {
			return out.String()
		}
	}
}

// TestGuardStream feeds byte streams through the guard, split at every
// point into two reads and read back one byte and 4 KiB at a time: the
// output never depends on how the stream was split.
func TestGuardStream(t *testing.T) {
	const (
		get      = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
		both     = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
		// A body that holds what looks like a conflicting request.
		decoy = "\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	)
	withBody := fmt.Sprintf("POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(decoy), decoy)
	cases := []struct {
		name, in, want string
	}{
		{"pipelined gets pass", get + get, get + get},
		{"a body is not read as a request", withBody + get, withBody + get},
		{"both headers: poison after the requests before", get + both + smuggled, get + poison},
		{"any case, bare LF", "POST / HTTP/1.1\ntransfer-encoding: chunked\ncontent-length: 3\n\nabc", poison},
		{"content-length first", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\nabc", poison},
		{"folded transfer-encoding", "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc", poison},
		// From here on net/http itself, or the close after the request,
		// keeps the stream safe: the guard lets it pass.
		{"chunked alone: not followed after", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + both, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + both},
		{"upgrade: not followed after", "GET / HTTP/1.1\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n" + both, "GET / HTTP/1.1\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n" + both},
		{"invalid content-length: net/http refuses it", "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n" + both, "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n" + both},
		{"differing content-lengths: net/http refuses them", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" + both, "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" + both},
		{"space before the colon: net/http refuses it", "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc"},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + both, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + both},
		{"truncated head passes at EOF", get + "GET / HTTP/1.1\r\nHost:", get + "GET / HTTP/1.1\r\nHost:"},
		{"head over the limit: net/http refuses it (431)", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 300) + "\r\n\r\n" + both, "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 300) + "\r\n\r\n" + both},
	}
	g := &Guard{maxHead: 256}
	var poisoned uint64
	for _, tc := range cases {
		if strings.HasSuffix(tc.want, poison) {
			poisoned += 2 * uint64(len(tc.in)+1)
		}
		for split := 0; split <= len(tc.in); split++ {
			for _, rs := range []int{1, 4096} {
				got := guardOutput(g, []string{tc.in[:split], tc.in[split:]}, rs)
				if got != tc.want {
					t.Fatalf("%s (split at %d, reads of %d):\n got %q\nwant %q", tc.name, split, rs, got, tc.want)
				}
			}
		}
	}
	if n := g.Rejected(); n != poisoned {
		t.Errorf("counted %d refusals, want %d", n, poisoned)
	}
}

// BenchmarkGuard is the guard's cost per request: a typical proxied GET's
// header block, judged and handed out.
func BenchmarkGuard(b *testing.B) {
	req := []byte("GET /api/v1/items?id=42 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip\r\nX-Request-Id: 0123456789abcdef\r\n\r\n")
	src := &repeatConn{req: req}
	gc := (&Guard{maxHead: 1 << 20}).wrap(src)
	p := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		for n := 0; n < len(req); {
			k, err := gc.Read(p)
			if err != nil {
				b.Fatal(err)
			}
			n += k
		}
	}
}

// repeatConn reads the same request forever, one request per read.
type repeatConn struct {
	net.Conn
	req []byte
}

func (c *repeatConn) Read(p []byte) (int, error) { return copy(p, c.req), nil }

// TestParseErrorAnswer: net/http's own error answers (server.go,
// conn.serve), byte for byte, are recognised; anything else, however
// close, is not.
func TestParseErrorAnswer(t *testing.T) {
	const eh = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	for _, tc := range []struct {
		in   string
		code int
		text string
	}{
		{"HTTP/1.1 400 Bad Request" + eh + "400 Bad Request", 400, ""},
		{"HTTP/1.1 431 Request Header Fields Too Large" + eh + "431 Request Header Fields Too Large", 431, ""},
		{"HTTP/1.1 501 Not Implemented" + eh + "Unsupported transfer encoding", 501, ""},
		{"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version" + eh + "505 HTTP Version Not Supported: unsupported protocol version", 505, "unsupported protocol version"},
		{"HTTP/1.1 400 Bad Request: invalid header name" + eh + "400 Bad Request: invalid header name", 400, "invalid header name"},
		// Not net/http's own.
		{"HTTP/1.1 400 Bad Request\r\nDate: Wed, 02 Dec 2026 19:00:00 GMT" + eh + "400 Bad Request", 0, ""},
		{"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 15\r\nConnection: close\r\n\r\n400 Bad Request", 0, ""},
		{"HTTP/1.1 400 Bad Request" + eh + "400 Bad Request\n", 0, ""},
		{"HTTP/1.1 400 Bad Request" + eh + "something else", 0, ""},
		{"HTTP/1.1 400 Bad Requests" + eh + "400 Bad Requests", 0, ""},
		{"HTTP/1.1 200 OK" + eh + "200 OK", 0, ""},
		{"HTTP/1.1 400 Bad Request" + eh, 0, ""},
		{"HTTP/1.1 502 Bad Gateway" + eh + "Unsupported transfer encoding", 0, ""},
		{"HTTP/1.1 501 Not Implemented: x" + eh + "Unsupported transfer encoding", 0, ""},
		{"HTTP/1.0 400 Bad Request" + eh + "400 Bad Request", 0, ""},
	} {
		code, text, ok := 0, "", false
		if strings.HasPrefix(tc.in, errorStart) {
			code, text, ok = parseErrorAnswer([]byte(tc.in))
		}
		if ok != (tc.code != 0) || code != tc.code || text != tc.text {
			t.Errorf("%q: %d %q %v, want %d %q", tc.in, code, text, ok, tc.code, tc.text)
		}
	}
	if http.StatusText(505) != "HTTP Version Not Supported" {
		t.Fatal("net/http's status texts changed: update the cases above")
	}
}

// BenchmarkWrite is the guard's cost per response write: a short handler
// response, looked at and passed on.
func BenchmarkWrite(b *testing.B) {
	resp := []byte("HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 19:00:00 GMT\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: 2\r\n\r\nok")
	gc := (&Guard{maxHead: 1 << 20}).wrap(discardConn{})
	b.ReportAllocs()
	b.SetBytes(int64(len(resp)))
	for b.Loop() {
		if _, err := gc.Write(resp); err != nil {
			b.Fatal(err)
		}
	}
}

// discardConn accepts every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }
