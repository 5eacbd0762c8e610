package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process of the harness: one of its own roles, or a peer
// proxy run under the guard role. Either way the child watches its stdin,
// a pipe from the harness: closing it (stop, or the harness dying) ends the
// child, and each child also ends by itself after a fixed lifetime.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	pid   int    // the server process (the guarded program for a peer)
	line  string // first line the child printed: an address or a pid
	done  chan struct{}
}

// childLife bounds every child: far beyond one scenario, well within the
// harness's own limit, so that nothing survives a run that hangs.
const childLife = 5 * time.Minute

// startSelf runs this binary again in a role and waits for its first line.
func startSelf(name string, args ...string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startProc(name, exe, args, os.Stderr)
}

// startGuarded runs prog under the guard role, its output in logPath.
func startGuarded(name, logPath, prog string, args []string, env []string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	gargs := []string{"-role", "guard", "-log", logPath, "-life", childLife.String()}
	for _, e := range env {
		gargs = append(gargs, "-env", e)
	}
	gargs = append(gargs, "--", prog)
	gargs = append(gargs, args...)
	p, err := startProc(name, exe, gargs, os.Stderr)
	if err != nil {
		return nil, err
	}
	if p.pid, err = strconv.Atoi(p.line); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: guard said %q", name, p.line)
	}
	return p, nil
}

func startProc(name, exe string, args []string, stderr io.Writer) (*proc, error) {
	cmd := exec.Command(exe, args...)
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, stdin: stdin, pid: cmd.Process.Pid, done: make(chan struct{})}
	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		l, _ := br.ReadString('\n')
		lines <- strings.TrimSpace(l)
		io.Copy(io.Discard, br)
	}()
	go func() { cmd.Wait(); close(p.done) }()
	select {
	case p.line = <-lines:
		if p.line == "" {
			p.stop()
			return nil, fmt.Errorf("%s exited before it was ready", name)
		}
	case <-time.After(15 * time.Second):
		p.stop()
		return nil, fmt.Errorf("%s: not ready after 15s", name)
	}
	return p, nil
}

// stop ends the child and waits for it: closing stdin asks, a kill of its
// process group after 5 s insists.
func (p *proc) stop() {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// peakRSS is the sum of VmHWM (peak resident set) over the processes of the
// server's process group: the process itself, or nginx's master and workers.
// Shared pages of a multi-process server are counted once per process.
func (p *proc) peakRSS() int64 {
	var total int64
	for _, pid := range groupPids(p.pid) {
		total += statusKiB(pid, "VmHWM:") * 1024
	}
	return total
}

// cpu is the CPU time (user and system) the processes of the server's
// process group have used so far, from /proc/PID/stat; children that have
// exited are not counted, which no server under test has.
func (p *proc) cpu() time.Duration {
	var ticks int64
	for _, pid := range groupPids(p.pid) {
		// After "(comm)": state is field 3, utime 14 and stime 15.
		if f := statFields(pid); len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + st
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTicks = 100

// groupPids lists the processes whose process group is pgid.
func groupPids(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// statFields returns the fields of /proc/PID/stat after "(comm)" (which
// may hold spaces): state first, field 3 of proc(5); nil if unreadable.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// statusKiB reads a "Name:  N kB" field of /proc/PID/status.
func statusKiB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// runGuard is the guard role: it runs prog in its own process group with
// its output in logPath, prints its pid, and ends the whole group (nginx
// forks workers) when stdin closes or life passes. SIGTERM first, then
// SIGKILL after 3 s.
func runGuard(logPath string, life time.Duration, env []string, prog string, args []string) error {
	lf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.Command(prog, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	fmt.Println(cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stdinGone := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdinGone) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	select {
	case err := <-exited:
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stray workers
		return fmt.Errorf("%s exited: %v", prog, err)
	case <-stdinGone:
	case <-sig:
	case <-time.After(life):
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(3 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // workers that outlived the master
	return nil
}

// freePort returns a loopback address with a port free at the time of
// asking.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls GET url until it answers 200, for up to 15 s.
func waitReady(url string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				client.CloseIdleConnections()
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready: %w", url, last)
}

var errSkip = errors.New("skipped")
