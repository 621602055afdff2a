package pipeline

import "time"

// Stats is one resource sample of a container, normalized across cgroup v1
// and v2. Counters are cumulative since the container started; rates are the
// backend's job, except CPUUsageCores, which OTLP's container.cpu.usage needs.
type Stats struct {
	Read time.Time // when the Engine took the sample

	CPUTotal            time.Duration
	CPUUser             time.Duration
	CPUSystem           time.Duration
	CPUPeriods          uint64
	CPUThrottledPeriods uint64
	CPUThrottledTime    time.Duration
	OnlineCPUs          uint32
	// CPUUsageCores is the average number of cores used since the previous
	// sample; HasCPUUsage is false for the first sample of a container.
	CPUUsageCores float64
	HasCPUUsage   bool

	MemoryUsage      uint64 // raw usage, page cache included
	MemoryWorkingSet uint64 // usage minus inactive file pages, never negative
	MemoryRSS        uint64
	MemoryCache      uint64
	MemorySwap       uint64
	HasMemorySwap    bool
	MemoryFailcnt    uint64 // always 0 on cgroup v2

	Pids uint64

	// Present says which of the optional values below the source gave
	// (statsdetail.go).
	Present      StatsField
	Memory       MemoryDetail
	CPUBursts    uint64
	CPUBurstTime time.Duration
	Pressure     Pressure
	// PerCPU is the usage of each CPU (cgroup v1 only), read only when
	// stats.per_cpu is on: one series per CPU per container.
	PerCPU []time.Duration

	Networks []NetworkStats
	Disks    []DiskStats

	// NetworkOnly: the container has no cgroup of its own (the Engine's
	// cgroup driver is "none", as rootless Docker's on cgroup v1), so only
	// Networks, read from its own network namespace, are its; the CPU,
	// memory, pids and block I/O fields are zero and not to be exported
	// (the Engine would report the daemon's whole cgroup there).
	NetworkOnly bool
}

// NetworkStats are one interface's counters.
type NetworkStats struct {
	Interface                               string
	RxBytes, RxPackets, RxDropped, RxErrors uint64
	TxBytes, TxPackets, TxDropped, TxErrors uint64
}

// DiskStats are one block device's counters. Device is the device's name
// as cAdvisor gives it ("/dev/sda"), or "major:minor" when the agent's
// sysfs does not know the device (or the daemon is on another host).
type DiskStats struct {
	Device                string
	ReadBytes, WriteBytes uint64
	Reads, Writes         uint64
	HasOps                bool // cgroup v2 through the API reports bytes only
}
