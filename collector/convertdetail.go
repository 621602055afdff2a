package collector

import (
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/dockscope/dockscope/pipeline"
)

// memDetailKeys are the memory.stat keys beyond the core ones that the
// Engine passes through (cgroupdetail.go reads the same from the files);
// inactive_file and total_inactive_file are cgroupMemKeys' own.
// Pointers: a key the kernel does not write is absent, not 0.
type memDetailKeys struct {
	// cgroup v1
	TotalMappedFile  *uint64 `json:"total_mapped_file"`
	TotalActiveFile  *uint64 `json:"total_active_file"`
	TotalDirty       *uint64 `json:"total_dirty"`
	TotalWriteback   *uint64 `json:"total_writeback"`
	TotalPgfault     *uint64 `json:"total_pgfault"`
	TotalPgmajfault  *uint64 `json:"total_pgmajfault"`
	TotalRefaultFile *uint64 `json:"total_workingset_refault_file"`
	TotalRefaultAnon *uint64 `json:"total_workingset_refault_anon"`
	// both
	Pgfault    *uint64 `json:"pgfault"`
	Pgmajfault *uint64 `json:"pgmajfault"`
	// cgroup v2
	FileMapped            *uint64 `json:"file_mapped"`
	ActiveFile            *uint64 `json:"active_file"`
	FileDirty             *uint64 `json:"file_dirty"`
	FileWriteback         *uint64 `json:"file_writeback"`
	Kernel                *uint64 `json:"kernel"`
	Pgscan                *uint64 `json:"pgscan"`
	Pgsteal               *uint64 `json:"pgsteal"`
	WorkingsetRefaultFile *uint64 `json:"workingset_refault_file"`
	WorkingsetRefaultAnon *uint64 `json:"workingset_refault_anon"`
}

// statsDetailFromResponse fills what the Engine's stats document gives of
// cAdvisor's wider families. It gives no pressure, no CFS burst, no
// memory.events and, on cgroup v2, no high-water mark (max_usage is v1's
// memory.max_usage_in_bytes; memory.peak is not passed through): those
// stay absent with stats.source api.
func statsDetailFromResponse(r *engineStats, st *pipeline.Stats) {
	ms := &r.MemoryStats
	v2 := ms.Stats.Anon != nil
	// The Engine leaves both out when 0 (omitempty); v1 has them always.
	if !v2 {
		if ms.MaxUsage != nil {
			st.Memory.MaxUsage = *ms.MaxUsage
		}
		if ms.Failcnt != nil {
			st.MemoryFailcnt = *ms.Failcnt
		}
		st.Present |= pipeline.MemMaxUsage | pipeline.MemFailcnt
	}
	k := &ms.Stats.memDetailKeys
	inactive := ms.Stats.TotalInactiveFile
	if v2 {
		inactive = ms.Stats.InactiveFile
	}
	st.Memory.InactiveFile = inactive
	feed := func(key string, p *uint64) {
		if p == nil {
			return
		}
		if v2 {
			memStatV2(st, key, *p)
		} else {
			memStatV1(st, key, *p)
		}
	}
	if v2 {
		for _, kv := range [...]struct {
			key string
			p   *uint64
		}{
			{"file_mapped", k.FileMapped}, {"active_file", k.ActiveFile},
			{"file_dirty", k.FileDirty}, {"file_writeback", k.FileWriteback}, {"kernel", k.Kernel},
			{"pgfault", k.Pgfault}, {"pgmajfault", k.Pgmajfault}, {"pgscan", k.Pgscan}, {"pgsteal", k.Pgsteal},
			{"workingset_refault_file", k.WorkingsetRefaultFile}, {"workingset_refault_anon", k.WorkingsetRefaultAnon},
		} {
			feed(kv.key, kv.p)
		}
	} else {
		for _, kv := range [...]struct {
			key string
			p   *uint64
		}{
			{"total_mapped_file", k.TotalMappedFile}, {"total_active_file", k.TotalActiveFile},
			{"total_dirty", k.TotalDirty},
			{"total_writeback", k.TotalWriteback}, {"pgfault", k.Pgfault}, {"pgmajfault", k.Pgmajfault},
			{"total_pgfault", k.TotalPgfault}, {"total_pgmajfault", k.TotalPgmajfault},
			{"total_workingset_refault_file", k.TotalRefaultFile}, {"total_workingset_refault_anon", k.TotalRefaultAnon},
		} {
			feed(kv.key, kv.p)
		}
	}
}

// perCPUFromResponse is the per-CPU usage of a v1 stats document (v2 has
// none), taken only with stats.per_cpu on.
func perCPUFromResponse(r *engineStats) []time.Duration {
	pc := r.CPUStats.CPUUsage.PercpuUsage
	if len(pc) == 0 {
		return nil
	}
	out := make([]time.Duration, len(pc))
	for i, v := range pc {
		out[i] = time.Duration(v)
	}
	return out
}

// specDetail adds the limits cAdvisor exports beyond the core ones. They
// come from the container's HostConfig, which is what runc writes into the
// cgroup:
//   - MemorySwapLimit as cAdvisor reads it from the cgroup: v1's
//     memory.memsw.limit_in_bytes is memory plus swap, Docker's MemorySwap
//     as it stands (the Engine stores twice --memory when --memory-swap is
//     not given); v2's memory.swap.max is swap alone, MemorySwap − Memory.
//     -1 (unlimited) and 0 (no memory limit) read 0, cAdvisor's unlimited.
//   - MemoryReservation, --memory-reservation. cAdvisor reads v1's
//     memory.soft_limit_in_bytes, the same number; on v2 it reads
//     memory.min, which Docker never sets (runc writes the reservation to
//     memory.low), so cAdvisor shows 0 there where this shows the
//     reservation.
//   - PidsLimit, --pids-limit (0 or -1: unlimited).
func specDetail(spec *pipeline.ContainerSpec, hc *container.HostConfig, cgroupV2 bool) {
	if hc == nil {
		return
	}
	spec.MemoryReservation = max(hc.MemoryReservation, 0)
	if hc.PidsLimit != nil && *hc.PidsLimit > 0 {
		spec.PidsLimit = *hc.PidsLimit
	}
	if hc.Memory > 0 && hc.MemorySwap > 0 {
		spec.MemorySwapLimit = hc.MemorySwap
		if cgroupV2 {
			spec.MemorySwapLimit = max(hc.MemorySwap-hc.Memory, 0)
		}
	}
}
