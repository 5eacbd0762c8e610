package otlptest

import (
	"context"
	"net"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // accept exports compressed through OTEL_EXPORTER_OTLP_COMPRESSION
)

// NewGRPC starts an OTLP/gRPC receiver (the collector's TraceService) on
// 127.0.0.1:0, in plaintext. It is stopped by t.Cleanup.
func NewGRPC(t testing.TB) *Receiver {
	t.Helper()
	r := newReceiver()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: listen: %v", err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, traceService{r: r})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Serve returns nil after Stop; anything else is a listener failure
		// the test will see as missing spans, so log it for the diagnosis.
		if err := srv.Serve(l); err != nil {
			t.Logf("otlptest: grpc serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	r.endpoint = l.Addr().String()
	return r
}

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

var _ coltracepb.TraceServiceServer = traceService{}

func (s traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.r.record(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}
