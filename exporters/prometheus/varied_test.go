package prometheus

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// TestScrapeOfVariedValuesGolden holds the scrape's bytes for what the
// formatting fast paths meet (integers around 1e6 and 2^53, fractions,
// negative values, escapes, invalid UTF-8, per-CPU, network-only, swarm
// and k8s identities) to a golden file written by the renderer before
// those fast paths.
func TestScrapeOfVariedValuesGolden(t *testing.T) {
	now := time.Unix(1765000000, 123456789)
	s := pipeline.NewStore()
	vals := []float64{0, 1, 7, 999999, 1e6, 1048576, 123456789, 1 << 53, 1<<53 + 2, 1e21, 1.5, 0.000123, 3.14159, 1e-7, math.MaxUint64}
	for i := range 12 {
		id := fmt.Sprintf("%012x", i*7919)
		labels := map[string]string{"app": fmt.Sprintf("a%d", i%3), "odd.key-x": "v\"q\\\nz"}
		if i%4 == 0 {
			labels["bad"] = "x\xff\xfey"
		}
		if i%5 == 0 {
			delete(labels, "app")
		}
		st := pipeline.ContainerState{Status: []string{"running", "exited", "paused"}[i%3], Health: []string{"", "healthy", "unhealthy", "starting"}[i%4],
			RestartCount: i, ExitCode: i % 3, CreatedAt: now.Add(-time.Duration(i) * time.Hour), StartedAt: now.Add(-time.Duration(i) * time.Minute)}
		if i%2 == 1 {
			st.FinishedAt = now
		}
		meta := pipeline.ContainerMeta{ID: id, CgroupPath: "/docker/" + id, Name: fmt.Sprintf("c-%d\"é", i), Image: "img:latest", ImageTag: "latest", ImageID: "sha256:x", Hostname: "h", Labels: labels}
		if i%3 == 0 {
			meta.SwarmStack, meta.SwarmService, meta.SwarmTask, meta.SwarmNodeID = "st", "svc", "task.1", "node"
		}
		if i%7 == 0 {
			meta.K8sPod, meta.K8sNamespace, meta.K8sContainer = "pod", "ns", "ctr"
		}
		s.Upsert(meta, st, pipeline.ContainerSpec{CPUShares: 1024, CPUQuota: int64(i % 2 * 50000), CPUPeriod: 100000, MemoryLimit: int64(vals[i%len(vals)])})
		v := func(k int) uint64 { return uint64(vals[(i+k)%len(vals)]) }
		stats := pipeline.Stats{Read: now, CPUTotal: time.Duration(v(1)), CPUUser: time.Duration(i) * 1234567, CPUSystem: 3 * time.Millisecond, MemoryUsage: v(2), MemoryWorkingSet: v(3), MemoryRSS: v(4),
			MemoryCache: v(5), Pids: v(6), CPUPeriods: v(7), CPUThrottledPeriods: 2, CPUThrottledTime: time.Duration(v(8)), HasMemorySwap: i%2 == 0, MemorySwap: v(9), MemoryFailcnt: v(10),
			Present:  pipeline.MemMaxUsage | pipeline.MemKernel | pipeline.MemFileDetail | pipeline.MemFaults | pipeline.MemRefault | pipeline.MemFailcnt | pipeline.MemReclaim | pipeline.MemEvents | pipeline.CPUBurst | pipeline.PressureCPU | pipeline.PressureCPUFull | pipeline.PressureMemory | pipeline.PressureIO,
			Memory:   pipeline.MemoryDetail{MaxUsage: v(11), Kernel: v(12), InactiveFile: v(13), Pgfault: v(14), TotalPgfault: 1369, Pgscan: 5, EventsMax: v(3)},
			Networks: []pipeline.NetworkStats{{Interface: "eth0", RxBytes: v(1), TxBytes: v(2)}, {Interface: "eth1", RxPackets: v(5)}},
			Disks:    []pipeline.DiskStats{{Device: "/dev/sda", ReadBytes: v(3), WriteBytes: v(4), HasOps: i%2 == 0, Reads: 9}},
		}
		if i%3 == 1 {
			stats.PerCPU = []time.Duration{time.Duration(v(1)), 0, 5 * time.Second, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		}
		if i%9 == 8 {
			stats.NetworkOnly = true
		}
		s.SetStats(id, stats)
		s.RecordEvent(id, "start", now)
		if i%2 == 0 {
			s.RecordEvent(id, "oom", now)
			s.RecordEvent(id, "die", now)
		}
		s.SetFilesystem(id, &pipeline.FilesystemStats{Device: "/dev/sda", UsageBytes: v(2), Inodes: 5, CapacityBytes: v(7), InodesTotal: v(8), InodesFree: v(9)})
		if i%2 == 0 {
			lc := s.LogCounters(id)
			lc.LinesRead.Add(v(3))
			lc.BytesShipped.Add(v(4))
		}
	}
	s.SetServices([]pipeline.ServiceReplicas{{ID: "s1", Name: "web", Stack: "st", Mode: "replicated", Desired: 3, Running: 2}})
	c := NewContainerCollector(s)
	c.now = func() time.Time { return now }
	var buf bytes.Buffer
	for range 3 { // the same each time: pooled buffers must not leak across scrapes
		buf.Reset()
		if err := c.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
	}
	const golden = "testdata/varied.prom"
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("scrape differs from %s (run `go test ./exporters/prometheus -update` and review the diff)", golden)
	}
}
