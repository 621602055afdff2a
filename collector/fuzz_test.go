package collector

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dockscope/dockscope/pipeline"
)

// FuzzStatsDecode feeds the stats decoding whatever a broken or hostile
// Engine could send: it must not panic, and what it accepts must be sane.
func FuzzStatsDecode(f *testing.F) {
	for _, p := range []string{
		filepath.Join(v1Dir, "stats-oneshot.json"),
		filepath.Join(v1Dir, "stats-twosample.json"),
		"testdata/engine-26.1-cgroupv2-systemd/limited/stats.json",
		"testdata/engine-26.1-cgroupv2-systemd/plain/stats.json",
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2]) // a stream cut short
	}
	f.Add([]byte(`{"read":"2026-01-01T00:00:00Z","memory_stats":{"usage":1,"stats":{"anon":5,"inactive_file":9}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var raw engineStats
		if err := json.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil {
			return
		}
		st, err := statsFromResponse(raw)
		if err != nil {
			return
		}
		checkStats(t, st)
	})
}

// FuzzCgroupFiles feeds the cgroup and /proc parsers arbitrary file
// contents (a kernel of another version, a truncated read).
func FuzzCgroupFiles(f *testing.F) {
	f.Add([]byte(netDev))
	f.Add([]byte("8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n"))
	f.Add([]byte("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n253:1 rbytes=x\n"))
	f.Add([]byte("total_rss 1\ntotal_cache 2\nuser 3\nsystem 4\n"))
	f.Add([]byte("some avg10=6.28 avg60=5.56 avg300=1.50 total=4833925\nfull avg10=5.79 avg60=5.02 avg300=1.35 total=4359925\n"))
	f.Add([]byte("30479250 7817479 \n"))
	// Real cgroup v2 files (io.stat, cpu.stat, memory.stat) and net/dev.
	for _, p := range []string{"memory/cgroup/io.stat", "burn/cgroup/cpu.stat", "memory/cgroup/memory.stat", "memory/proc-pid-net-dev.txt"} {
		b, err := os.ReadFile(filepath.Join(v2Testdata, p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if psi, hasFull, ok := parsePSI(data); (!ok && psi.Some != 0) || (!hasFull && psi.Full != 0) {
			t.Fatalf("parsePSI(%q) = %+v, full %v, ok %v: a value without its line", data, psi, hasFull, ok)
		}
		if pc := parsePerCPU(data); pc != nil && len(pc) != len(bytes.Fields(data)) {
			t.Fatalf("parsePerCPU(%q) = %d values for %d fields", data, len(pc), len(bytes.Fields(data)))
		}
		for _, n := range parseNetDev(data) {
			if n.Interface == "lo" || n.Interface == "" || strings.ContainsAny(n.Interface, " \n|") {
				t.Fatalf("interface %q from %q", n.Interface, data)
			}
		}
		checkStats(t, pipeline.Stats{Disks: mergeDisks(parseBlkio(data), parseBlkio(data))})
		checkStats(t, pipeline.Stats{Disks: parseIOStat(data)})
		forEachKeyed(data, func(k string, _ uint64) {
			if strings.Contains(k, "\n") {
				t.Fatalf("key %q spans lines", k)
			}
		})
	})
}

// checkStats asserts what every converted sample must satisfy.
func checkStats(t *testing.T, st pipeline.Stats) {
	t.Helper()
	if st.MemoryWorkingSet > st.MemoryUsage {
		t.Fatalf("working set %d above usage %d", st.MemoryWorkingSet, st.MemoryUsage)
	}
	devs := make([]string, 0, len(st.Disks))
	for _, d := range st.Disks {
		devs = append(devs, d.Device)
	}
	if !slices.IsSorted(devs) || len(slices.Compact(slices.Clone(devs))) != len(devs) {
		t.Fatalf("devices not sorted and unique: %v", devs)
	}
	ifs := make([]string, 0, len(st.Networks))
	for _, n := range st.Networks {
		ifs = append(ifs, n.Interface)
	}
	if !slices.IsSorted(ifs) {
		t.Fatalf("interfaces not sorted: %v", ifs)
	}
}

// FuzzCgroupResolve feeds the /proc/<pid>/cgroup and mountinfo parsers, and
// the resolution over them, whatever a kernel of another version, another
// runtime or a truncated read could give: no panic, and what resolves is a
// directory under the cgroup root named for the container. "@ROOT@" in the
// mount table stands for the cgroup root.
func FuzzCgroupResolve(f *testing.F) {
	const id = "9a651247d1ebfd48e18988c645abddf0901b61e267e8d15e1233364072fedfd6"
	for _, dir := range []string{"v1-cgroupfs", "v1-relative-parent", "v1-agent-cgroupns", "v1-systemd", "v2-systemd", "podman-systemd-v2"} {
		cg, err1 := os.ReadFile(filepath.Join(cgroupTestdata, dir, "cgroup"))
		mi, err2 := os.ReadFile(filepath.Join(cgroupTestdata, dir, "mountinfo"))
		if err := errors.Join(err1, err2); err != nil {
			f.Fatal(err)
		}
		mi = bytes.ReplaceAll(mi, []byte(" /sys/fs/cgroup"), []byte(" @ROOT@"))
		mi = bytes.ReplaceAll(mi, []byte(" /host/sys/fs/cgroup"), []byte(" @ROOT@"))
		f.Add(cg, mi)
	}
	f.Add([]byte("0::/../"+id+"\n1:cpu:/a\\040b/"+id), []byte("1 2 0:1 /../.. @ROOT@ rw - cgroup2 x rw\n3 4 0:2 /a\\040b @ROOT@/cpu rw - cgroup x rw,cpu\n"))
	root := f.TempDir()
	dirs := []string{"docker/" + id, "x/" + id, "memory/a b/" + id}
	for _, c := range v1Controllers {
		dirs = append(dirs, c+"/docker/"+id)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, cg, mi []byte) {
		lines := parseProcCgroup(cg)
		for _, l := range lines {
			if !strings.HasPrefix(l.path, "/") {
				t.Fatalf("path %q from %q", l.path, cg)
			}
		}
		mounts := parseMountinfo(bytes.ReplaceAll(mi, []byte("@ROOT@"), []byte(root)))
		for _, v2 := range []bool{false, true} {
			r := newCgroupResolver(root, root, slog.New(slog.DiscardHandler), true)
			r.v2, r.usable = v2, true
			e, err := r.resolveFrom(id, lines, mounts)
			if err != nil {
				continue
			}
			if !strings.HasPrefix(e.path, "/") || !strings.Contains(e.path, id) || slices.Contains(strings.Split(e.path, "/"), "..") {
				t.Fatalf("id label %q", e.path)
			}
			for _, d := range e.dirs.list() {
				if !within(d, root) || !isDir(d) || slices.Contains(strings.Split(d, "/"), "..") {
					t.Fatalf("directory %q outside %s or missing", d, root)
				}
			}
		}
	})
}
