package collector

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/dockscope/dockscope/pipeline"
)

// memDetailKeys are the memory.stat keys beyond the core ones that the
// Engine passes through (cgroupdetail.go reads the same from the files);
// inactive_file and total_inactive_file are cgroupMemKeys' own.
// optUint tells an absent key (the kernel does not write it) from a 0.
type memDetailKeys struct {
	// cgroup v1
	TotalMappedFile  optUint `json:"total_mapped_file"`
	TotalActiveFile  optUint `json:"total_active_file"`
	TotalDirty       optUint `json:"total_dirty"`
	TotalWriteback   optUint `json:"total_writeback"`
	TotalPgfault     optUint `json:"total_pgfault"`
	TotalPgmajfault  optUint `json:"total_pgmajfault"`
	TotalRefaultFile optUint `json:"total_workingset_refault_file"`
	TotalRefaultAnon optUint `json:"total_workingset_refault_anon"`
	// both
	Pgfault    optUint `json:"pgfault"`
	Pgmajfault optUint `json:"pgmajfault"`
	// cgroup v2
	FileMapped            optUint `json:"file_mapped"`
	ActiveFile            optUint `json:"active_file"`
	FileDirty             optUint `json:"file_dirty"`
	FileWriteback         optUint `json:"file_writeback"`
	Kernel                optUint `json:"kernel"`
	Pgscan                optUint `json:"pgscan"`
	Pgsteal               optUint `json:"pgsteal"`
	WorkingsetRefaultFile optUint `json:"workingset_refault_file"`
	WorkingsetRefaultAnon optUint `json:"workingset_refault_anon"`
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
		st.Memory.MaxUsage = ms.MaxUsage.v
		st.MemoryFailcnt = ms.Failcnt.v
		st.Present |= pipeline.MemMaxUsage | pipeline.MemFailcnt
	}
	k := &ms.Stats.memDetailKeys
	inactive := ms.Stats.TotalInactiveFile
	if v2 {
		inactive = ms.Stats.InactiveFile
	}
	st.Memory.InactiveFile = inactive
	feed := func(key string, o optUint) {
		if !o.set {
			return
		}
		if v2 {
			memStatV2(st, key, o.v)
		} else {
			memStatV1(st, key, o.v)
		}
	}
	if v2 {
		for _, kv := range [...]struct {
			key string
			p   optUint
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
			p   optUint
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

// perCPUDoc is the per-CPU usage of a v1 stats document (v2 has none).
// It is decoded only with stats.per_cpu on: engineStats leaves the array
// out, which every sample would otherwise allocate.
type perCPUDoc struct {
	CPUStats struct {
		CPUUsage struct {
			PercpuUsage []uint64 `json:"percpu_usage"`
		} `json:"cpu_usage"`
	} `json:"cpu_stats"`
}

// decodeStatsPerCPU decodes a stats document and its per-CPU usage (nil
// when it has none).
func decodeStatsPerCPU(r io.Reader) (engineStats, []time.Duration, error) {
	var raw engineStats
	doc, err := io.ReadAll(io.LimitReader(r, maxStatsDocBytes))
	if err != nil {
		return raw, nil, err
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return raw, nil, err
	}
	var pc perCPUDoc
	if err := json.Unmarshal(doc, &pc); err != nil {
		return raw, nil, err
	}
	usage := pc.CPUStats.CPUUsage.PercpuUsage
	if len(usage) == 0 {
		return raw, nil, nil
	}
	out := make([]time.Duration, len(usage))
	for i, v := range usage {
		out[i] = time.Duration(v)
	}
	return raw, out, nil
}

// maxStatsDocBytes bounds a stats document read whole: one is ~3 KB, plus
// ~20 bytes per CPU and per block device.
const maxStatsDocBytes = 4 << 20

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

// optUint is a number that may be absent from the document. Decoded in
// place, where a *uint64 cost an allocation per key present.
type optUint struct {
	v   uint64
	set bool
}

// UnmarshalJSON takes a JSON number; null leaves it absent.
func (o *optUint) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("memory stat %s: %w", b, err)
	}
	o.v, o.set = v, true
	return nil
}
