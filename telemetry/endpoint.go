package telemetry

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// defaultHTTPPath is the OTLP/HTTP traces path (OTLP specification,
// "OTLP/HTTP Request"), used when an http(s):// endpoint names no path.
const defaultHTTPPath = "/v1/traces"

// endpoint is a parsed tracing.endpoint.
type endpoint struct {
	secure bool   // TLS; only an https:// URL asks for it
	host   string // host:port, always with a port
	path   string // URL path as written; "" when none (or only "/") was given
}

// parseEndpoint accepts the two forms tracing.endpoint may take:
//
//   - a bare "host:port" (the config default "localhost:4317"): plaintext.
//     The port is required; there is no scheme to derive one from.
//   - an http:// or https:// URL: plaintext or TLS respectively. A missing
//     port is the scheme's (80 or 443), as for any URL.
//
// The exporters' own WithEndpointURL options log an unparsable URL through the
// global otel error handler and fall back to localhost; parsing here first
// turns that silent misdirection into an error from New.
func parseEndpoint(s string) (endpoint, error) {
	if s == "" {
		return endpoint{}, errors.New("empty endpoint")
	}
	if !strings.Contains(s, "://") {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return endpoint{}, fmt.Errorf("endpoint %q: want host:port or an http:// or https:// URL: %w", s, err)
		}
		if host == "" {
			return endpoint{}, fmt.Errorf("endpoint %q: missing host", s)
		}
		if err := checkPort(port); err != nil {
			return endpoint{}, fmt.Errorf("endpoint %q: %w", s, err)
		}
		return endpoint{host: s}, nil
	}

	u, err := url.Parse(s)
	if err != nil {
		return endpoint{}, fmt.Errorf("endpoint: %w", err)
	}
	var defaultPort string
	switch u.Scheme {
	case "http":
		defaultPort = "80"
	case "https":
		defaultPort = "443"
	default:
		return endpoint{}, fmt.Errorf("endpoint %q: scheme must be http or https, got %q", s, u.Scheme)
	}
	if u.Hostname() == "" {
		return endpoint{}, fmt.Errorf("endpoint %q: missing host", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return endpoint{}, fmt.Errorf("endpoint %q: user info, query and fragment are not supported", s)
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	} else if err := checkPort(port); err != nil {
		return endpoint{}, fmt.Errorf("endpoint %q: %w", s, err)
	}
	ep := endpoint{
		secure: u.Scheme == "https",
		host:   net.JoinHostPort(u.Hostname(), port),
		path:   u.EscapedPath(),
	}
	if ep.path == "/" {
		ep.path = ""
	}
	return ep, nil
}

func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid port %q", port)
	}
	return nil
}

func (e endpoint) scheme() string {
	if e.secure {
		return "https"
	}
	return "http"
}

// httpURL is the URL the OTLP/HTTP exporter posts to. A path given in the
// config is used as-is (a collector behind a gateway prefix), as the OTLP
// exporter specification does for a signal-specific endpoint; no path means
// the standard /v1/traces.
func (e endpoint) httpURL() string {
	path := e.path
	if path == "" {
		path = defaultHTTPPath
	}
	return e.scheme() + "://" + e.host + path
}

// grpcURL is the target of the OTLP/gRPC exporter. gRPC has no URL path, so a
// configured one is an error rather than something silently dropped.
func (e endpoint) grpcURL() (string, error) {
	if e.path != "" {
		return "", fmt.Errorf("endpoint path %q is not supported with protocol grpc", e.path)
	}
	return e.scheme() + "://" + e.host, nil
}
