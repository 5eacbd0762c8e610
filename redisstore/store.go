package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"sluice/config"
)

// ProbeInterval is how often a down store pings Redis to see if it is back.
const ProbeInterval = 250 * time.Millisecond

// Store is a connection pool to the shared Redis and its health. It is safe
// for concurrent use.
type Store struct {
	cfg     config.Redis
	client  redis.UniversalClient
	log     *slog.Logger
	timeout time.Duration

	up       atomic.Bool
	errors   atomic.Uint64 // failed or overrun commands
	commands atomic.Uint64 // commands sent, for reporting
	lastErr  atomic.Pointer[string]

	mu      sync.Mutex // guards probing, closed
	probing bool
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup

	trips tripState
}

// ErrDown is returned instead of sending a command while the store is down.
var ErrDown = errors.New("redisstore: redis is down")

// Open connects to the Redis cfg describes and checks it with one PING
// within cfg.DialTimeout. Redis refusing the credentials or the database is
// an error unless cfg.FailOpen is set; an unreachable Redis is not: the
// store starts down and the prober brings it up when Redis answers. log
// receives the state changes.
func Open(cfg config.Redis, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	tlsConf, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.PasswordFile != "" {
		if _, err := readPassword(cfg.PasswordFile); err != nil {
			return nil, err
		}
	}
	quietClient.Do(func() { redis.SetLogger(debugLog{}) })
	s := &Store{cfg: cfg, log: log, timeout: cfg.Timeout, stop: make(chan struct{})}
	s.trips.pub = make(chan trip, 64)
	o := &redis.UniversalOptions{
		Addrs:     cfg.Addrs,
		DB:        cfg.DB,
		TLSConfig: tlsConf,
		// The password file is read again for each new connection, so a
		// rotated secret takes effect without a restart.
		CredentialsProviderContext: func(context.Context) (string, string, error) {
			if cfg.PasswordFile == "" {
				return "", "", nil
			}
			pw, err := readPassword(cfg.PasswordFile)
			return cfg.Username, pw, err
		},
		DialTimeout: cfg.DialTimeout,
		// Commands on the request path carry their own deadline (the
		// decision timeout); these bound the background ones.
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		ContextTimeoutEnabled: true,
		// A retry cannot fit in a decision budget of a few milliseconds.
		MaxRetries:  -1,
		PoolSize:    cfg.PoolSize,
		PoolTimeout: cfg.Timeout,
		// No CLIENT SETINFO or maintenance-notification handshake: fewer
		// round trips per connection, and servers older than 7.2 accept it.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	s.client = redis.NewUniversalClient(o)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout+cfg.Timeout)
	defer cancel()
	err = checkTLS(ctx, cfg, tlsConf)
	if err == nil {
		err = s.client.Ping(ctx).Err()
	}
	switch {
	case err == nil:
		s.up.Store(true)
	case refusedCredentials(err) && !cfg.FailOpen:
		s.client.Close()
		return nil, fmt.Errorf("redis %s: %w (set redis.fail_open to start anyway and limit locally)", strings.Join(cfg.Addrs, ","), err)
	default:
		s.setErr(err)
		s.errors.Add(1)
		log.Warn("redis store down at start: limits are local until it answers", "addrs", cfg.Addrs, "error", err.Error())
		s.startProbe()
	}
	return s, nil
}

// quietClient sends go-redis's own log lines (one per failed dial, say) to
// debug level: the store logs each change of Redis's state once itself.
var quietClient sync.Once

type debugLog struct{}

func (debugLog) Printf(_ context.Context, format string, v ...any) {
	slog.Debug(fmt.Sprintf(format, v...), "component", "go-redis")
}

// checkTLS makes one TLS handshake with the first address, so that a
// certificate that fails verification is reported as such: go-redis's pool
// retries failed dials until the deadline and reports only that.
func checkTLS(ctx context.Context, cfg config.Redis, c *tls.Config) error {
	if c == nil {
		return nil
	}
	d := &tls.Dialer{Config: c}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addrs[0])
	if err != nil {
		return err
	}
	return conn.Close()
}

