package testutil

import (
	"bufio"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis is a real redis-server (Debian's redis-server) started by a test on
// a free loopback port, with no persistence, killed when the test ends. A
// fault test may Kill it and Start it again on the same port.
type Redis struct {
	Addr     string // host:port
	Password string // requirepass, "" for none
	tlsArgs  []string
	cluster  bool
	t        testing.TB
	bin      string
	dir      string
	mu       sync.Mutex // guards cmd, exited
	cmd      *exec.Cmd
	exited   chan struct{}
	Out      *SyncBuffer
}

// RedisOptions configure StartRedis.
type RedisOptions struct {
	Password string // requirepass
	// TLS, if set, serves TLS only, with this certificate (no client
	// certificates asked for).
	TLS *Cert
}

// StartRedis starts redis-server on a free loopback port and waits until it
// answers PING.
func StartRedis(t testing.TB, o RedisOptions) *Redis {
	t.Helper()
	r := &Redis{
		Addr:     "127.0.0.1:" + strconv.Itoa(FreePort(t)),
		Password: o.Password,
		t:        t,
		bin:      NeedTool(t, "redis-server"),
		dir:      t.TempDir(),
		Out:      &SyncBuffer{},
	}
	if o.TLS != nil {
		certFile, keyFile := filepath.Join(r.dir, "tls.crt"), filepath.Join(r.dir, "tls.key")
		o.TLS.Install(t, certFile, keyFile)
		r.tlsArgs = []string{"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-auth-clients", "no"}
	}
	r.Start()
	t.Cleanup(r.Kill)
	return r
}

// Start runs the server (again) on r.Addr and waits until it answers.
func (r *Redis) Start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.Addr)
	args := []string{
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"), "--daemonize", "no",
	}
	if r.cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(r.dir, "nodes.conf"))
	}
	if r.tlsArgs != nil {
		args[1] = "0"
		args = append(append(args, "--tls-port", port), r.tlsArgs...)
	}
	if r.Password != "" {
		args = append(args, "--requirepass", r.Password)
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Stdout, cmd.Stderr = r.Out, r.Out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	up := r.ping
	if r.tlsArgs != nil {
		up = r.listening
	}
	for !up() {
		select {
		case <-exited:
			r.t.Fatalf("redis-server exited:\n%s", r.Out)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server did not come up on %s:\n%s", r.Addr, r.Out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill ends the server at once (SIGKILL): connections drop, nothing is
// saved. It does nothing if the server is not running.
func (r *Redis) Kill() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// Do sends one command in RESP and returns the reply as text, for tests that
// read or reset the server's state without a client library: a simple
// string or error as its line ("+OK", "-ERR ..."), an integer as ":N", a
// bulk string as its value ("$-1" for nil), an array as its elements
// joined by spaces.
func (r *Redis) Do(args ...string) string {
	r.t.Helper()
	c, err := net.DialTimeout("tcp", r.Addr, 2*time.Second)
	if err != nil {
		r.t.Fatalf("redis %s: %v", r.Addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if r.Password != "" {
		c.Write(resp("AUTH", r.Password))
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
			r.t.Fatalf("redis AUTH: %q", l)
		}
	}
	c.Write(resp(args...))
	v, err := readReply(br)
	if err != nil {
		r.t.Fatalf("redis %v: %v", args, err)
	}
	return v
}

func readReply(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "$") && line != "$-1":
		v, err := br.ReadString('\n')
		return strings.TrimRight(v, "\r\n"), err
	case strings.HasPrefix(line, "*") && line != "*-1":
		n, _ := strconv.Atoi(line[1:])
		parts := make([]string, n)
		for i := range parts {
			if parts[i], err = readReply(br); err != nil {
				return "", err
			}
		}
		return strings.Join(parts, " "), nil
	}
	return line, nil
}

func (r *Redis) ping() bool {
	c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	c.Write(resp("PING"))
	l, err := bufio.NewReader(c).ReadString('\n')
	// An unauthenticated PING is refused with NOAUTH, which still says the
	// server is up.
	return err == nil && (strings.HasPrefix(l, "+PONG") || strings.HasPrefix(l, "-NOAUTH"))
}

// listening reports whether the TLS port accepts connections; Do and ping
// speak plain RESP only.
func (r *Redis) listening() bool {
	c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func resp(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}

// StartSilent listens on a free loopback port, accepts every connection and
// reads what it is sent, but never answers: a store that is up at the TCP
// level and hangs every command. It returns the address; the listener and
// its connections close when the test ends.
func StartSilent(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// RedisCluster is a real Redis Cluster of masters without replicas, each a
// redis-server on a free loopback port, its slots assigned by
// `redis-cli --cluster create`.
type RedisCluster struct {
	Nodes []*Redis
}

// Addrs are the nodes' host:port addresses.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// StartRedisCluster starts n nodes in cluster mode, creates the cluster and
// waits until every node reports cluster_state:ok.
func StartRedisCluster(t testing.TB, n int) *RedisCluster {
	t.Helper()
	cli := NeedTool(t, "redis-cli")
	c := &RedisCluster{}
	for range n {
		r := &Redis{Addr: "127.0.0.1:" + strconv.Itoa(FreePort(t)), t: t, bin: NeedTool(t, "redis-server"), dir: t.TempDir(), Out: &SyncBuffer{}}
		r.cluster = true
		r.Start()
		t.Cleanup(r.Kill)
		c.Nodes = append(c.Nodes, r)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, r := range c.Nodes {
		for !strings.Contains(r.Do("CLUSTER", "INFO"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok on %s: %s", r.Addr, r.Do("CLUSTER", "INFO"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c
}
