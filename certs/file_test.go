package certs

import (
	"context"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"sluice/clock"
	"sluice/config"
	"sluice/internal/testutil"
)

// TestCertReloadDebounce drives the watcher by hand with a fake clock: a
// burst of events is one reload, done once the files were quiet for the
// debounce; events about other files in the directory do nothing.
func TestCertReloadDebounce(t *testing.T) {
	first, certFile, keyFile := testutil.StaticPair(t)
	rec := &testutil.LogRecorder{}
	clk := clock.NewFake(time.Unix(1e9, 0))
	c, err := newFileCerts(certFile, keyFile, slog.New(rec), clk)
	if err != nil {
		t.Fatal(err)
	}
	events, errs := make(chan fsnotify.Event), make(chan error)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.watch(ctx, events, errs) }()
	defer func() { cancel(); <-done }()
	serving := func() *big.Int {
		return c.cur.Load().cert.Leaf.SerialNumber
	}
	// events is unbuffered and watch handles one event at a time, so once
	// a send returns, the event before it has been handled.
	send := func(name string) { events <- fsnotify.Event{Name: name, Op: fsnotify.Create} }
	other := filepath.Join(filepath.Dir(certFile), "unrelated.log")

	second := testutil.NewCert(t, "localhost")
	testutil.WriteAtomic(t, certFile, second.CertPEM)
	send(certFile)
	clk.Advance(c.debounce / 2)
	testutil.WriteAtomic(t, keyFile, second.KeyPEM)
	send(keyFile) // resets the debounce
	send(other)   // ignored; proves keyFile's event was handled
	if n := clk.Timers(); n != 1 {
		t.Fatalf("%d timers armed, want 1 (the burst's)", n)
	}
	clk.Advance(c.debounce / 2) // the first event's deadline: nothing happens
	if serving().Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatal("reloaded before the files were quiet for the debounce")
	}
	clk.Advance(c.debounce / 2)
	testutil.WaitFor(t, "reload", func() bool { return serving().Cmp(second.Cert.SerialNumber) == 0 })

	// A mismatched pair is logged and not served.
	testutil.WriteAtomic(t, keyFile, first.KeyPEM)
	send(keyFile)
	send(other)
	clk.Advance(c.debounce)
	testutil.WaitFor(t, "the bad pair refused", func() bool { return len(rec.Find("certificate reload failed")) > 0 })
	if serving().Cmp(second.Cert.SerialNumber) != 0 {
		t.Error("a mismatched pair replaced the good one")
	}
	if len(rec.Find("certificate reloaded")) != 1 {
		t.Errorf("want exactly one reload logged:\n%s", rec)
	}
}

// TestFileErrors: a pair that cannot be served fails New with an error
// naming the file.
func TestFileErrors(t *testing.T) {
	_, certFile, keyFile := testutil.StaticPair(t)
	dir := filepath.Dir(certFile)
	otherKey := filepath.Join(dir, "other-key.pem")
	if err := os.WriteFile(otherKey, testutil.NewCert(t, "localhost").KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "a-directory.pem") // unreadable even as root
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing-key.pem")
	for _, tc := range []struct {
		name, cert, key string
		want            []string
	}{
		{"missing key file", certFile, missing, []string{"tls.key_file", missing, "no such file"}},
		{"missing cert file", filepath.Join(dir, "nope.pem"), keyFile, []string{"tls.cert_file", "nope.pem", "no such file"}},
		{"mismatched pair", certFile, otherKey, []string{certFile, otherKey, "private key does not match public key"}},
		{"not PEM", notPEM, keyFile, []string{notPEM, "PEM"}},
		{"unreadable key", certFile, unreadable, []string{"tls.key_file", unreadable, "is a directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(&config.TLS{CertFile: tc.cert, KeyFile: tc.key}, slog.New(&testutil.LogRecorder{}), clock.Real())
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
