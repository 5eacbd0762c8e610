// Package certs supplies the certificates of sluice's TLS listener: a
// Source, built by New from the tls block of the config.
//
// Two kinds exist. With tls.acme, certmagic obtains certificates from an
// ACME CA and renews them in the background; the CA validates HTTP-01 on
// the plain listener (the server passes those requests to ServeChallenge)
// and TLS-ALPN-01 on the TLS listener (GetCertificate answers a hello that
// offers acme-tls/1, which is why ALPN lists it). With tls.cert_file and
// tls.key_file, the static pair is served and reloaded when its files
// change.
//
// A Source's life, as the server drives it:
//
//	New     config checked, a static pair loaded (errors name the key)
//	Start   told the bound listener addresses, before either serves
//	Ready   blocks until every name has a certificate; listeners serve
//	        meanwhile, so the CA can validate
//	...     GetCertificate per handshake, ServeChallenge per challenge
//	Stop    renewals and file watching end
//
// An ACME source never prompts and never renews in the foreground: a CA
// outage during a restart does not stop sluice while storage holds a
// certificate that is still valid.
package certs
