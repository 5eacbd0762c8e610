package testutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Pebble is a running Pebble ACME server (Debian's pebble), started by
// a test on loopback: a real ACME CA for the automatic-HTTPS tests.
type Pebble struct {
	DirURL string         // ACME directory
	CARoot string         // PEM file of pebble's own HTTPS certificate: sluice's tls.acme.ca_root
	Roots  *x509.CertPool // pebble's issuing root (/roots/0): what sluice's clients trust
	cmd    *exec.Cmd
	Out    *SyncBuffer // pebble's output, for failure messages
	exited chan struct{}
}

// PebbleOptions configure StartPebble.
type PebbleOptions struct {
	// HTTPPort and TLSPort are where pebble validates HTTP-01 and
	// TLS-ALPN-01: sluice's plain and TLS listeners.
	HTTPPort, TLSPort int
	// AlwaysValid skips validation (PEBBLE_VA_ALWAYS_VALID).
	AlwaysValid bool
	// DNSServer, if set, is the DNS server pebble resolves names with.
	DNSServer string
}

// FreePort returns a loopback TCP port nothing listens on right now, for
// the listeners pebble must be told about before they exist.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// RefusedPort returns a loopback port that refuses every connection for
// the rest of the test: a socket bound to it and never listening holds it,
// so no listener of a test running beside this one (or of the server under
// test, listening on port 0) is given it meanwhile, as it could be a port
// that was only free when asked for.
func RefusedPort(t testing.TB) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

// startProcess runs a test's helper process until the test ends, and
// returns a channel closed when it exits.
func startProcess(t *testing.T, cmd *exec.Cmd, out *SyncBuffer) chan struct{} {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	return exited
}

// StartPebble starts pebble with a generated HTTPS certificate on free
// loopback ports, waits for its directory, and fetches its issuing root.
func StartPebble(t *testing.T, o PebbleOptions) *Pebble {
	t.Helper()
	bin := NeedTool(t, "pebble")
	dir := t.TempDir()
	listener := NewCert(t, "127.0.0.1", "localhost")
	p := &Pebble{CARoot: filepath.Join(dir, "pebble-https.pem"), Out: &SyncBuffer{}}
	keyFile := filepath.Join(dir, "pebble-https.key")
	listener.Install(t, p.CARoot, keyFile)
	acmeAddr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	mgmtAddr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	conf, err := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":           acmeAddr,
		"managementListenAddress": mgmtAddr,
		"certificate":             p.CARoot,
		"privateKey":              keyFile,
		"httpPort":                o.HTTPPort,
		"tlsPort":                 o.TLSPort,
		"ocspResponderURL":        "",
	}})
	if err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(confFile, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-config", confFile, "-strict=false"}
	if o.DNSServer != "" {
		args = append(args, "-dnsserver", o.DNSServer)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once, not after 0-15 s
		"PEBBLE_WFE_NONCEREJECT=0", // no deliberately rejected nonces
		"PEBBLE_AUTHZREUSE=0",      // every order validates afresh
	)
	if o.AlwaysValid {
		p.cmd.Env = append(p.cmd.Env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	p.exited = startProcess(t, p.cmd, p.Out)

	// pebble's own HTTPS certificate is the generated one.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: listener.Pool()}}, Timeout: 5 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	p.DirURL = "https://" + acmeAddr + "/dir"
	p.waitUp(t, func() bool {
		resp, err := c.Get(p.DirURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	resp, err := c.Get("https://" + mgmtAddr + "/roots/0")
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.Roots = x509.NewCertPool()
	if resp.StatusCode != 200 || !p.Roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble /roots/0: %d %q", resp.StatusCode, root)
	}
	return p
}

// waitUp waits until up reports true, failing at once if pebble exits.
func (p *Pebble) waitUp(t *testing.T, up func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !up() {
		select {
		case <-p.exited:
			t.Fatalf("pebble exited:\n%s", p.Out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not come up:\n%s", p.Out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop ends pebble, so nothing can be ordered from it any more.
func (p *Pebble) Stop() {
	p.cmd.Process.Kill()
	<-p.exited
}

// StartChallTestSrv runs pebble-challtestsrv as a DNS server on a free
// loopback port that answers every A query with 127.0.0.1 and no AAAA
// (pebble dials the first address it resolves, IPv6 first), with its own
// challenge servers off. It returns the DNS address.
func StartChallTestSrv(t *testing.T) string {
	t.Helper()
	bin := NeedTool(t, "pebble-challtestsrv")
	dnsAddr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	out := &SyncBuffer{}
	exited := startProcess(t, exec.Command(bin,
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dns01", dnsAddr, "-http01", "", "-https01", "", "-tlsalpn01", "",
		"-management", "127.0.0.1:"+strconv.Itoa(FreePort(t))), out)
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dnsAddr)
	}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		addrs, err := r.LookupHost(ctx, "sluice.test")
		cancel()
		if err == nil && fmt.Sprint(addrs) == "[127.0.0.1]" {
			return dnsAddr
		}
		select {
		case <-exited:
			t.Fatalf("pebble-challtestsrv exited:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble-challtestsrv DNS not answering sluice.test with 127.0.0.1 (last: %v %v):\n%s", addrs, err, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// NeedTool returns the path of an external tool the test drives. Without it
// the test is skipped on a developer's machine, but fails under CI, where
// `make test` must have installed it.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed: `make test` installs it (scripts/install-test-deps.sh)", name)
		}
		t.Skipf("%s not installed; run `make test` to install it", name)
	}
	return path
}
