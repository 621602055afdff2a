package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// writeTree creates files (path → content) under a new temporary root.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// netDev is /proc/<pid>/net/dev as read on Engine 20.10's host.
const netDev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0:     736       8    1    2    0     0          0         0      300       3    4    5    0     0       0          0
`

var readAt = time.Date(2026, 12, 3, 13, 0, 0, 0, time.UTC)

// Recorded from a container on this project's cgroup v1 host (cgroupfs
// driver), with blkio and throttling values added.
func TestCgroupReaderV1(t *testing.T) {
	const cg = "/docker/66d9fb7e"
	root := writeTree(t, map[string]string{
		"cgroup/cpuacct/docker/66d9fb7e/cpuacct.usage":        "52948874\n",
		"cgroup/cpuacct/docker/66d9fb7e/cpuacct.stat":         "user 2\nsystem 3\n",
		"cgroup/cpu/docker/66d9fb7e/cpu.stat":                 "nr_periods 10\nnr_throttled 4\nthrottled_time 250000000\nnr_bursts 0\nburst_time 0\n",
		"cgroup/memory/docker/66d9fb7e/memory.usage_in_bytes": "11964416\n",
		"cgroup/memory/docker/66d9fb7e/memory.limit_in_bytes": "9223372036854771712\n",
		"cgroup/memory/docker/66d9fb7e/memory.failcnt":        "5\n",
		"cgroup/memory/docker/66d9fb7e/memory.stat": "cache 1888256\nrss 9580544\ninactive_file 99\n" +
			"total_cache 1888256\ntotal_rss 9580544\ntotal_swap 0\ntotal_inactive_file 1888256\n",
		"cgroup/pids/docker/66d9fb7e/pids.current":                               "7\n",
		"cgroup/blkio/docker/66d9fb7e/blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n",
		"cgroup/blkio/docker/66d9fb7e/blkio.throttle.io_serviced_recursive":      "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n",
		"cgroup/blkio/docker/66d9fb7e/blkio.io_service_bytes_recursive":          "", // CFQ off: empty
		"proc/4242/net/dev": netDev,
	})
	r, err := newCgroupReader(filepath.Join(root, "cgroup"), filepath.Join(root, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	if r.v2 {
		t.Fatal("a v1 tree read as v2")
	}
	r.now, r.cpus = func() time.Time { return readAt }, 2
	target := statsTarget{cgroupPath: cg, pid: 4242, networkMode: "bridge", cpuQuota: true, memoryLimit: true}
	got, err := r.read(target)
	if err != nil {
		t.Fatal(err)
	}
	want := pipeline.Stats{
		Read: readAt, OnlineCPUs: 2,
		CPUTotal: 52948874, CPUUser: 20 * time.Millisecond, CPUSystem: 30 * time.Millisecond,
		CPUPeriods: 10, CPUThrottledPeriods: 4, CPUThrottledTime: 250 * time.Millisecond,
		MemoryUsage: 11964416, MemoryWorkingSet: 11964416 - 1888256, MemoryRSS: 9580544, MemoryCache: 1888256,
		HasMemorySwap: true, MemoryFailcnt: 5, Pids: 7,
		Present:  pipeline.MemFileDetail | pipeline.MemFailcnt | pipeline.CPUBurst,
		Memory:   pipeline.MemoryDetail{InactiveFile: 1888256},
		Networks: []pipeline.NetworkStats{{Interface: "eth0", RxBytes: 736, RxPackets: 8, RxErrors: 1, RxDropped: 2, TxBytes: 300, TxPackets: 3, TxErrors: 4, TxDropped: 5}},
		Disks:    []pipeline.DiskStats{{Device: "8:0", ReadBytes: 4096, WriteBytes: 8192, Reads: 1, Writes: 2, HasOps: true}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v1 cgroup stats:\n got %+v\nwant %+v", got, want)
	}

	// Host networking: the host's interfaces are not the container's.
	// Without a quota or a limit those files are not read: their counters
	// cannot move.
	unlimited := target
	unlimited.cpuQuota, unlimited.memoryLimit = false, false
	if got, _ := r.read(unlimited); got.CPUPeriods != 0 || got.CPUThrottledTime != 0 || got.MemoryFailcnt != 0 || got.CPUTotal != want.CPUTotal {
		t.Errorf("without quota and limit: %+v", got)
	}
	host := target
	host.networkMode = "host"
	if got, _ := r.read(host); got.Networks != nil {
		t.Errorf("host network mode read interfaces: %+v", got.Networks)
	}
	// A member of another container's network namespace: the interfaces
	// are that container's, exported once, under its name.
	shared := target
	shared.networkMode = "container:0123abcd"
	if got, _ := r.read(shared); got.Networks != nil || got.CPUTotal != want.CPUTotal {
		t.Errorf("container: network mode read interfaces: %+v", got.Networks)
	}
	// A container whose cgroup is gone (it just stopped) is an error, so
	// that the sampler asks the Engine instead.
	gone := target
	gone.cgroupPath = "/docker/gone"
	if _, err := r.read(gone); err == nil {
		t.Error("reading a missing cgroup succeeded")
	}
}

func TestCgroupReaderV2(t *testing.T) {
	const cg = "/system.slice/docker-5f0c.scope"
	root := writeTree(t, map[string]string{
		"cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
		"cgroup/system.slice/docker-5f0c.scope/cpu.stat": "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n" +
			"nr_periods 120\nnr_throttled 7\nthrottled_usec 350000\n",
		"cgroup/system.slice/docker-5f0c.scope/memory.current": "52428800\n",
		"cgroup/system.slice/docker-5f0c.scope/memory.max":     "max\n",
		"cgroup/system.slice/docker-5f0c.scope/memory.stat":    "anon 31457280\nfile 16777216\ninactive_file 8388608\nactive_file 8388608\n",
		"cgroup/system.slice/docker-5f0c.scope/pids.current":   "5\n",
		"cgroup/system.slice/docker-5f0c.scope/io.stat":        "253:1 rbytes=8192 wbytes=0 rios=2 wios=0 dbytes=0 dios=0\n8:0 rbytes=4096000 wbytes=1048576 rios=100 wios=50 dbytes=0 dios=0\n",
		"proc/77/net/dev": netDev,
	})
	r, err := newCgroupReader(filepath.Join(root, "cgroup"), filepath.Join(root, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	if !r.v2 {
		t.Fatal("a v2 tree read as v1")
	}
	r.now, r.cpus = func() time.Time { return readAt }, 4
	got, err := r.read(statsTarget{cgroupPath: cg, pid: 77, networkMode: "bridge"})
	if err != nil {
		t.Fatal(err)
	}
	want := pipeline.Stats{
		Read: readAt, OnlineCPUs: 4,
		CPUTotal: 1234567 * time.Microsecond, CPUUser: time.Second, CPUSystem: 234567 * time.Microsecond,
		CPUPeriods: 120, CPUThrottledPeriods: 7, CPUThrottledTime: 350 * time.Millisecond,
		MemoryUsage: 52428800, MemoryWorkingSet: 52428800 - 8388608, MemoryRSS: 31457280, MemoryCache: 16777216,
		Pids:     5,
		Present:  pipeline.MemFileDetail,
		Memory:   pipeline.MemoryDetail{ActiveFile: 8388608, InactiveFile: 8388608},
		Networks: []pipeline.NetworkStats{{Interface: "eth0", RxBytes: 736, RxPackets: 8, RxErrors: 1, RxDropped: 2, TxBytes: 300, TxPackets: 3, TxErrors: 4, TxDropped: 5}},
		Disks: []pipeline.DiskStats{
			{Device: "253:1", ReadBytes: 8192, Reads: 2, HasOps: true},
			{Device: "8:0", ReadBytes: 4096000, WriteBytes: 1048576, Reads: 100, Writes: 50, HasOps: true},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v2 cgroup stats:\n got %+v\nwant %+v", got, want)
	}
}

func TestCgroupReaderNeedsACgroupFS(t *testing.T) {
	if _, err := newCgroupReader(t.TempDir(), "/proc"); err == nil {
		t.Fatal("an empty directory was taken for a cgroup filesystem")
	}
}

func TestOnlineCPUs(t *testing.T) {
	for in, want := range map[string]uint32{"0-3\n": 4, "0\n": 1, "0-1,4,6-7\n": 5, "garbage": 0, "3-1": 0} {
		p := filepath.Join(t.TempDir(), "online")
		os.WriteFile(p, []byte(in), 0o644)
		if got := onlineCPUs(p); got != want {
			t.Errorf("onlineCPUs(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestStatFilesKeepDescriptorsUntilSwept: a file is opened once and read
// afresh each time, and closed once a round passed without reading it.
func TestStatFilesKeepDescriptorsUntilSwept(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "memory.usage_in_bytes")
	if err := os.WriteFile(path, []byte("100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := &openFiles{fds: map[string]*openFile{}}
	f := &statFiles{buf: make([]byte, 4), open: o} // smaller than a file: reads grow it
	if v, err := f.uint(path); err != nil || v != 100 {
		t.Fatalf("first read = %d, %v", v, err)
	}
	if err := os.WriteFile(path, []byte("123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := f.uint(path); err != nil || v != 123456789 {
		t.Fatalf("read through the kept descriptor = %d, %v", v, err)
	}
	if len(o.fds) != 1 {
		t.Fatalf("%d descriptors kept for one file", len(o.fds))
	}
	o.sweep() // the round it was read in ends: kept
	if len(o.fds) != 1 {
		t.Fatal("a file read in the last round was closed")
	}
	o.sweep() // a round without reading it: closed
	if len(o.fds) != 0 {
		t.Fatal("a file unread for a round is still open")
	}
	if _, err := f.uint(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	f.uint(path)
	o.closeAll()
	if len(o.fds) != 0 {
		t.Fatal("closeAll left descriptors open")
	}
}

// TestStatFilesKeepNoMoreDescriptorsThanTheCap: past the cap a file is
// read through a descriptor opened and closed at once, and read right.
func TestStatFilesKeepNoMoreDescriptorsThanTheCap(t *testing.T) {
	dir := t.TempDir()
	o := &openFiles{fds: map[string]*openFile{}, max: 2}
	f := &statFiles{buf: make([]byte, 64), open: o}
	for i := range 5 {
		path := filepath.Join(dir, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(path, fmt.Appendf(nil, "%d\n", 10+i), 0o644); err != nil {
			t.Fatal(err)
		}
		if v, err := f.uint(path); err != nil || v != uint64(10+i) {
			t.Fatalf("read of file %d = %d, %v", i, v, err)
		}
	}
	if len(o.fds) != 2 {
		t.Fatalf("%d descriptors kept, the cap is 2", len(o.fds))
	}
	if keptFilesCap() < 1 {
		t.Fatalf("keptFilesCap() = %d", keptFilesCap())
	}
}
