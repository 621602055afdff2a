package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
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

// v2Testdata holds files recorded on a real cgroup v2 host with Docker's
// systemd cgroup driver (the VM of scripts/cgroupv2-vm.sh; see its README).
const v2Testdata = "testdata/engine-26.1-cgroupv2-systemd"

// recordedV2Tree lays out a recorded container's scope directory where the
// host has it, <root>/cgroup/system.slice/docker-<id>.scope, below the host's
// cgroup.controllers, and returns the root and the container's cgroup path.
func recordedV2Tree(t *testing.T, container string) (root, cgroupPath string) {
	t.Helper()
	dir := filepath.Join(v2Testdata, container)
	id, err := os.ReadFile(filepath.Join(dir, "id.txt"))
	if err != nil {
		t.Fatal(err)
	}
	cgroupPath = "/system.slice/docker-" + strings.TrimSpace(string(id)) + ".scope"
	files := map[string]string{}
	controllers, err := os.ReadFile(filepath.Join(v2Testdata, "host-cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	files["cgroup/cgroup.controllers"] = string(controllers)
	entries, err := os.ReadDir(filepath.Join(dir, "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files["cgroup"+cgroupPath+"/"+e.Name()] = string(b)
	}
	// The main process's network counters, where they were recorded.
	if b, err := os.ReadFile(filepath.Join(dir, "proc-pid-net-dev.txt")); err == nil {
		files["proc/"+strconv.Itoa(recordedPid)+"/net/dev"] = string(b)
	}
	return writeTree(t, files), cgroupPath
}

// recordedPid stands for a recorded container's main process.
const recordedPid = 4242

// TestCgroupReaderV2 reads the files of a container run with --memory 256m
// --cpus 0.5 --pids-limit 100 that wrote 32 MiB with fsync and burnt CPU
// under its quota, recorded on Docker 26.1's systemd driver, kernel 6.12.
func TestCgroupReaderV2(t *testing.T) {
	root, cg := recordedV2Tree(t, "limited")
	r, err := newCgroupReader(filepath.Join(root, "cgroup"), filepath.Join(root, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	if !r.v2 {
		t.Fatal("a v2 tree read as v1")
	}
	r.now, r.cpus = func() time.Time { return readAt }, 2
	got, err := r.read(statsTarget{cgroupPath: cg, networkMode: "bridge", cpuQuota: true, memoryLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	// The values of cpu.stat, memory.current, memory.stat (anon, file,
	// inactive_file), pids.current and io.stat there.
	want := pipeline.Stats{
		Read: readAt, OnlineCPUs: 2,
		CPUTotal: 6604341 * time.Microsecond, CPUUser: 2656816 * time.Microsecond, CPUSystem: 3947524 * time.Microsecond,
		CPUPeriods: 156, CPUThrottledPeriods: 113, CPUThrottledTime: 7090654 * time.Microsecond,
		// The written file's pages are all inactive page cache: the working
		// set (what `docker stats` shows as usage) is 1.4 MiB of 33.4 MiB.
		MemoryUsage: 35053568, MemoryWorkingSet: 35053568 - 33558528, MemoryRSS: 114688, MemoryCache: 33558528,
		Pids: 2,
		// memory.peak, memory.stat's kernel/file/fault/reclaim/refault
		// keys, memory.events, cpu.stat's burst keys and the pressure
		// files there; a v2 cgroup has no failcnt.
		Present: pipeline.MemMaxUsage | pipeline.MemKernel | pipeline.MemFileDetail | pipeline.MemFaults |
			pipeline.MemReclaim | pipeline.MemRefault | pipeline.MemEvents | pipeline.CPUBurst |
			pipeline.PressureCPU | pipeline.PressureMemory | pipeline.PressureIO | pipeline.PressureCPUFull,
		Memory: pipeline.MemoryDetail{MaxUsage: 36352000, Kernel: 1380352, InactiveFile: 33558528,
			Pgfault: 2682, TotalPgfault: 2682},
		Pressure: pipeline.Pressure{
			CPU: pipeline.PSI{Some: 4833925 * time.Microsecond, Full: 4359925 * time.Microsecond},
			IO:  pipeline.PSI{Some: 4404 * time.Microsecond, Full: 4404 * time.Microsecond},
		},
		Disks: []pipeline.DiskStats{{Device: "254:0", WriteBytes: 32 << 20, Writes: 41, HasOps: true}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v2 cgroup stats:\n got %+v\nwant %+v", got, want)
	}
}

// TestCgroupReaderV2AgreesWithTheEngine compares what the cgroup source
// reads from each recorded container's files with what the Engine's stats
// response of about the same moment says (its counters moved a little in
// between: the containers ran a shell loop).
func TestCgroupReaderV2AgreesWithTheEngine(t *testing.T) {
	for _, tc := range []struct {
		c      string
		cpuTol float64 // seconds the containers ran between the two reads
	}{
		// Recorded by hand: files, then the Engine's stats a second later,
		// the containers running a shell loop.
		{"limited", 0.2}, {"plain", 0.2},
		// Recorded by TestCgroupV2VMSourcesAgree: the Engine's stats, then
		// the files, the containers idle.
		{"burn", 0.001}, {"memory", 0.001},
	} {
		c := tc.c
		t.Run(c, func(t *testing.T) {
			root, cg := recordedV2Tree(t, c)
			r, err := newCgroupReader(filepath.Join(root, "cgroup"), filepath.Join(root, "proc"))
			if err != nil {
				t.Fatal(err)
			}
			target := statsTarget{cgroupPath: cg, cpuQuota: true, memoryLimit: true}
			if fileExists(filepath.Join(root, "proc", strconv.Itoa(recordedPid))) {
				target.pid, target.networkMode = recordedPid, "bridge"
			}
			files, err := r.read(target)
			if err != nil {
				t.Fatal(err)
			}
			api, err := statsFromResponse(readJSON[engineStats](t, filepath.Join(v2Testdata, c, "stats.json")))
			if err != nil {
				t.Fatal(err)
			}
			near := func(what string, a, b, tol float64) {
				if d := a - b; d > tol || -d > tol {
					t.Errorf("%s: cgroup files %v, Engine %v (differ by more than %v)", what, a, b, tol)
				}
			}
			near("cpu seconds", files.CPUTotal.Seconds(), api.CPUTotal.Seconds(), tc.cpuTol)
			near("user seconds", files.CPUUser.Seconds(), api.CPUUser.Seconds(), tc.cpuTol)
			near("system seconds", files.CPUSystem.Seconds(), api.CPUSystem.Seconds(), tc.cpuTol)
			near("throttled periods", float64(files.CPUThrottledPeriods), float64(api.CPUThrottledPeriods), 0)
			near("throttled seconds", files.CPUThrottledTime.Seconds(), api.CPUThrottledTime.Seconds(), 0)
			near("memory usage", float64(files.MemoryUsage), float64(api.MemoryUsage), 64<<10)
			near("memory working set", float64(files.MemoryWorkingSet), float64(api.MemoryWorkingSet), 64<<10)
			near("memory rss", float64(files.MemoryRSS), float64(api.MemoryRSS), 64<<10)
			near("memory cache", float64(files.MemoryCache), float64(api.MemoryCache), 64<<10)
			near("pids", float64(files.Pids), float64(api.Pids), 0)
			// eth0's counters (net/dev was read last: a broadcast may have
			// arrived in between).
			if target.pid != 0 {
				if len(files.Networks) != 1 || len(api.Networks) != 1 || files.Networks[0].Interface != api.Networks[0].Interface {
					t.Fatalf("networks: cgroup files %+v, Engine %+v", files.Networks, api.Networks)
				}
				f, e := files.Networks[0], api.Networks[0]
				near("rx bytes", float64(f.RxBytes), float64(e.RxBytes), 256)
				near("rx packets", float64(f.RxPackets), float64(e.RxPackets), 2)
				near("tx bytes", float64(f.TxBytes), float64(e.TxBytes), 256)
				near("tx packets", float64(f.TxPackets), float64(e.TxPackets), 2)
			}
			// Bytes per device agree; only io.stat counts operations.
			if len(files.Disks) != len(api.Disks) {
				t.Fatalf("disks: cgroup files %+v, Engine %+v", files.Disks, api.Disks)
			}
			for i, d := range files.Disks {
				e := api.Disks[i]
				if d.Device != e.Device || d.ReadBytes != e.ReadBytes || d.WriteBytes != e.WriteBytes || !d.HasOps || e.HasOps {
					t.Errorf("disk %d: cgroup files %+v, Engine %+v", i, d, e)
				}
			}
		})
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
