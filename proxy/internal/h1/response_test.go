package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// goHead is the head net/http's server writes for a small answer, as the
// overhead benchmark's upstream does.
const goHead = "HTTP/1.1 200 OK\r\nContent-Length: 128\r\nContent-Type: text/plain\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n"

// commonHeads are read by readCommonResponse; fallbackHeads are left to
// http.ReadResponse. Each is a whole exchange's answer (head, body and
// whatever follows) to the method before the first space of the name.
var commonHeads = map[string]string{
	"GET go":             goHead + strings.Repeat("x", 128) + "HTTP/1.1 204 No Content\r\n\r\n",
	"GET nginx":          "HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 5\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"659200-5\"\r\nAccept-Ranges: bytes\r\n\r\nhello",
	"GET envoy":          "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 19\r\ncontent-type: text/plain\r\nx-envoy-upstream-service-time: 3\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\nserver: envoy\r\n\r\nno healthy upstream",
	"GET close":          "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nConnection: x-a\r\nContent-Length: 2\r\n\r\nok",
	"GET cookies":        "HTTP/1.1 302 Found\r\nLocation: /a\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2; Path=/\r\nContent-Length: 0\r\n\r\n",
	"GET spaces":         "HTTP/1.1 200 \r\nX-Empty:\r\nX-Pad: \t a b \t\r\nX-Bare:c\r\ncontent-LENGTH:  3 \r\n\r\nabcdef",
	"GET no reason":      "HTTP/1.1 404\r\nContent-Length: 1\r\n\r\nx",
	"GET pragma":         "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n",
	"GET pragma cc":      "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nCache-Control: max-age=1\r\nContent-Length: 0\r\n\r\n",
	"GET zeros":          "HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n1234567",
	"GET trailer":        "HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 1\r\n\r\nx",
	"GET 204":            "HTTP/1.1 204 No Content\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\nHTTP/1.1 200 OK\r\n",
	"GET 304":            "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n",
	"HEAD with length":   "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
	"HEAD without":       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
	"GET short body":     "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
	"GET token names":    "HTTP/1.1 200 OK\r\nx-a_b.c~d!#$%&'*+^`|: v\r\nContent-Length: 0\r\n\r\n",
	"GET status only":    "HTTP/1.1 204 No Content\r\n\r\n",
	"GET long value":     "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("v", 3000) + "\r\nContent-Length: 0\r\n\r\n",
	"GET hop names":      "HTTP/1.1 200 OK\r\nConnection: X-Hop, x-end\r\nX-Hop: 1\r\nX-End: upstream's\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Kept: 1\r\nContent-Length: 0\r\n\r\n",
	"GET hop close":      "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n",
	"GET hop pragma":     "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nConnection: cache-control\r\nContent-Length: 0\r\n\r\n",
	"GET mixed case dup": "HTTP/1.1 200 OK\r\nx-dup: 1\r\nX-Dup: 2\r\nX-DUP: 3\r\nContent-Length: 0\r\n\r\n",
}

var fallbackHeads = map[string]string{
	"GET chunked":         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"GET te identity":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nok",
	"GET until close":     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it",
	"GET dup length":      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	"GET list length":     "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
	"GET bad length":      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
	"GET plus length":     "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
	"GET empty length":    "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
	"GET huge length":     "HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
	"GET http/1.0":        "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"GET continue":        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"GET early hints":     "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
	"GET switching":       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
	"GET 600":             "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n",
	"GET obs-fold":        "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
	"GET bare lf":         "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
	"GET lf in head":      "HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 0\r\n\r\n",
	"GET obs-text":        "HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 0\r\n\r\n",
	"GET space in name":   "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n",
	"GET no colon":        "HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 0\r\n\r\n",
	"GET empty name":      "HTTP/1.1 200 OK\r\n: b\r\nContent-Length: 0\r\n\r\n",
	"GET leading space":   "HTTP/1.1 200 OK\r\n X-A: b\r\nContent-Length: 0\r\n\r\n",
	"GET two spaces":      "HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n",
	"GET four digits":     "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
	"GET lower proto":     "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"GET truncated":       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
	"GET past the buffer": "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("v", 5000) + "\r\nContent-Length: 0\r\n\r\n",
	"GET many lines":      "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: b\r\n", maxCommonLines) + "Content-Length: 0\r\n\r\n",
	"GET cr in value":     "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
	"GET nul":             "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
}

