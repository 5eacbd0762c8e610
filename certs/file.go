package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"sluice/clock"
)

// certReloadDebounce is how long the certificate files must stay quiet
// after a change before they are read again: writers replace the
// certificate and the key one after the other.
const certReloadDebounce = 250 * time.Millisecond

// fileCerts serves the static tls.cert_file/tls.key_file pair and reloads
// it when the files change.
//
// Changes are noticed with fsnotify on the files' directories, not by
// polling mtimes: a renewal is served within the debounce instead of a poll
// period, nothing wakes up while the files sit still, and a watch on the
// directory (not on the files) sees the two ways certificates are replaced
// in practice: a rename over the old file (certbot's symlink swap, cp then
// mv), which a watch on the old inode would miss, and Kubernetes secret
// volumes, which swap a "..data" symlink and never touch the named files.
// A burst of events is debounced into one reload; a reload that finds an
// unreadable or mismatched pair logs why and keeps serving the old pair.
// inotify does not see changes made by another host on a network file
// system: there, restart sluice after replacing the files.
type fileCerts struct {
	certFile, keyFile string
	log               *slog.Logger
	clk               clock.Clock
	debounce          time.Duration

	cur atomic.Pointer[keyPair] // served by GetCertificate, swapped by reload

	cancel   context.CancelFunc // stops the watcher; nil until Start
	done     chan struct{}      // closed when the watcher has stopped
	stopOnce sync.Once
}

// keyPair is a loaded pair and the bytes it came from, so a reload that
// reads the same bytes changes nothing and logs nothing.
type keyPair struct {
	cert            *tls.Certificate
	certPEM, keyPEM []byte
}

// newFileCerts loads the pair; a missing, unreadable or mismatched file is
// an error naming it.
func newFileCerts(certFile, keyFile string, log *slog.Logger, clk clock.Clock) (*fileCerts, error) {
	kp, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c := &fileCerts{certFile: certFile, keyFile: keyFile, log: log, clk: clk, debounce: certReloadDebounce}
	c.cur.Store(kp)
	if leaf := kp.cert.Leaf; c.clk.Now().After(leaf.NotAfter) {
		c.log.Warn("tls.cert_file has expired", "cert_file", certFile, "not_after", leaf.NotAfter)
	}
	return c, nil
}

func loadKeyPair(certFile, keyFile string) (*keyPair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file: %w", err) // *PathError names the file
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.key_file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s and tls.key_file %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls.cert_file %s: %w", certFile, err)
		}
	}
	return &keyPair{cert: &cert, certPEM: certPEM, keyPEM: keyPEM}, nil
}

func (c *fileCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load().cert, nil
}

func (c *fileCerts) ALPN() []string                                         { return nil }
func (c *fileCerts) ServeChallenge(http.ResponseWriter, *http.Request) bool { return false }
func (c *fileCerts) Ready(context.Context) error                            { return nil }

// Start watches the files' directories. If they cannot be watched the pair
// is still served, without reloads, and the log says so.
func (c *fileCerts) Start(net.Addr, net.Addr) error {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		for _, dir := range uniqueDirs(c.certFile, c.keyFile) {
			if err = w.Add(dir); err != nil {
				w.Close()
				break
			}
		}
	}
	if err != nil {
		c.log.Warn("cannot watch the certificate files; changes need a restart", "error", err)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		defer w.Close()
		c.watch(ctx, w.Events, w.Errors)
	}()
	return nil
}

func uniqueDirs(files ...string) []string {
	var dirs []string
	for _, f := range files {
		if d := filepath.Dir(f); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// watch reloads the pair once events about its files have stopped for
// c.debounce, until ctx is done or the event channel closes.
func (c *fileCerts) watch(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error) {
	var timer clock.Timer
	var fire <-chan time.Time // timer's channel while armed, else nil
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if v := recover(); v != nil {
			c.log.Error("certificate watcher panicked; changes need a restart", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if !c.concerns(ev.Name) {
				continue
			}
			if timer != nil {
				timer.Stop()
			}
			timer = c.clk.NewTimer(c.debounce)
			fire = timer.C()
		case err, ok := <-errs:
			if !ok {
				return
			}
			c.log.Warn("watching the certificate files", "error", err)
		case <-fire:
			timer, fire = nil, nil
			c.reload()
		}
	}
}

// concerns reports whether an event on name may have changed the pair: the
// files themselves, or Kubernetes' "..data" symlink and "..<timestamp>"
// directories behind them. Other files sharing the directory are ignored.
func (c *fileCerts) concerns(name string) bool {
	base := filepath.Base(name)
	return base == filepath.Base(c.certFile) || base == filepath.Base(c.keyFile) || strings.HasPrefix(base, "..")
}

// reload reads the pair again and serves it to new handshakes if it
// changed and is valid; a bad pair is logged and the old one kept.
func (c *fileCerts) reload() {
	kp, err := loadKeyPair(c.certFile, c.keyFile)
	if err != nil {
		c.log.Error("certificate reload failed; still serving the previous certificate", "error", err)
		return
	}
	old := c.cur.Load()
	if bytes.Equal(kp.certPEM, old.certPEM) && bytes.Equal(kp.keyPEM, old.keyPEM) {
		return
	}
	c.cur.Store(kp)
	leaf := kp.cert.Leaf
	c.log.Info("certificate reloaded", "cert_file", c.certFile, "domains", certNames(leaf), "not_after", leaf.NotAfter)
}

// certNames lists the names a certificate is valid for.
func certNames(leaf *x509.Certificate) []string {
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	return names
}

// Stop ends the watcher and waits for it.
func (c *fileCerts) Stop() {
	c.stopOnce.Do(func() {
		if c.cancel != nil {
			c.cancel()
			<-c.done
		}
	})
}
