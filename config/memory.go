package config

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// memoryUnits are the size suffixes server.memory_limit accepts: binary
// (IEC) units only, so that "1GiB" cannot be mistaken for 10^9 bytes.
var memoryUnits = []struct {
	suffix string
	shift  uint
}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}}

const memoryHint = `use bytes (an integer, or with a unit: 512MiB, 2GiB) or a percentage such as "80%"`

// memoryLimit decodes server.memory_limit: an integer of bytes, a size
// with a binary unit, or a percentage.
func (d *decoder) memoryLimit(n *yaml.Node, v *MemoryLimit) {
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || tag != intTag && tag != strTag {
		d.errorf(n, "expected a memory limit, got %s (%s)", describe(n), memoryHint)
		return
	}
	if tag == intTag {
		b, err := parseInt(n.Value)
		switch {
		case err != nil:
			d.errorf(n, "%v", err)
		case b < 0:
			d.errorf(n, "server.memory_limit must be >= 0, got %d", b)
		default:
			*v = MemoryLimit{Bytes: b}
		}
		return
	}
	s := strings.TrimSpace(n.Value)
	if num, ok := strings.CutSuffix(s, "%"); ok {
		pct, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || math.IsNaN(pct) || pct <= 0 || pct > 100 {
			d.errorf(n, "server.memory_limit %s: a percentage must be above 0%% and at most 100%%", quoteShort(n.Value))
			return
		}
		*v = MemoryLimit{Percent: pct}
		return
	}
	for _, u := range memoryUnits {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		i, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil || i < 0 || i > math.MaxInt64>>u.shift {
			d.errorf(n, "bad memory limit %s (%s)", quoteShort(n.Value), memoryHint)
			return
		}
		*v = MemoryLimit{Bytes: i << u.shift}
		return
	}
	d.errorf(n, "bad memory limit %s (%s)", quoteShort(n.Value), memoryHint)
}

// MarshalYAML writes the limit as it was written: bytes or a percentage,
// so that the effective config shows what the operator chose.
func (m MemoryLimit) MarshalYAML() (any, error) {
	if m.Percent > 0 {
		return strconv.FormatFloat(m.Percent, 'f', -1, 64) + "%", nil
	}
	return m.Bytes, nil
}

// memoryEnv is where a percentage server.memory_limit looks for the
// process's memory limit; tests give their own.
type memoryEnv struct {
	// goLimit returns the Go runtime's soft memory limit (GOMEMLIMIT or
	// debug.SetMemoryLimit); math.MaxInt64 when none is set.
	goLimit func() int64
	// readFile reads a cgroup file.
	readFile func(name string) ([]byte, error)
}

// systemMemory is the running process's environment.
func systemMemory() memoryEnv {
	return memoryEnv{goLimit: func() int64 { return debug.SetMemoryLimit(-1) }, readFile: os.ReadFile}
}

// unlimitedCgroup is the least cgroup v1 value that means "no limit": the
// kernel reports an unset limit as the largest page count times the page
// size, just under 2^63.
const unlimitedCgroup = 1 << 62

// limit returns the memory limit a percentage is taken of and what it
// is: GOMEMLIMIT when set (the runtime's own target, which the GC already
// works to), else the cgroup's memory limit — v2's memory.max, else v1's
// memory.limit_in_bytes — of the process's own cgroup or, inside a
// container's cgroup namespace, of the root. 0 when there is none.
func (e memoryEnv) limit() (int64, string) {
	if l := e.goLimit(); l > 0 && l != math.MaxInt64 {
		return l, "GOMEMLIMIT"
	}
	for _, f := range e.cgroupFiles() {
		b, err := e.readFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= unlimitedCgroup { // "max", or v1's unset value
			continue
		}
		return n, f
	}
	return 0, ""
}

// cgroupFiles lists the files that may hold the process's memory limit,
// most specific first, from /proc/self/cgroup.
func (e memoryEnv) cgroupFiles() []string {
	var v2, v1 string
	if b, err := e.readFile("/proc/self/cgroup"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			// hierarchy-ID:controller-list:cgroup-path
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) != 3 {
				continue
			}
			switch {
			case parts[0] == "0" && parts[1] == "":
				v2 = parts[2]
			case strings.Contains(","+parts[1]+",", ",memory,"):
				v1 = parts[2]
			}
		}
	}
	var files []string
	if v2 != "" && v2 != "/" {
		files = append(files, path.Join("/sys/fs/cgroup", v2, "memory.max"))
	}
	files = append(files, "/sys/fs/cgroup/memory.max")
	if v1 != "" && v1 != "/" {
		files = append(files, path.Join("/sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"))
	}
	return append(files, "/sys/fs/cgroup/memory/memory.limit_in_bytes")
}

// memoryLimit resolves server.memory_limit to bytes.
func (v *validator) memoryLimit() {
	m := &v.c.Server.MemoryLimit
	if m.Percent == 0 {
		m.Resolved, m.Of = m.Bytes, ""
		return
	}
	limit, of := v.mem.limit()
	if limit == 0 {
		v.errorf("server.memory_limit", "server.memory_limit %s%% needs a memory limit to take a share of, and the process has none: neither GOMEMLIMIT nor a cgroup memory limit is set (give bytes instead, such as 2GiB)",
			strconv.FormatFloat(m.Percent, 'f', -1, 64))
		return
	}
	m.Resolved, m.Of = int64(float64(limit)*m.Percent/100), of
	if m.Resolved < 1 {
		m.Resolved = 1
	}
}

// String describes the limit for logs: "2147483648 bytes" or
// "1717986918 bytes (80% of GOMEMLIMIT)".
func (m MemoryLimit) String() string {
	if m.Percent == 0 {
		return fmt.Sprintf("%d bytes", m.Resolved)
	}
	return fmt.Sprintf("%d bytes (%s%% of %s)", m.Resolved, strconv.FormatFloat(m.Percent, 'f', -1, 64), m.Of)
}
