package framing

import (
	"bufio"
	"net"
	"net/http"
)

// upgradeCloser closes the connection after the response to an HTTP/1
// Upgrade request that was not switched (anything but 101): the framing
// guard stopped following that connection at the Upgrade request.
type upgradeCloser struct {
	http.ResponseWriter
	wrote bool
}

func (u *upgradeCloser) WriteHeader(code int) {
	if !u.wrote && code != http.StatusSwitchingProtocols && code >= 200 {
		u.wrote = true
		u.Header().Set("Connection", "close")
	}
	u.ResponseWriter.WriteHeader(code)
}

func (u *upgradeCloser) Write(b []byte) (int, error) {
	if !u.wrote {
		u.WriteHeader(http.StatusOK)
	}
	return u.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (ReverseProxy's way to flush and to
// hijack for a 101) reach the connection.
func (u *upgradeCloser) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func (u *upgradeCloser) Flush() { http.NewResponseController(u.ResponseWriter).Flush() }

func (u *upgradeCloser) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(u.ResponseWriter).Hijack()
}

// CloseRefusedUpgrades wraps h so that an HTTP/1 Upgrade request that is
// not switched closes its connection. A server whose listeners are guarded
// must serve its handler through it: the guard stops following a
// connection at an Upgrade request.
func CloseRefusedUpgrades(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 && r.Header.Get("Upgrade") != "" {
			w = &upgradeCloser{ResponseWriter: w}
		}
		h.ServeHTTP(w, r)
	})
}
