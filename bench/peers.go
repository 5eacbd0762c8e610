package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// mode is what a proxy is configured for.
type mode int

const (
	// overhead: forward only; any limit is set too high to act.
	overhead mode = iota
	// overload: each proxy's closest admission control in front of the
	// capacity-limited upstream (20 at once × 20 ms = 1000 req/s).
	overload
)

// The admission settings of the overload scenario, shared by
// the configs below so that they cannot drift apart.
const (
	capSlots    = 20  // upstream concurrency, and sluice's bulkhead and HAProxy's maxconn
	capQueue    = 100 // sluice's queue depth, HAProxy's maxqueue, nginx's burst
	capWaitMS   = 250 // sluice's max_wait, HAProxy's timeout queue, Caddy's try_duration
	capServeMS  = 20  // upstream service time
	capacityRPS = capSlots * 1000 / capServeMS
)

// peer is one proxy under test.
type peer struct {
	name string
	// start runs the proxy in front of upstream (host:port) and returns it
	// with the address it serves on.
	start func(h *harness, m mode, upstream string) (*proc, string, error)
}

func peers() []peer {
	return []peer{
		{"sluice", startSluice},
		{"HAProxy", startHAProxy},
		{"nginx", startNginx},
		{"Caddy", startCaddy},
		{"httputil.ReverseProxy", forwarderRole("httputil.ReverseProxy", "plainproxy")},
	}
}

// peerNames maps a peer to the package it comes from, for the doc.
func (h *harness) peerVersion(name string) string {
	return h.versions[name]
}

func startSluice(h *harness, m mode, upstream string) (*proc, string, error) {
	return startSluiceWith(h, m, upstream, false, nil)
}

// startSluiceWith runs the sluice binary as `sluice run` with a config for
// m, the access log on or off, and extra environment (GOGC=...).
func startSluiceWith(h *harness, m mode, upstream string, accessLog bool, env []string) (*proc, string, error) {
	route := `    rate_limit: {rps: 1000000000, burst: 1000000000}
    bulkhead: {max_concurrent: 100000}`
	if m == overload {
		route = fmt.Sprintf(`    bulkhead: {max_concurrent: %d}
    queue: {max_depth: %d, max_wait: %dms}`, capSlots, capQueue, capWaitMS)
	}
	p, addr, _, err := runSluice(h, "sluice", upstream, route, accessLog, env)
	return p, addr, err
}

// runSluice runs the sluice binary as `sluice run` on free loopback ports,
// with one route "bench" to upstream whose settings are route (YAML lines
// indented for the route); name names its config and log in h.tmp.
func runSluice(h *harness, name, upstream, route string, accessLog bool, env []string) (p *proc, addr, admin string, err error) {
	return runSluiceServer(h, name, upstream, "", route, accessLog, env)
}

// runSluiceServer is runSluice with extra keys of the server block
// (YAML lines indented for it, or "").
func runSluiceServer(h *harness, name, upstream, server, route string, accessLog bool, env []string) (p *proc, addr, admin string, err error) {
	if addr, err = freePort(); err != nil {
		return nil, "", "", err
	}
	if admin, err = freePort(); err != nil {
		return nil, "", "", err
	}
	cfg := fmt.Sprintf(`server:
  listen: %q
  access_log: %t
%sadmin:
  listen: %q
upstreams:
  - name: up
    targets: ["http://%s"]
    max_idle_conns: 1024
routes:
  - name: bench
    match: {path_prefix: /}
    upstream: up
%s
`, addr, accessLog, server, admin, upstream, route)
	path := filepath.Join(h.tmp, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, "", "", err
	}
	p, err = startGuarded(name, filepath.Join(h.tmp, name+".log"), h.sluiceBin, []string{"run", "-config", path}, append(env, h.sluiceEnv...))
	if err != nil {
		return nil, "", "", err
	}
	return p, addr, admin, nil
}

