package otlptest

import (
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// maxBody bounds a decoded request body; the exporters' own default limit is
// far below it.
const maxBody = 64 << 20

// NewHTTP starts an OTLP/HTTP receiver on 127.0.0.1:0 accepting POST
// /v1/traces with Content-Type application/x-protobuf, optionally
// Content-Encoding gzip. It is closed by t.Cleanup. Requests it cannot
// accept get the status the OTLP/HTTP specification names (404, 405, 415,
// 400) and are logged to t; their spans are not recorded.
func NewHTTP(t testing.TB) *Receiver {
	t.Helper()
	r := newReceiver()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", func(w http.ResponseWriter, req *http.Request) {
		reject := func(code int, msg string, args ...any) {
			t.Logf("otlptest: rejecting %s %s: "+msg, append([]any{req.Method, req.URL.Path}, args...)...)
			http.Error(w, http.StatusText(code), code)
		}
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			reject(http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			reject(http.StatusUnsupportedMediaType, "content type %q", ct)
			return
		}
		var body io.Reader = req.Body
		switch ce := req.Header.Get("Content-Encoding"); ce {
		case "", "identity":
		case "gzip":
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				reject(http.StatusBadRequest, "gzip: %v", err)
				return
			}
			defer zr.Close()
			body = zr
		default:
			reject(http.StatusUnsupportedMediaType, "content encoding %q", ce)
			return
		}
		b, err := io.ReadAll(io.LimitReader(body, maxBody+1))
		if err != nil {
			reject(http.StatusBadRequest, "reading body: %v", err)
			return
		}
		if len(b) > maxBody {
			reject(http.StatusRequestEntityTooLarge, "body over %d bytes", maxBody)
			return
		}
		var msg coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &msg); err != nil {
			reject(http.StatusBadRequest, "decoding ExportTraceServiceRequest: %v", err)
			return
		}
		r.record(&msg)
		resp, err := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		if err != nil {
			reject(http.StatusInternalServerError, "encoding response: %v", err)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: listen: %v", err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	// Close waits for requests in flight, so no handler logs to t after the
	// test has completed.
	t.Cleanup(srv.Close)
	r.endpoint = l.Addr().String()
	return r
}
