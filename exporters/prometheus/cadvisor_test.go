package prometheus

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// cadvisorStore holds a cgroup v1 container with per-CPU usage and a CFS
// quota, a cgroup v2 one with pressure (cpu.pressure without its "full"
// line, as before kernel 5.13) and no quota, and one whose source gave
// none of the optional values.
func cadvisorStore(t *testing.T) *pipeline.Store {
	t.Helper()
	s := pipeline.NewStore()
	created := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s.Upsert(pipeline.ContainerMeta{ID: "v1", CgroupPath: "/docker/v1", Name: "one", Image: "img:1"},
		pipeline.ContainerState{Status: "running", CreatedAt: created, StartedAt: created.Add(time.Second)},
		pipeline.ContainerSpec{MemoryLimit: 256 << 20, MemorySwapLimit: 512 << 20, MemoryReservation: 128 << 20, CPUQuota: 50000, CPUPeriod: 100000, CPUShares: 1024})
	s.SetStats("v1", pipeline.Stats{
		Read: created.Add(time.Minute), CPUTotal: 3 * time.Second, CPUPeriods: 10,
		PerCPU:  []time.Duration{time.Second, 0, 2 * time.Second},
		Present: pipeline.MemMaxUsage | pipeline.MemKernel | pipeline.MemFileDetail | pipeline.MemFaults | pipeline.MemFailcnt | pipeline.CPUBurst,
		Memory: pipeline.MemoryDetail{MaxUsage: 9000, Kernel: 800, MappedFile: 100, ActiveFile: 200, InactiveFile: 300, FileDirty: 4, FileWriteback: 5,
			Pgfault: 10, Pgmajfault: 1, TotalPgfault: 20, TotalPgmajfault: 2},
		CPUBursts: 3, CPUBurstTime: 1500 * time.Millisecond,
	})
	s.Upsert(pipeline.ContainerMeta{ID: "v2", CgroupPath: "/system.slice/docker-v2.scope", Name: "two", Image: "img:2"},
		pipeline.ContainerState{Status: "running", CreatedAt: created, StartedAt: created},
		pipeline.ContainerSpec{CPUShares: 1024})
	s.SetStats("v2", pipeline.Stats{
		Read: created.Add(time.Minute), CPUTotal: time.Second,
		Present: pipeline.MemMaxUsage | pipeline.MemFileDetail | pipeline.MemFaults | pipeline.MemReclaim | pipeline.MemRefault | pipeline.MemEvents |
			pipeline.CPUBurst | pipeline.PressureCPU | pipeline.PressureMemory | pipeline.PressureIO,
		Memory: pipeline.MemoryDetail{MaxUsage: 7000, MappedFile: 1, ActiveFile: 2, InactiveFile: 3, Pgfault: 30, Pgmajfault: 3, TotalPgfault: 30, TotalPgmajfault: 3,
			Pgscan: 40, Pgsteal: 41, WorkingsetRefaultFile: 5, WorkingsetRefaultAnon: 6, EventsHigh: 7, EventsMax: 8},
		Pressure: pipeline.Pressure{
			CPU:    pipeline.PSI{Some: 4833925 * time.Microsecond},
			Memory: pipeline.PSI{Some: 2 * time.Second, Full: time.Second},
			IO:     pipeline.PSI{Some: 4404 * time.Microsecond, Full: 4404 * time.Microsecond},
		},
	})
	s.Upsert(pipeline.ContainerMeta{ID: "v3", CgroupPath: "/docker/v3", Name: "three", Image: "img:3"},
		pipeline.ContainerState{Status: "running"}, pipeline.ContainerSpec{CPUShares: 1024})
	s.SetStats("v3", pipeline.Stats{Read: created, CPUTotal: time.Second})
	return s
}

// families keeps the lines of the named families (HELP and TYPE included).
func families(text string, names ...string) string {
	var out strings.Builder
	for line := range strings.SplitAfterSeq(text, "\n") {
		for _, n := range names {
			if strings.HasPrefix(line, n+"{") || strings.HasPrefix(line, n+" ") ||
				strings.HasPrefix(line, "# HELP "+n+" ") || strings.HasPrefix(line, "# TYPE "+n+" ") {
				out.WriteString(line)
				break
			}
		}
	}
	return out.String()
}

