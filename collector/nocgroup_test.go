package collector

import (
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// TestNoCgroupDriverKeepsOnlyNetworkCounters: with the Engine's cgroup
// driver "none" (rootless Docker on cgroup v1) a container has no cgroup of
// its own, and the Engine's CPU, memory, pids and block I/O numbers are the
// daemon's whole cgroup's (recorded on Engine 28.5 rootless: 2 cores and
// 290 MiB for an idle container). A sample keeps only the network counters,
// its own network namespace's.
func TestNoCgroupDriverKeepsOnlyNetworkCounters(t *testing.T) {
	c := &Collector{cfg: config.Default(), store: pipeline.NewStore(), tel: pipeline.NewTelemetry(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s := &statsSampler{c: c}
	read := time.Date(2026, 12, 7, 13, 20, 36, 0, time.UTC)
	sample := func() pipeline.Stats {
		return pipeline.Stats{Read: read, CPUTotal: 6374 * time.Second, CPUUser: 4828 * time.Second,
			MemoryUsage: 302858240, MemoryWorkingSet: 263717000, MemoryRSS: 45572096, Pids: 0,
			Networks: []pipeline.NetworkStats{{Interface: "eth0", RxBytes: 1046, RxPackets: 13}},
			Disks:    []pipeline.DiskStats{{Device: "/dev/vda", ReadBytes: 4096}}}
	}

	for _, driver := range []string{"cgroupfs", "systemd"} {
		c.cgroupDriver.Store(&driver)
		st := sample()
		s.finish(statsJob{}, &st)
		if want := sample(); !reflect.DeepEqual(st, want) {
			t.Errorf("driver %s: sample changed to %+v", driver, st)
		}
	}

	driver := noCgroupDriver
	c.cgroupDriver.Store(&driver)
	st := sample()
	s.finish(statsJob{}, &st)
	want := pipeline.Stats{Read: read, NetworkOnly: true, Networks: sample().Networks}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("driver none: %+v, want only the network counters: %+v", st, want)
	}
	// A container that joined another's network namespace has none of its own.
	st = sample()
	s.finish(statsJob{sharedNetns: true}, &st)
	if !st.NetworkOnly || st.Networks != nil || st.CPUTotal != 0 {
		t.Errorf("driver none, shared namespace: %+v", st)
	}
}