// TestReadCommonResponse: the common heads are read here, the others left
// to http.ReadResponse with nothing consumed; either way the result is
// http.ReadResponse's (checkHead).
func TestReadCommonResponse(t *testing.T) {
	for name, data := range commonHeads {
		method, _, _ := strings.Cut(name, " ")
		for _, chunk := range []int{0, 1, 7} {
			if checkHead(t, []byte(data), method, chunk, 4096) == nil {
				t.Errorf("%s (reads of %d): left to http.ReadResponse, want read here", name, chunk)
			}
		}
	}
	for name, data := range fallbackHeads {
		method, _, _ := strings.Cut(name, " ")
		if checkHead(t, []byte(data), method, 0, 4096) != nil {
			t.Errorf("%s: read here, want it left to http.ReadResponse", name)
		}
	}
	// A head that fits the buffer only once it has been filled again.
	if checkHead(t, []byte(commonHeads["GET nginx"]), "GET", 100, 256) == nil {
		t.Error("a head that arrives in parts: left to http.ReadResponse")
	}
}

// TestReadCommonResponseValues: the values share one backing array, each
// slice with capacity 1, so that an append to one never writes over the
// next (ReverseProxy and WriteResponse move these slices and add to them).
func TestReadCommonResponseValues(t *testing.T) {
	data := "HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2\r\nX-A: 3\r\nContent-Length: 0\r\n\r\n"
	r := readCommonResponse(bufio.NewReader(strings.NewReader(data)), &http.Request{Method: "GET"}, nil)
	if r == nil {
		t.Fatal("left to http.ReadResponse")
	}
	h := r.Header
	h["X-B"] = append(h["X-B"], "appended")
	if want := (http.Header{"X-A": {"1", "3"}, "X-B": {"2", "appended"}, "Content-Length": {"0"}}); !reflect.DeepEqual(h, want) {
		t.Errorf("header %v, want %v", h, want)
	}
}

// FuzzReadResponseHead: whatever readCommonResponse reads, http.ReadResponse
// reads the same from the same bytes — status, protocol, header, framing,
// body — and leaves the reader where readCommonResponse leaves it; whatever
// it leaves, it leaves unread.
func FuzzReadResponseHead(f *testing.F) {
	for _, heads := range []map[string]string{commonHeads, fallbackHeads} {
		for name, data := range heads {
			method, _, _ := strings.Cut(name, " ")
			f.Add([]byte(data), method == "HEAD", uint8(0))
			f.Add([]byte(data), method == "HEAD", uint8(3))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool, chunk uint8) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		size := 4096
		if chunk >= 128 {
			size = 64 // heads past the buffer
		}
		checkHead(t, data, method, int(chunk%64), size)
	})
}

// checkHead reads data's response head, in reads of chunk bytes (0: all at
// once) through a reader of size bytes, with readCommonResponse and with
// http.ReadResponse, and fails t unless they agree; it returns
// readCommonResponse's answer.
func checkHead(t *testing.T, data []byte, method string, chunk, size int) *response {
	t.Helper()
	req := &http.Request{Method: method}
	fast := bufio.NewReaderSize(&chunkReader{data: data, chunk: chunk}, size)
	std := bufio.NewReaderSize(&chunkReader{data: data, chunk: chunk}, size)
	want, werr := http.ReadResponse(std, req)
	r := readCommonResponse(fast, req, nil)
	if r == nil {
		// Nothing consumed: http.ReadResponse reads the same as from the
		// untouched reader.
		got, gerr := http.ReadResponse(fast, req)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("%q left to http.ReadResponse: %v, want %v as from untouched bytes", data, gerr, werr)
		}
		if werr == nil {
			sameResponse(t, data, got, want, got.Body)
			sameRest(t, data, fast, std)
		}
		return nil
	}
	if werr != nil {
		t.Fatalf("%q read as %d %v, but http.ReadResponse fails: %v", data, r.StatusCode, r.Header, werr)
	}
	if r.Body != http.NoBody && r.Body != &r.body {
		t.Fatalf("%q: body %T, want http.NoBody or the response's own", data, r.Body)
	}
	body := io.Reader(&r.body.lr)
	if r.Body == http.NoBody {
		body = http.NoBody
	}
	sameResponse(t, data, &r.Response, want, body)
	sameRest(t, data, fast, std)
	forwardedAlike(t, data, method, want.Header)
	return r
}

