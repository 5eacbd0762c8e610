package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"sluice/config"
)

// Reload reads the config file again and applies its routes and upstreams
// without dropping a request: the new config is validated first, and an
// invalid file leaves the running config serving (the error is logged and
// counted in sluice_config_reloads_total{result="error"}). Blocks that
// listeners or background services were built from (server, tls, admin,
// tracing, monitoring) take effect only on restart, except the overload
// manager's limits in server (max_connections, max_inflight, sched_latency_limit,
// memory_limit), which reload; a change to the rest is logged and the
// running values are kept. The redis block is reloaded (a block Redis
// refuses fails the reload).
func (s *Server) Reload() error {
	if s.configPath == "" {
		return errors.New("reload: the config was not read from a file")
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	next, err := config.Load(s.configPath)
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				s.log.Error("config reload rejected; the running config keeps serving", "error", e.Error())
			}
		} else {
			s.log.Error("config reload rejected; the running config keeps serving", "error", err)
		}
		s.reloads.WithLabelValues("error").Inc() // after the log: a counted reload is a logged one
		return err
	}
	cur := s.Config()
	eff := *cur // keep the restart-only blocks as they run
	eff.Upstreams, eff.Routes, eff.Redis = next.Upstreams, next.Routes, next.Redis
	reloadOverload(&eff.Server, next.Server)
	for _, key := range restartOnlyChanges(cur, next) {
		s.log.Warn("config change needs a restart to take effect; keeping the running value", "key", key)
	}
	if err := s.proxy.Reload(&eff); err != nil {
		s.log.Error("config reload failed; the running config keeps serving", "error", err)
		s.reloads.WithLabelValues("error").Inc()
		return err
	}
	s.cfgNow.Store(&eff)
	s.log.Info("config reloaded", "file", s.configPath, "routes", len(eff.Routes), "upstreams", len(eff.Upstreams))
	s.reloads.WithLabelValues("success").Inc()
	return nil
}

// Config returns the config serving now (the last one reloaded).
func (s *Server) Config() *config.Config { return s.cfgNow.Load() }

// reloadOverload copies the keys of the server block that reload (the
// overload manager's limits) from src to dst.
func reloadOverload(dst *config.Server, src config.Server) {
	dst.MaxConnections, dst.MaxInflight, dst.MemoryLimit = src.MaxConnections, src.MaxInflight, src.MemoryLimit
	dst.SchedLatencyLimit = src.SchedLatencyLimit
}

func restartOnlyChanges(cur, next *config.Config) []string {
	nextServer := next.Server
	reloadOverload(&nextServer, cur.Server) // these reload: not a restart-only change
	var keys []string
	for _, b := range []struct {
		key      string
		cur, nxt any
	}{
		{"server", cur.Server, nextServer},
		{"tls", cur.TLS, next.TLS},
		{"admin", cur.Admin, next.Admin},
		{"tracing", cur.Tracing, next.Tracing},
		{"monitoring", cur.Monitoring, next.Monitoring},
	} {
		if !reflect.DeepEqual(b.cur, b.nxt) {
			keys = append(keys, b.key)
		}
	}
	return keys
}

// reloadDebounce gathers the burst of events one save makes (editors write,
// rename and chmod) into one reload.
const reloadDebounce = 200 * time.Millisecond

// watchConfig reloads when the config file changes, until ctx is done. It
// watches the directory, not the file: editors and Kubernetes ConfigMaps
// replace a file by renaming another over it, which a watch on the old
// inode would miss.
func (s *Server) watchConfig(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", s.configPath, err)
	}
	dir, base := filepath.Dir(s.configPath), filepath.Base(s.configPath)
	if err := w.Add(dir); err != nil {
		w.Close()
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	s.background.Go(func() {
		defer w.Close()
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				name := filepath.Base(ev.Name)
				if name == base || strings.HasPrefix(name, "..") { // ..data: a ConfigMap swap
					fire = time.After(reloadDebounce)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				s.log.Warn("config watch", "error", err)
			case <-fire:
				fire = nil
				_ = s.Reload() // logged and counted inside
			}
		}
	})
	return nil
}