// refusedCredentials reports whether Redis answered but refused the
// configured credentials or database, or its TLS certificate failed
// verification: a configuration error, not an outage.
func refusedCredentials(err error) bool {
	msg := err.Error()
	for _, p := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "invalid password", "invalid username-password", "DB index is out of range", "ERR AUTH", "x509:"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func readPassword(name string) (string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("redis.password_file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func tlsConfig(cfg config.Redis) (*tls.Config, error) {
	if !cfg.TLS {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.ca_file %s: no PEM certificate found", cfg.CAFile)
		}
	}
	return c, nil
}

// Config is the redis block the store was opened with.
func (s *Store) Config() config.Redis { return s.cfg }

// Up reports whether Redis answered the last command in time. While it is
// false callers must decide without Redis.
func (s *Store) Up() bool { return s.up.Load() }

// Errors is the number of commands that failed or overran the decision
// timeout (sluice_ratelimit_store_errors_total).
func (s *Store) Errors() uint64 { return s.errors.Load() }

// Commands is the number of commands sent on the request path (script
// calls), for reporting commands per request.
func (s *Store) Commands() uint64 { return s.commands.Load() }

// LastError is the last failure's message, "" if none.
func (s *Store) LastError() string {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// Timeout is the decision timeout: the most a request waits on Redis.
func (s *Store) Timeout() time.Duration { return s.timeout }

func (s *Store) setErr(err error) {
	m := err.Error()
	s.lastErr.Store(&m)
}

// fail records a failed command and marks the store down, logging the
// change and starting the prober if it was up.
func (s *Store) fail(err error) {
	if s.isClosed() {
		// A take in flight when a reload replaced the store: not an outage.
		return
	}
	s.errors.Add(1)
	s.setErr(err)
	if s.up.CompareAndSwap(true, false) {
		s.log.Warn("redis store down: limits are local until it answers", "addrs", s.cfg.Addrs, "error", err.Error())
		s.startProbe()
	}
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Store) startProbe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.probing || s.closed {
		return
	}
	s.probing = true
	s.wg.Go(s.probe)
}

// probe pings Redis every ProbeInterval until a PING round trip fits in the
// decision timeout, then marks the store up. A Redis that answers, but too
// slowly for a decision, stays down: marking it up would only make the next
// requests wait the whole budget again.
func (s *Store) probe() {
	t := time.NewTicker(ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		// The first ping may have to dial; the second must be quick.
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout+s.timeout)
		err := s.client.Ping(ctx).Err()
		cancel()
		if err == nil {
			ctx, cancel = context.WithTimeout(context.Background(), s.timeout)
			err = s.client.Ping(ctx).Err()
			cancel()
		}
		if err != nil {
			s.setErr(err)
			continue
		}
		s.mu.Lock()
		s.probing = false
		s.mu.Unlock()
		s.up.Store(true)
		s.log.Info("redis store up: limits are global again", "addrs", s.cfg.Addrs)
		s.trips.resync(s)
		return
	}
}

// Close stops the prober and the trip watcher and closes the connections.
func (s *Store) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	s.trips.close()
	s.wg.Wait()
	s.client.Close()
}

//go:embed take.lua
var takeSource string

var takeScript = redis.NewScript(takeSource)

// Grant is the answer of the shared bucket to a Take.
type Grant struct {
	Got  int           // tokens granted, 0 to want
	Left float64       // tokens left in the shared bucket
	Wait time.Duration // when Got is 0: until the bucket holds want tokens (1 to burst)
}

// Take gives back giveback unspent tokens to the shared bucket key (rate
// rps, size burst) and takes up to want, within the decision timeout. It
// fails at once with ErrDown while the store is down.
func (s *Store) Take(key string, rps float64, burst, want, giveback int) (Grant, error) {
	if !s.up.Load() {
		return Grant{}, ErrDown
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	s.commands.Add(1)
	res, err := takeScript.Run(ctx, s.client, []string{key}, rps, burst, want, giveback).Int64Slice()
	if err == nil && len(res) != 3 {
		err = fmt.Errorf("redisstore: take script answered %d values, want 3", len(res))
	}
	if err != nil {
		s.fail(err)
		return Grant{}, err
	}
	return Grant{Got: int(res[0]), Left: float64(res[1]) / 1000, Wait: time.Duration(res[2]) * time.Microsecond}, nil
}
