package telemetry

import "testing"

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in       string
		httpURL  string
		grpcURL  string // "" when grpc rejects the endpoint
		insecure bool
	}{
		{"localhost:4317", "http://localhost:4317/v1/traces", "http://localhost:4317", true},
		{"[::1]:4317", "http://[::1]:4317/v1/traces", "http://[::1]:4317", true},
		{"http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces", "http://127.0.0.1:4318", true},
		{"http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces", "http://127.0.0.1:4318", true},
		{"https://collector.example.com", "https://collector.example.com:443/v1/traces", "https://collector.example.com:443", false},
		{"http://collector", "http://collector:80/v1/traces", "http://collector:80", true},
		{"https://[::1]:4317", "https://[::1]:4317/v1/traces", "https://[::1]:4317", false},
		{"https://gw.example.com/otlp/v1/traces", "https://gw.example.com:443/otlp/v1/traces", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ep, err := parseEndpoint(tc.in)
			if err != nil {
				t.Fatalf("parseEndpoint: %v", err)
			}
			if ep.secure == tc.insecure {
				t.Errorf("secure = %v, want %v", ep.secure, !tc.insecure)
			}
			if got := ep.httpURL(); got != tc.httpURL {
				t.Errorf("httpURL = %q, want %q", got, tc.httpURL)
			}
			got, err := ep.grpcURL()
			if tc.grpcURL == "" {
				if err == nil {
					t.Errorf("grpcURL = %q, want an error", got)
				}
			} else if err != nil || got != tc.grpcURL {
				t.Errorf("grpcURL = %q, %v; want %q", got, err, tc.grpcURL)
			}
		})
	}
}
