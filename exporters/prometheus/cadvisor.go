package prometheus

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockscope/dockscope/pipeline"
)

// cAdvisor's families beyond the core set (v0.60 with its default
// -disable_metrics), with its names, help texts, labels and units. A value
// the sample's source or the host's kernel does not have is not exported
// (pipeline.Stats.Present), where cAdvisor would export a 0.
var (
	famMemMaxUsage     = newFamily("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", prometheus.GaugeValue, nil)
	famMemMappedFile   = newFamily("container_memory_mapped_file", "Size of memory mapped files in bytes.", prometheus.GaugeValue, nil)
	famMemKernel       = newFamily("container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", prometheus.GaugeValue, nil)
	famMemActiveFile   = newFamily("container_memory_total_active_file_bytes", "Current total active file in bytes.", prometheus.GaugeValue, nil)
	famMemInactiveFile = newFamily("container_memory_total_inactive_file_bytes", "Current total inactive file in bytes.", prometheus.GaugeValue, nil)
	famMemFileDirty    = newFamily("container_memory_file_dirty_bytes", "Number of bytes of file cache that has been modified but not yet written back to disk.", prometheus.GaugeValue, nil)
	famMemWriteback    = newFamily("container_memory_file_writeback_bytes", "Number of bytes of file cache that is currently being written back to disk.", prometheus.GaugeValue, nil)
	famMemFailures     = newFamily("container_memory_failures_total", "Cumulative count of memory allocation failures.", prometheus.CounterValue, []string{"failure_type", "scope"})
	famMemPgscan       = newFamily("container_memory_pgscan_total", "Cumulative number of pages scanned by the page reclaim algorithm.", prometheus.CounterValue, nil)
	famMemPgsteal      = newFamily("container_memory_pgsteal_total", "Cumulative number of pages reclaimed by the page reclaim algorithm.", prometheus.CounterValue, nil)
	famMemRefaultFile  = newFamily("container_memory_workingset_refault_file_total", "Cumulative number of refaults of previously evicted file pages.", prometheus.CounterValue, nil)
	famMemRefaultAnon  = newFamily("container_memory_workingset_refault_anon_total", "Cumulative number of refaults of previously evicted anonymous pages.", prometheus.CounterValue, nil)
	famMemEventsHigh   = newFamily("container_memory_events_high_total", "Cumulative count of memory.high throttle events for the container", prometheus.CounterValue, nil)
	famMemEventsMax    = newFamily("container_memory_events_max_total", "Cumulative count of memory.max limit hit events for the container", prometheus.CounterValue, nil)

	famCFSBurstPeriods = newFamily("container_cpu_cfs_burst_periods_total", "Number of periods when burst occurs.", prometheus.CounterValue, nil)
	famCFSBurstSeconds = newFamily("container_cpu_cfs_burst_seconds_total", "Total time duration the container has been bursted.", prometheus.CounterValue, nil)

	famPressureCPUStalled = newFamily("container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", prometheus.CounterValue, nil)
	famPressureCPUWaiting = newFamily("container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", prometheus.CounterValue, nil)
	famPressureMemStalled = newFamily("container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", prometheus.CounterValue, nil)
	famPressureMemWaiting = newFamily("container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", prometheus.CounterValue, nil)
	famPressureIOStalled  = newFamily("container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", prometheus.CounterValue, nil)
	famPressureIOWaiting  = newFamily("container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", prometheus.CounterValue, nil)

	famCreationTime   = newFamily("container_creation_time_seconds", "Container creation time since unix epoch in seconds.", prometheus.GaugeValue, nil)
	famSwapLimit      = newFamily("container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", prometheus.GaugeValue, nil)
	famReservationLim = newFamily("container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", prometheus.GaugeValue, nil)
)

// specDetail emits the spec series cAdvisor has beyond the core limits.
func (e *emitter) specDetail(s *pipeline.Snapshot) {
	if !s.State.CreatedAt.IsZero() {
		e.emit(famCreationTime, float64(s.State.CreatedAt.Unix()))
	}
	e.emit(famSwapLimit, float64(s.Spec.MemorySwapLimit))
	e.emit(famReservationLim, float64(s.Spec.MemoryReservation))
}

// cpuUsage emits container_cpu_usage_seconds_total: per CPU when the
// sample has per-CPU usage (stats.per_cpu on a cgroup v1 host), leaving
// out idle CPUs and the "total" series, as cAdvisor does; else cpu="total".
func (e *emitter) cpuUsage(st *pipeline.Stats) {
	if len(st.PerCPU) == 0 {
		e.emit(famCPUUsage, st.CPUTotal.Seconds(), "total")
		return
	}
	var name [8]byte
	for i, v := range st.PerCPU {
		if v <= 0 {
			continue
		}
		b := append(name[:0], "cpu"...)
		if i < 10 {
			b = append(b, '0')
		}
		b = strconv.AppendInt(b, int64(i), 10)
		e.emit(famCPUUsage, v.Seconds(), string(b))
	}
}

