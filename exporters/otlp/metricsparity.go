package otlp

import (
	"go.opentelemetry.io/otel/semconv/v1.43.0/containerconv"

	"github.com/dockscope/dockscope/pipeline"
)

// buildParityMetrics adds an equivalent of each docker_stats receiver metric
// people migrate from that the core set lacks (network packets, drops and
// errors, memory file and peak, paging faults, fails, utilization, CFS
// periods, CPU limit and shares, pids limit). Names follow the semantic
// conventions where they define one (container.memory.paging.faults), and
// mirror the conventions' system.network.* and the house's container.*
// names elsewhere. A value the source lacks is left out, as on /metrics.
func buildParityMetrics(cm *containerMetrics, s *pipeline.Snapshot) {
	spec := &s.Spec
	// Limits are the container's as configured, exported while it exists
	// like container.memory.limit.
	cm.gauge("container.cpu.shares", "CPU shares (relative weight) of the container.", "1", float64(spec.CPUShares))
	if spec.CPUQuota > 0 && spec.CPUPeriod > 0 {
		cm.gauge("container.cpu.limit", "CPU limit of the container (quota over period).", "{cpu}", float64(spec.CPUQuota)/float64(spec.CPUPeriod))
	}
	if spec.PidsLimit > 0 {
		cm.sum("container.pids.limit", "Maximum number of processes (pids) in the container.", "{process}", false, float64(spec.PidsLimit))
	}
	x := s.Stats
	if x == nil {
		return
	}
	if len(x.Networks) > 0 {
		perDirection := func(name, desc, unit string, rx, tx func(*pipeline.NetworkStats) uint64) {
			cm.metric(name, desc, unit, kindMonotonicSum)
			for i := range x.Networks {
				n := &x.Networks[i]
				cm.point(float64(rx(n)), attrKV{"network.interface.name", n.Interface}, attrKV{"network.io.direction", "receive"})
				cm.point(float64(tx(n)), attrKV{"network.interface.name", n.Interface}, attrKV{"network.io.direction", "transmit"})
			}
		}
		perDirection("container.network.packet.count", "Packets received and sent by the container.", "{packet}",
			func(n *pipeline.NetworkStats) uint64 { return n.RxPackets }, func(n *pipeline.NetworkStats) uint64 { return n.TxPackets })
		perDirection("container.network.packet.dropped", "Packets dropped while receiving or sending.", "{packet}",
			func(n *pipeline.NetworkStats) uint64 { return n.RxDropped }, func(n *pipeline.NetworkStats) uint64 { return n.TxDropped })
		perDirection("container.network.errors", "Errors encountered while receiving or sending.", "{error}",
			func(n *pipeline.NetworkStats) uint64 { return n.RxErrors }, func(n *pipeline.NetworkStats) uint64 { return n.TxErrors })
	}
	if x.NetworkOnly {
		return
	}
	// v2's "file", v1's "total_cache": the page cache, tmpfs included.
	cm.sum("container.memory.file", "Memory used to cache filesystem data (page cache), tmpfs and shared memory included.", "By", false, float64(x.MemoryCache))
	if x.Has(pipeline.MemMaxUsage) {
		cm.sum("container.memory.peak", "Highest memory usage recorded for the container.", "By", false, float64(x.Memory.MaxUsage))
	}
	if spec.MemoryLimit > 0 {
		// Docker's "MEM %" and docker_stats' container.memory.percent, as
		// a ratio: usage less inactive file pages, over the limit.
		cm.gauge("container.memory.utilization", "Memory working set over the container's memory limit.", "1",
			float64(x.MemoryWorkingSet)/float64(spec.MemoryLimit))
	}
	switch {
	case x.Has(pipeline.MemFailcnt):
		cm.sum("container.memory.fails", "Times the container's memory usage hit its limit (v1 memory.failcnt).", "{fail}", true, float64(x.MemoryFailcnt))
	case x.Has(pipeline.MemEvents):
		cm.sum("container.memory.fails", "Times the container's memory usage hit its limit (v2 memory.events max).", "{fail}", true, float64(x.Memory.EventsMax))
	}
	if x.Has(pipeline.MemFaults) {
		pf := containerconv.MemoryPagingFaults{}
		cm.metric(pf.Name(), pf.Description(), pf.Unit(), kindMonotonicSum)
		// pgfault counts every fault, pgmajfault the major ones among them.
		minor := x.Memory.TotalPgfault - min(x.Memory.TotalPgmajfault, x.Memory.TotalPgfault)
		cm.point(float64(x.Memory.TotalPgmajfault), attrKV{"system.paging.fault.type", "major"})
		cm.point(float64(minor), attrKV{"system.paging.fault.type", "minor"})
	}
	if x.CPUPeriods > 0 {
		cm.sum("container.cpu.periods", "CFS enforcement periods elapsed under the container's CPU quota.", "{period}", true, float64(x.CPUPeriods))
	}
}
