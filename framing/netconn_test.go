package framing

import (
	"net"
	"testing"
)

// TestNetConnReachesTheSocket: code holding a hijacked connection (an
// injected reset sets SO_LINGER 0) reaches the connection beneath the guard.
func TestNetConnReachesTheSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := NewGuard(1<<20, nil).wrap(a)
	var nc interface{ NetConn() net.Conn } = c
	if nc.NetConn() != a {
		t.Fatal("NetConn does not return the wrapped connection")
	}
}