func startNginx(h *harness, m mode, upstream string) (*proc, string, error) {
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(h.tmp, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	limitZone, limit := "", ""
	if m == overload {
		// limit_req is a rate limit, nginx's only admission control without
		// nginx Plus (whose upstream queue would be the closer match): the
		// rate at capacity, a burst as deep as the others' queues, excess
		// requests delayed to the rate, the rest refused with 503.
		limitZone = fmt.Sprintf("limit_req_zone $server_name zone=cap:1m rate=%dr/s;", capacityRPS)
		limit = fmt.Sprintf("limit_req zone=cap burst=%d; limit_req_status 503;", capQueue)
	}
	cfg := fmt.Sprintf(`worker_processes 2;
worker_rlimit_nofile 20000;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_requests 1000000;
  %[4]s
  upstream up { server %[2]s; keepalive 256; keepalive_requests 1000000; }
  server {
    listen %[3]s backlog=4096;
    server_name bench;
    location / {
      %[5]s
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, dir, upstream, addr, limitZone, limit)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, "", err
	}
	p, err := startGuarded("nginx", filepath.Join(dir, "out.log"), "nginx", []string{"-p", dir, "-c", path, "-g", "daemon off;"}, nil)
	if err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

func startHAProxy(h *harness, m mode, upstream string) (*proc, string, error) {
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	server := fmt.Sprintf("server s1 %s", upstream)
	queue := ""
	if m == overload {
		server += fmt.Sprintf(" maxconn %d maxqueue %d", capSlots, capQueue)
		queue = fmt.Sprintf("timeout queue %dms", capWaitMS)
	}
	cfg := fmt.Sprintf(`global
  maxconn 8000
  nbthread 2
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
  %s
frontend fe
  bind %s
  default_backend be
backend be
  http-reuse always
  %s
`, queue, addr, server)
	path := filepath.Join(h.tmp, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, "", err
	}
	p, err := startGuarded("HAProxy", filepath.Join(h.tmp, "haproxy.log"), "haproxy", []string{"-f", path, "-db"}, nil)
	if err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

func startCaddy(h *harness, m mode, upstream string) (*proc, string, error) {
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	up := fmt.Sprintf(`{"dial": %q}`, upstream)
	lb := ""
	if m == overload {
		// max_requests makes an upstream unavailable while it has that many
		// requests in flight; a request then retries for try_duration,
		// every try_interval (default 250ms: 10ms gives Caddy its best
		// chance to catch a free slot), and is refused after it.
		up = fmt.Sprintf(`{"dial": %q, "max_requests": %d}`, upstream, capSlots)
		lb = fmt.Sprintf(`, "load_balancing": {"try_duration": "%dms", "try_interval": "10ms"}`, capWaitMS)
	}
	cfg := fmt.Sprintf(`{
  "admin": {"disabled": true, "config": {"persist": false}},
  "logging": {"logs": {"default": {"level": "ERROR"}}},
  "apps": {"http": {"servers": {"bench": {
    "listen": [%q],
    "automatic_https": {"disable": true},
    "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [%s]%s}]}]
  }}}}
}
`, addr, up, lb)
	dir := filepath.Join(h.tmp, "caddy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, "", err
	}
	env := []string{"HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "XDG_DATA_HOME=" + dir}
	p, err := startGuarded("Caddy", filepath.Join(dir, "out.log"), "caddy", []string{"run", "--config", path}, env)
	if err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

// forwarderRole starts a child role of this binary that forwards to the
// upstream: plainproxy (httputil.ReverseProxy), or floor (the minimal Go
// forwarder of floor.go, a reference row of the overhead table, not a
// peer), with args added to its flags.
func forwarderRole(name, role string, args ...string) func(*harness, mode, string) (*proc, string, error) {
	return func(h *harness, m mode, upstream string) (*proc, string, error) {
		addr, err := freePort()
		if err != nil {
			return nil, "", err
		}
		p, err := startSelf(name, append([]string{"-role", role, "-listen", addr, "-target", "http://" + upstream, "-life", childLife.String()}, args...)...)
		if err != nil {
			return nil, "", err
		}
		return p, addr, nil
	}
}

// tools are the Debian packages the harness drives, by the binary each
// provides.
var tools = map[string]string{"nginx": "nginx", "haproxy": "haproxy", "caddy": "caddy", "wrk": "wrk"}

// installPeers installs the missing packages with apt-get. Services must
// not start during the install (the peers run here in the foreground, on
// their own ports): a policy-rc.d that exits 101 forbids it, as Debian's
// invoke-rc.d documents; one the machine already has is left alone.
func installPeers() error {
	var missing []string
	for bin, pkg := range tools {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "bench: installing %s\n", strings.Join(missing, " "))
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return err
		}
		defer os.Remove(policy)
	}
	run := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd.Run()
	}
	if err := run("update", "-q"); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)
	if err := run(args...); err != nil {
		return fmt.Errorf("apt-get install: %w", err)
	}
	return nil
}