// statsDetail emits the memory, CFS burst and pressure series the sample
// has.
func (e *emitter) statsDetail(st *pipeline.Stats) {
	m := &st.Memory
	if st.Has(pipeline.MemMaxUsage) {
		e.emit(famMemMaxUsage, float64(m.MaxUsage))
	}
	if st.Has(pipeline.MemKernel) {
		e.emit(famMemKernel, float64(m.Kernel))
	}
	if st.Has(pipeline.MemFileDetail) {
		e.emit(famMemMappedFile, float64(m.MappedFile))
		e.emit(famMemActiveFile, float64(m.ActiveFile))
		e.emit(famMemInactiveFile, float64(m.InactiveFile))
		e.emit(famMemFileDirty, float64(m.FileDirty))
		e.emit(famMemWriteback, float64(m.FileWriteback))
	}
	if st.Has(pipeline.MemFaults) {
		e.emit(famMemFailures, float64(m.Pgfault), "pgfault", "container")
		e.emit(famMemFailures, float64(m.Pgmajfault), "pgmajfault", "container")
		e.emit(famMemFailures, float64(m.TotalPgfault), "pgfault", "hierarchy")
		e.emit(famMemFailures, float64(m.TotalPgmajfault), "pgmajfault", "hierarchy")
	}
	if st.Has(pipeline.MemReclaim) {
		e.emit(famMemPgscan, float64(m.Pgscan))
		e.emit(famMemPgsteal, float64(m.Pgsteal))
	}
	if st.Has(pipeline.MemRefault) {
		e.emit(famMemRefaultFile, float64(m.WorkingsetRefaultFile))
		e.emit(famMemRefaultAnon, float64(m.WorkingsetRefaultAnon))
	}
	if st.Has(pipeline.MemEvents) {
		e.emit(famMemEventsHigh, float64(m.EventsHigh))
		e.emit(famMemEventsMax, float64(m.EventsMax))
	}
	// Like the other CFS counters, only under a CPU quota (cAdvisor's
	// condition): without one they never move.
	if st.CPUPeriods > 0 && st.Has(pipeline.CPUBurst) {
		e.emit(famCFSBurstPeriods, float64(st.CPUBursts))
		e.emit(famCFSBurstSeconds, st.CPUBurstTime.Seconds())
	}
	p := &st.Pressure
	if st.Has(pipeline.PressureCPU) {
		if st.Has(pipeline.PressureCPUFull) {
			e.emit(famPressureCPUStalled, p.CPU.Full.Seconds())
		}
		e.emit(famPressureCPUWaiting, p.CPU.Some.Seconds())
	}
	if st.Has(pipeline.PressureMemory) {
		e.emit(famPressureMemStalled, p.Memory.Full.Seconds())
		e.emit(famPressureMemWaiting, p.Memory.Some.Seconds())
	}
	if st.Has(pipeline.PressureIO) {
		e.emit(famPressureIOStalled, p.IO.Full.Seconds())
		e.emit(famPressureIOWaiting, p.IO.Some.Seconds())
	}
}

var (
	famMachineCores = newFamily("machine_cpu_cores", "Number of logical CPU cores.", prometheus.GaugeValue, nil)
	famMachineMem   = newFamily("machine_memory_bytes", "Amount of memory installed on the machine.", prometheus.GaugeValue, nil)
	famVersionInfo  = newFamily("cadvisor_version_info", "A metric with a constant '1' value labeled by kernel version, OS version, docker version, cadvisor version & cadvisor revision.", prometheus.GaugeValue,
		[]string{"kernelVersion", "osVersion", "dockerVersion", "cadvisorVersion", "cadvisorRevision"})
)

// MachineOptions say where the machine series come from.
type MachineOptions struct {
	Telemetry *pipeline.Telemetry // its DaemonInfo, the Engine's /info
	Build     BuildInfo
	// VersionInfo turns on cadvisor_version_info
	// (prometheus.cadvisor_version_info).
	VersionInfo bool
}

// WithMachine adds cAdvisor's machine_cpu_cores and machine_memory_bytes,
// from the Engine's /info, and optionally cadvisor_version_info, whose
// labels dashboards read for their host variable, to every scrape.
func (c *ContainerCollector) WithMachine(o MachineOptions) *ContainerCollector {
	c.machine = &o
	return c
}

// machineSeries emits the machine series; none until the Engine has
// answered /info.
func (e *emitter) machineSeries(o *MachineOptions) {
	d, ok := o.Telemetry.Daemon()
	if !ok {
		return
	}
	e.base = e.base[:0]
	if d.NCPU > 0 {
		e.emit(famMachineCores, float64(d.NCPU))
	}
	if d.MemTotal > 0 {
		e.emit(famMachineMem, float64(d.MemTotal))
	}
	if o.VersionInfo {
		// cadvisorVersion and cadvisorRevision name the agent standing in.
		e.emit(famVersionInfo, 1, d.KernelVersion, d.OperatingSystem, d.Version, "dockscope-"+o.Build.Version, o.Build.Revision)
	}
}
