package collector

import (
	"bytes"
	"encoding/json"
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
		"testdata/cgroupv2-constructed/stats-oneshot.json",
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
	f.Fuzz(func(t *testing.T, data []byte) {
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
