// Package framing guards HTTP/1 message framing on the connections of a
// net/http server, and answers the requests net/http refuses on its own
// with application/problem+json.
//
// # Request smuggling
//
// A request with both Content-Length and Transfer-Encoding is the classic
// request-smuggling vector (RFC 9112 §6.1, §11.2): two parties that frame
// it differently disagree on where the next request starts. net/http frames
// such a request by Transfer-Encoding and deletes Content-Length before any
// handler sees it, so the handler cannot refuse it. The Guard sits between
// the connection and net/http: it follows the framing of each request on an
// HTTP/1 connection (request line, header block, Content-Length body) and,
// at a request that carries both headers, hands net/http a malformed
// request line in its place and then end of stream. net/http answers that
// with 400 Bad Request and closes the connection; the requests before it on
// the connection are answered as usual, nothing after it is read.
//
// The guard holds back the bytes of a header block until the block is
// complete, so net/http never sees part of a request the guard has not
// judged; body bytes pass as they come. It stops following (passes
// everything) after a request with Transfer-Encoding, since sluice closes
// the connection after a chunked HTTP/1 request anyway (and net/http
// refuses other transfer codings); after an Upgrade request, since the
// bytes that follow a 101 are another protocol (the handler closes the
// connection when the upgrade is refused: see CloseRefusedUpgrades); at an
// HTTP/2 preface; and at a header block longer than net/http accepts, which
// it refuses with 431.
//
// # Error answers
//
// net/http answers a request it cannot read (a malformed request line or
// header, a header block over MaxHeaderBytes, an unsupported HTTP version
// or transfer coding, the guard's poison) by writing a text/plain response
// straight to the connection, bypassing every handler. The guard's Write
// recognises exactly those writes and sends in their place an
// application/problem+json (RFC 9457) response with the same status, like
// every other refusal of the proxy's (see docs/SPEC.md). What the guard
// cannot see is not rewritten: HTTP/2 connections (net/http's HTTP/2
// server answers protocol errors with frames, not responses), TLS
// handshake failures (net/http answers a plaintext request on the TLS port
// before a guarded connection exists), and anything on a connection after
// an Upgrade request, whose later bytes may be another protocol's.
//
// # Listeners
//
// Guard.Listener guards a plain TCP listener. Guard.TLSListener completes
// TLS handshakes off the accept loop and guards the connections that chose
// HTTP/1.1; connections that chose HTTP/2 (or another ALPN protocol) reach
// net/http as the *tls.Conn it needs for them.
package framing
