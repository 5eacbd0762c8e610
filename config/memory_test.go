package config

import (
	"errors"
	"io/fs"
	"math"
	"strings"
	"testing"
)

// fakeMemory is a memoryEnv with a given GOMEMLIMIT (0: unset) and files.
func fakeMemory(goLimit int64, files map[string]string) memoryEnv {
	return memoryEnv{
		goLimit: func() int64 {
			if goLimit == 0 {
				return math.MaxInt64
			}
			return goLimit
		},
		readFile: func(name string) ([]byte, error) {
			if s, ok := files[name]; ok {
				return []byte(s), nil
			}
			return nil, fs.ErrNotExist
		},
	}
}

func TestMemoryLimitSizes(t *testing.T) {
	for _, tt := range []struct {
		src  string
		want int64
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"512MiB", 512 << 20},
		{"2GiB", 2 << 30},
		{"64 KiB", 64 << 10},
		{"1TiB", 1 << 40},
	} {
		cfg, err := parse("t.yaml", []byte("server:\n  memory_limit: "+tt.src+"\n"+base), fakeMemory(0, nil))
		if err != nil {
			t.Errorf("%s: %v", tt.src, err)
			continue
		}
		if m := cfg.Server.MemoryLimit; m.Resolved != tt.want || m.Bytes != tt.want || m.Percent != 0 {
			t.Errorf("%s: %+v, want %d bytes", tt.src, m, tt.want)
		}
	}
}

// TestMemoryLimitPercent: a percentage is taken of GOMEMLIMIT when it is
// set, else of the cgroup's limit (v2, then v1), and is a config error at
// the key's position when there is neither.
func TestMemoryLimitPercent(t *testing.T) {
	const v2proc = "0::/kubepods/pod1/c1\n"
	const v1proc = "12:pids:/x\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"
	for _, tt := range []struct {
		name    string
		goLimit int64
		files   map[string]string
		src     string
		want    int64
		of      string
		err     string
	}{
		{name: "GOMEMLIMIT", goLimit: 1000 << 20, src: "80%", want: 800 << 20, of: "GOMEMLIMIT",
			files: map[string]string{"/sys/fs/cgroup/memory.max": "4294967296\n"}},
		{name: "fraction of a percent", goLimit: 1000, src: "12.5%", want: 125, of: "GOMEMLIMIT"},
		{name: "own cgroup v2", src: "50%", want: 1 << 30, of: "/sys/fs/cgroup/kubepods/pod1/c1/memory.max",
			files: map[string]string{"/proc/self/cgroup": v2proc, "/sys/fs/cgroup/kubepods/pod1/c1/memory.max": "2147483648\n"}},
		{name: "namespaced cgroup v2", src: "50%", want: 1 << 30, of: "/sys/fs/cgroup/memory.max",
			files: map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "2147483648\n"}},
		{name: "cgroup v1", src: "25%", want: 1 << 28, of: "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
			files: map[string]string{"/proc/self/cgroup": v1proc, "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "1073741824"}},
		{name: "v1 root", src: "25%", want: 1 << 28, of: "/sys/fs/cgroup/memory/memory.limit_in_bytes",
			files: map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824"}},
		{name: "v2 max, v1 limit", src: "100%", want: 1 << 30, of: "/sys/fs/cgroup/memory/memory.limit_in_bytes",
			files: map[string]string{"/sys/fs/cgroup/memory.max": "max\n", "/sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824"}},
		{name: "no limit anywhere", src: "80%",
			files: map[string]string{"/proc/self/cgroup": v1proc, "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
				"/sys/fs/cgroup/memory.max": "max\n"},
			err: `t.yaml:2:17: server.memory_limit 80% needs a memory limit to take a share of, and the process has none: neither GOMEMLIMIT nor a cgroup memory limit is set (give bytes instead, such as 2GiB)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse("t.yaml", []byte("server:\n  memory_limit: "+tt.src+"\n"+base), fakeMemory(tt.goLimit, tt.files))
			if tt.err != "" {
				var errs Errors
				if !errors.As(err, &errs) || err.Error() != tt.err {
					t.Fatalf("error %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := cfg.Server.MemoryLimit
			if m.Resolved != tt.want || m.Of != tt.of || m.Bytes != 0 {
				t.Errorf("%+v, want %d bytes of %s", m, tt.want, tt.of)
			}
		})
	}
}

// TestMemoryLimitPublic: the effective config shows the limit as written.
func TestMemoryLimitPublic(t *testing.T) {
	for src, want := range map[string]any{"80%": "80%", "12.5%": "12.5%", "1MiB": 1 << 20, "0": 0} {
		cfg, err := parse("t.yaml", []byte("server:\n  memory_limit: "+src+"\n"+base), fakeMemory(1<<30, nil))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := cfg.Public()
		if err != nil {
			t.Fatal(err)
		}
		if got := pub["server"].(map[string]any)["memory_limit"]; got != want {
			t.Errorf("%s: public memory_limit %#v, want %#v", src, got, want)
		}
		if s := cfg.Server.MemoryLimit.String(); !strings.HasSuffix(s, ")") && strings.HasSuffix(src, "%") {
			t.Errorf("%s: String() = %q names no source", src, s)
		}
	}
}