func TestCadvisorMemoryAndCPUDetail(t *testing.T) {
	got := families(scrape(t, NewContainerCollector(cadvisorStore(t))),
		"container_cpu_usage_seconds_total", "container_cpu_cfs_burst_periods_total", "container_cpu_cfs_burst_seconds_total",
		"container_memory_max_usage_bytes", "container_memory_kernel_usage", "container_memory_mapped_file",
		"container_memory_total_active_file_bytes", "container_memory_total_inactive_file_bytes",
		"container_memory_file_dirty_bytes", "container_memory_file_writeback_bytes", "container_memory_failures_total",
		"container_memory_pgscan_total", "container_memory_pgsteal_total",
		"container_memory_workingset_refault_file_total", "container_memory_workingset_refault_anon_total",
		"container_memory_events_high_total", "container_memory_events_max_total")
	const (
		one   = `{id="/docker/v1",name="one",image="img:1"`
		two   = `{id="/system.slice/docker-v2.scope",name="two",image="img:2"`
		three = `{id="/docker/v3",name="three",image="img:3"`
	)
	want := `# HELP container_cpu_cfs_burst_periods_total Number of periods when burst occurs.
# TYPE container_cpu_cfs_burst_periods_total counter
container_cpu_cfs_burst_periods_total` + one + `} 3
# HELP container_cpu_cfs_burst_seconds_total Total time duration the container has been bursted.
# TYPE container_cpu_cfs_burst_seconds_total counter
container_cpu_cfs_burst_seconds_total` + one + `} 1.5
# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total` + one + `,cpu="cpu00"} 1
container_cpu_usage_seconds_total` + one + `,cpu="cpu02"} 2
container_cpu_usage_seconds_total` + three + `,cpu="total"} 1
container_cpu_usage_seconds_total` + two + `,cpu="total"} 1
# HELP container_memory_events_high_total Cumulative count of memory.high throttle events for the container
# TYPE container_memory_events_high_total counter
container_memory_events_high_total` + two + `} 7
# HELP container_memory_events_max_total Cumulative count of memory.max limit hit events for the container
# TYPE container_memory_events_max_total counter
container_memory_events_max_total` + two + `} 8
# HELP container_memory_failures_total Cumulative count of memory allocation failures.
# TYPE container_memory_failures_total counter
container_memory_failures_total` + one + `,failure_type="pgfault",scope="container"} 10
container_memory_failures_total` + one + `,failure_type="pgmajfault",scope="container"} 1
container_memory_failures_total` + one + `,failure_type="pgfault",scope="hierarchy"} 20
container_memory_failures_total` + one + `,failure_type="pgmajfault",scope="hierarchy"} 2
container_memory_failures_total` + two + `,failure_type="pgfault",scope="container"} 30
container_memory_failures_total` + two + `,failure_type="pgmajfault",scope="container"} 3
container_memory_failures_total` + two + `,failure_type="pgfault",scope="hierarchy"} 30
container_memory_failures_total` + two + `,failure_type="pgmajfault",scope="hierarchy"} 3
# HELP container_memory_file_dirty_bytes Number of bytes of file cache that has been modified but not yet written back to disk.
# TYPE container_memory_file_dirty_bytes gauge
container_memory_file_dirty_bytes` + one + `} 4
container_memory_file_dirty_bytes` + two + `} 0
# HELP container_memory_file_writeback_bytes Number of bytes of file cache that is currently being written back to disk.
# TYPE container_memory_file_writeback_bytes gauge
container_memory_file_writeback_bytes` + one + `} 5
container_memory_file_writeback_bytes` + two + `} 0
# HELP container_memory_kernel_usage Size of kernel memory allocated in bytes.
# TYPE container_memory_kernel_usage gauge
container_memory_kernel_usage` + one + `} 800
# HELP container_memory_mapped_file Size of memory mapped files in bytes.
# TYPE container_memory_mapped_file gauge
container_memory_mapped_file` + one + `} 100
container_memory_mapped_file` + two + `} 1
# HELP container_memory_max_usage_bytes Maximum memory usage recorded in bytes
# TYPE container_memory_max_usage_bytes gauge
container_memory_max_usage_bytes` + one + `} 9000
container_memory_max_usage_bytes` + two + `} 7000
# HELP container_memory_pgscan_total Cumulative number of pages scanned by the page reclaim algorithm.
# TYPE container_memory_pgscan_total counter
container_memory_pgscan_total` + two + `} 40
# HELP container_memory_pgsteal_total Cumulative number of pages reclaimed by the page reclaim algorithm.
# TYPE container_memory_pgsteal_total counter
container_memory_pgsteal_total` + two + `} 41
# HELP container_memory_total_active_file_bytes Current total active file in bytes.
# TYPE container_memory_total_active_file_bytes gauge
container_memory_total_active_file_bytes` + one + `} 200
container_memory_total_active_file_bytes` + two + `} 2
# HELP container_memory_total_inactive_file_bytes Current total inactive file in bytes.
# TYPE container_memory_total_inactive_file_bytes gauge
container_memory_total_inactive_file_bytes` + one + `} 300
container_memory_total_inactive_file_bytes` + two + `} 3
# HELP container_memory_workingset_refault_anon_total Cumulative number of refaults of previously evicted anonymous pages.
# TYPE container_memory_workingset_refault_anon_total counter
container_memory_workingset_refault_anon_total` + two + `} 6
# HELP container_memory_workingset_refault_file_total Cumulative number of refaults of previously evicted file pages.
# TYPE container_memory_workingset_refault_file_total counter
container_memory_workingset_refault_file_total` + two + `} 5
`
	if got != want {
		t.Errorf("cAdvisor memory and CPU series:\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestCadvisorPressureAndSpec(t *testing.T) {
	got := families(scrape(t, NewContainerCollector(cadvisorStore(t))),
		"container_pressure_cpu_stalled_seconds_total", "container_pressure_cpu_waiting_seconds_total",
		"container_pressure_memory_stalled_seconds_total", "container_pressure_memory_waiting_seconds_total",
		"container_pressure_io_stalled_seconds_total", "container_pressure_io_waiting_seconds_total",
		"container_creation_time_seconds", "container_spec_memory_swap_limit_bytes", "container_spec_memory_reservation_limit_bytes")
	const (
		one   = `{id="/docker/v1",name="one",image="img:1"}`
		two   = `{id="/system.slice/docker-v2.scope",name="two",image="img:2"}`
		three = `{id="/docker/v3",name="three",image="img:3"}`
	)
	// No cpu "stalled" series: that kernel wrote no "full" line.
	want := `# HELP container_creation_time_seconds Container creation time since unix epoch in seconds.
# TYPE container_creation_time_seconds gauge
container_creation_time_seconds` + one + ` 1.7966376e+09
container_creation_time_seconds` + two + ` 1.7966376e+09
# HELP container_pressure_cpu_waiting_seconds_total Total time duration tasks in the container have waited due to CPU congestion.
# TYPE container_pressure_cpu_waiting_seconds_total counter
container_pressure_cpu_waiting_seconds_total` + two + ` 4.833925
# HELP container_pressure_io_stalled_seconds_total Total time duration no tasks in the container could make progress due to IO congestion.
# TYPE container_pressure_io_stalled_seconds_total counter
container_pressure_io_stalled_seconds_total` + two + ` 0.004404
# HELP container_pressure_io_waiting_seconds_total Total time duration tasks in the container have waited due to IO congestion.
# TYPE container_pressure_io_waiting_seconds_total counter
container_pressure_io_waiting_seconds_total` + two + ` 0.004404
# HELP container_pressure_memory_stalled_seconds_total Total time duration no tasks in the container could make progress due to memory congestion.
# TYPE container_pressure_memory_stalled_seconds_total counter
container_pressure_memory_stalled_seconds_total` + two + ` 1
# HELP container_pressure_memory_waiting_seconds_total Total time duration tasks in the container have waited due to memory congestion.
# TYPE container_pressure_memory_waiting_seconds_total counter
container_pressure_memory_waiting_seconds_total` + two + ` 2
# HELP container_spec_memory_reservation_limit_bytes Memory reservation limit for the container.
# TYPE container_spec_memory_reservation_limit_bytes gauge
container_spec_memory_reservation_limit_bytes` + one + ` 1.34217728e+08
container_spec_memory_reservation_limit_bytes` + three + ` 0
container_spec_memory_reservation_limit_bytes` + two + ` 0
# HELP container_spec_memory_swap_limit_bytes Memory swap limit for the container.
# TYPE container_spec_memory_swap_limit_bytes gauge
container_spec_memory_swap_limit_bytes` + one + ` 5.36870912e+08
container_spec_memory_swap_limit_bytes` + three + ` 0
container_spec_memory_swap_limit_bytes` + two + ` 0
`
	if got != want {
		t.Errorf("cAdvisor pressure and spec series:\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestCadvisorMachineSeries(t *testing.T) {
	tel := pipeline.NewTelemetry()
	build := BuildInfo{Version: "1.4.0", Revision: "abc123"}
	store := pipeline.NewStore()
	render := func(c *ContainerCollector) string {
		var buf bytes.Buffer
		if err := c.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	off := NewContainerCollector(store).WithMachine(MachineOptions{Telemetry: tel, Build: build})
	if got := render(off); got != "" {
		t.Errorf("before the Engine answered /info: got %q, want nothing", got)
	}
	tel.SetDaemon(pipeline.DaemonInfo{Version: "20.10.24", NCPU: 2, MemTotal: 25263394816, KernelVersion: "6.1.0-18-amd64", OperatingSystem: "Debian GNU/Linux 12 (bookworm)"})
	want := `# HELP machine_cpu_cores Number of logical CPU cores.
# TYPE machine_cpu_cores gauge
machine_cpu_cores 2
# HELP machine_memory_bytes Amount of memory installed on the machine.
# TYPE machine_memory_bytes gauge
machine_memory_bytes 2.5263394816e+10
`
	if got := render(off); got != want {
		t.Errorf("machine series:\n got:\n%s\nwant:\n%s", got, want)
	}
	on := NewContainerCollector(store).WithMachine(MachineOptions{Telemetry: tel, Build: build, VersionInfo: true})
	wantOn := `# HELP cadvisor_version_info A metric with a constant '1' value labeled by kernel version, OS version, docker version, cadvisor version & cadvisor revision.
# TYPE cadvisor_version_info gauge
cadvisor_version_info{kernelVersion="6.1.0-18-amd64",osVersion="Debian GNU/Linux 12 (bookworm)",dockerVersion="20.10.24",cadvisorVersion="dockscope-1.4.0",cadvisorRevision="abc123"} 1
` + want
	if got := render(on); got != wantOn {
		t.Errorf("with cadvisor_version_info:\n got:\n%s\nwant:\n%s", got, wantOn)
	}
}