// forwardedAlike fails t unless the fields of data's common head, read
// into a proxy's header that has fields of its own already, are what a
// proxy forwards of stdHeader (http.ReadResponse's): its hop-by-hop fields
// removed as httputil.ReverseProxy removes them, the rest added.
func forwardedAlike(t *testing.T, data []byte, method string, stdHeader http.Header) {
	t.Helper()
	own := func() http.Header {
		return http.Header{"Ratelimit": {`"r";r=1;t=1`}, "X-End": {"proxy's"}, "Cache-Control": {"private"}}
	}
	want := own()
	std := stdHeader.Clone()
	for _, f := range std["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				std.Del(sf)
			}
		}
	}
	for _, k := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		std.Del(k)
	}
	for k, vv := range std {
		want[k] = append(want[k], vv...)
	}
	dst := own()
	r := readCommonResponse(bufio.NewReader(bytes.NewReader(data)), &http.Request{Method: method}, dst)
	if r == nil {
		t.Fatalf("%q: read as common without a header to fill, left to http.ReadResponse with one", data)
	}
	if reflect.ValueOf(r.Header).UnsafePointer() != reflect.ValueOf(dst).UnsafePointer() {
		t.Fatalf("%q: the response's header is not the one filled", data)
	}
	if !reflect.DeepEqual(dst, want) {
		t.Fatalf("%q forwarded into a proxy's header as\n%v\nwant\n%v", data, dst, want)
	}
}

// sameResponse fails t unless got (its body read from body) is want.
func sameResponse(t *testing.T, data []byte, got, want *http.Response, body io.Reader) {
	t.Helper()
	type fields struct {
		Status                     string
		StatusCode                 int
		Proto                      string
		ProtoMajor, ProtoMinor     int
		Header, Trailer            http.Header
		ContentLength              int64
		TransferEncoding           []string
		Close, Uncompressed, NoBod bool
		Request                    *http.Request
	}
	of := func(r *http.Response) fields {
		return fields{r.Status, r.StatusCode, r.Proto, r.ProtoMajor, r.ProtoMinor, r.Header, r.Trailer,
			r.ContentLength, r.TransferEncoding, r.Close, r.Uncompressed, r.Body == http.NoBody, r.Request}
	}
	if g, w := of(got), of(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%q read as\n%+v\nhttp.ReadResponse:\n%+v", data, g, w)
	}
	gb, gerr := io.ReadAll(body)
	wb, werr := io.ReadAll(want.Body)
	if !bytes.Equal(gb, wb) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
		t.Fatalf("%q body %q %v, http.ReadResponse's %q %v", data, gb, gerr, wb, werr)
	}
}

// sameRest fails t unless both readers have the same bytes left.
func sameRest(t *testing.T, data []byte, got, want *bufio.Reader) {
	t.Helper()
	g, _ := io.ReadAll(got)
	w, _ := io.ReadAll(want)
	if !bytes.Equal(g, w) {
		t.Fatalf("%q: %q left after the response, http.ReadResponse leaves %q", data, g, w)
	}
}

// chunkReader reads data at most chunk bytes at a time (0: all at once),
// as a connection delivers a head in parts.
type chunkReader struct {
	data  []byte
	chunk int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.chunk > 0 && len(p) > r.chunk {
		p = p[:r.chunk]
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// BenchmarkReadResponseHead reads the overhead benchmark upstream's head
// and body, with readCommonResponse (into a map of its own, and into the
// caller's) and with http.ReadResponse.
func BenchmarkReadResponseHead(b *testing.B) {
	data := goHead + strings.Repeat("x", 128)
	req := &http.Request{Method: "GET"}
	sr := strings.NewReader(data)
	br := bufio.NewReaderSize(sr, 4096)
	buf := make([]byte, 512)
	b.Run("common", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sr.Reset(data)
			br.Reset(sr)
			r := readCommonResponse(br, req, nil)
			if r == nil {
				b.Fatal("left to http.ReadResponse")
			}
			if n, _ := io.ReadFull(&r.body.lr, buf[:128]); n != 128 {
				b.Fatal(n)
			}
		}
	})
	// Into a header of the caller's, emptied for each response, as the
	// proxy's direct path reads into the client's response header.
	b.Run("common-forwarded", func(b *testing.B) {
		dst := http.Header{}
		b.ReportAllocs()
		for b.Loop() {
			clear(dst)
			sr.Reset(data)
			br.Reset(sr)
			r := readCommonResponse(br, req, dst)
			if r == nil || len(dst) != 3 {
				b.Fatalf("read %v", dst)
			}
			if n, _ := io.ReadFull(&r.body.lr, buf[:128]); n != 128 {
				b.Fatal(n)
			}
		}
	})
	b.Run("ReadResponse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sr.Reset(data)
			br.Reset(sr)
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				b.Fatal(err)
			}
			if n, _ := io.ReadFull(resp.Body, buf[:128]); n != 128 {
				b.Fatal(n)
			}
		}
	})
}
