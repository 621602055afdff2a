package pipeline

import "time"

// StatsField names a Stats value that not every source or kernel has
// (cAdvisor's wider memory, CPU burst and pressure families). A series whose
// field is absent is not exported: an absent value is not a zero.
type StatsField uint32

const (
	MemMaxUsage     StatsField = 1 << iota // v1 memory.max_usage_in_bytes, v2 memory.peak (kernel ≥ 5.19)
	MemKernel                              // v1 memory.kmem.usage_in_bytes, v2 memory.stat kernel (≥ 5.18)
	MemFileDetail                          // mapped file, active/inactive file, dirty, writeback
	MemFaults                              // pgfault, pgmajfault of the cgroup and of its hierarchy
	MemReclaim                             // v2 pgscan, pgsteal (kernel ≥ 5.13)
	MemRefault                             // v2 workingset_refault_file/_anon (kernel ≥ 5.9)
	MemEvents                              // v2 memory.events high and max
	MemFailcnt                             // v1 memory.failcnt (a memory limit is set)
	CPUBurst                               // cpu.stat nr_bursts, burst_time/burst_usec (kernel ≥ 5.14)
	PressureCPU                            // cgroup v2 cpu.pressure
	PressureMemory                         // cgroup v2 memory.pressure
	PressureIO                             // cgroup v2 io.pressure
	PressureCPUFull                        // cpu.pressure has its "full" line (kernel ≥ 5.13)
)

// MemoryDetail is the memory beyond Stats' core fields, as cAdvisor
// exports it. v1 values are the hierarchical total_* keys of memory.stat
// (what cAdvisor reads), v2 ones the only keys there are.
type MemoryDetail struct {
	MaxUsage      uint64
	Kernel        uint64
	MappedFile    uint64
	ActiveFile    uint64
	InactiveFile  uint64
	FileDirty     uint64
	FileWriteback uint64
	// Page faults of the cgroup alone and of it with its descendants (the
	// same on v2, whose memory.stat is always hierarchical).
	Pgfault, Pgmajfault           uint64
	TotalPgfault, TotalPgmajfault uint64
	Pgscan, Pgsteal               uint64
	WorkingsetRefaultFile         uint64
	WorkingsetRefaultAnon         uint64
	EventsHigh, EventsMax         uint64
}

// PSI is one resource's pressure stall totals: Some is time at least one
// task waited, Full time no task could make progress.
type PSI struct {
	Some, Full time.Duration
}

// Pressure is the cgroup's pressure stall information (cgroup v2 only).
type Pressure struct {
	CPU, Memory, IO PSI
}

// Has reports whether the sample's source gave every field of f.
func (s *Stats) Has(f StatsField) bool { return s.Present&f == f }
