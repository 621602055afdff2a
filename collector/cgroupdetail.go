package collector

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// The wider families cAdvisor exports (container_memory_* beyond usage,
// CFS burst, pressure stall information, per-CPU usage), read from the
// same cgroup files as the core values or from a few more. A value a
// kernel does not have is left absent (pipeline.Stats.Present), never 0.

// Optional files the kernel may not offer; once one turns out to be
// missing (or PSI is off: EOPNOTSUPP) it is not asked for again, as with
// blkioMissing: a failed open walks the path each time.
const (
	optV1MaxUsage = iota
	optV1Kmem
	optV1PerCPU
	optV2Peak
	optV2Events
	optV2CPUPressure
	optV2MemoryPressure
	optV2IOPressure
	optFiles
)

var optFileNames = [optFiles]string{
	optV1MaxUsage:       "memory.max_usage_in_bytes",
	optV1Kmem:           "memory.kmem.usage_in_bytes",
	optV1PerCPU:         "cpuacct.usage_percpu",
	optV2Peak:           "memory.peak",
	optV2Events:         "memory.events",
	optV2CPUPressure:    "cpu.pressure",
	optV2MemoryPressure: "memory.pressure",
	optV2IOPressure:     "io.pressure",
}

// loadOptional reads an optional file of dir; ok is false when it cannot
// be read, and the file is remembered as missing when the kernel lacks it
// (dir exists, the file does not) or refuses it (PSI disabled).
func (r *cgroupReader) loadOptional(f *statFiles, dir string, which int) ([]byte, bool) {
	if dir == "" || r.optMissing[which].Load() {
		return nil, false
	}
	b, err := f.load(filepath.Join(dir, optFileNames[which]))
	if err != nil {
		if (errors.Is(err, fs.ErrNotExist) && fileExists(dir)) || errors.Is(err, syscall.EOPNOTSUPP) {
			r.optMissing[which].Store(true)
		}
		return nil, false
	}
	return b, true
}

// parseUint reads a file holding one number.
func parseUint(b []byte) (uint64, bool) {
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	return v, err == nil
}

// memStatV1 takes the memory.stat keys of cgroup v1 that cAdvisor exports
// beyond usage: the hierarchical total_* values, and the page faults of the
// cgroup alone (scope "container") and with its descendants ("hierarchy").
func memStatV1(st *pipeline.Stats, k string, v uint64) {
	m := &st.Memory
	switch k {
	case "total_mapped_file":
		m.MappedFile = v
		st.Present |= pipeline.MemFileDetail
	case "total_active_file":
		m.ActiveFile = v
		st.Present |= pipeline.MemFileDetail
	case "total_inactive_file":
		m.InactiveFile = v
		st.Present |= pipeline.MemFileDetail
	case "total_dirty":
		m.FileDirty = v
		st.Present |= pipeline.MemFileDetail
	case "total_writeback":
		m.FileWriteback = v
		st.Present |= pipeline.MemFileDetail
	case "pgfault":
		m.Pgfault = v
		st.Present |= pipeline.MemFaults
	case "pgmajfault":
		m.Pgmajfault = v
		st.Present |= pipeline.MemFaults
	case "total_pgfault":
		m.TotalPgfault = v
		st.Present |= pipeline.MemFaults
	case "total_pgmajfault":
		m.TotalPgmajfault = v
		st.Present |= pipeline.MemFaults
	case "total_workingset_refault_file": // kernels ≥ 5.9 write them on v1 too
		m.WorkingsetRefaultFile = v
		st.Present |= pipeline.MemRefault
	case "total_workingset_refault_anon":
		m.WorkingsetRefaultAnon = v
		st.Present |= pipeline.MemRefault
	}
}

// memStatV2 takes the cgroup v2 memory.stat keys cAdvisor exports beyond
// usage. v2's memory.stat is hierarchical, so both fault scopes are the same
// numbers, as cAdvisor reports them.
func memStatV2(st *pipeline.Stats, k string, v uint64) {
	m := &st.Memory
	switch k {
	case "file_mapped":
		m.MappedFile = v
		st.Present |= pipeline.MemFileDetail
	case "active_file":
		m.ActiveFile = v
		st.Present |= pipeline.MemFileDetail
	case "inactive_file":
		m.InactiveFile = v
		st.Present |= pipeline.MemFileDetail
	case "file_dirty":
		m.FileDirty = v
		st.Present |= pipeline.MemFileDetail
	case "file_writeback":
		m.FileWriteback = v
		st.Present |= pipeline.MemFileDetail
	case "kernel":
		m.Kernel = v
		st.Present |= pipeline.MemKernel
	case "pgfault":
		m.Pgfault, m.TotalPgfault = v, v
		st.Present |= pipeline.MemFaults
	case "pgmajfault":
		m.Pgmajfault, m.TotalPgmajfault = v, v
		st.Present |= pipeline.MemFaults
	case "pgscan":
		m.Pgscan = v
		st.Present |= pipeline.MemReclaim
	case "pgsteal":
		m.Pgsteal = v
		st.Present |= pipeline.MemReclaim
	case "workingset_refault_file":
		m.WorkingsetRefaultFile = v
		st.Present |= pipeline.MemRefault
	case "workingset_refault_anon":
		m.WorkingsetRefaultAnon = v
		st.Present |= pipeline.MemRefault
	}
}

// cpuStatBurst takes cpu.stat's CFS burst counters (kernel ≥ 5.14): v1
// gives burst_time in ns, v2 burst_usec in µs.
func cpuStatBurst(st *pipeline.Stats, k string, v uint64) {
	switch k {
	case "nr_bursts":
		st.CPUBursts = v
		st.Present |= pipeline.CPUBurst
	case "burst_time":
		st.CPUBurstTime = time.Duration(v)
		st.Present |= pipeline.CPUBurst
	case "burst_usec":
		st.CPUBurstTime = time.Duration(v) * time.Microsecond
		st.Present |= pipeline.CPUBurst
	}
}

// readV1Detail reads the v1 files beyond the core ones: the memory
// high-water mark, kernel memory, and per-CPU usage when asked for.
func (r *cgroupReader) readV1Detail(f *statFiles, dirs cgroupDirs, st *pipeline.Stats) {
	if b, ok := r.loadOptional(f, dirs.memory, optV1MaxUsage); ok {
		if v, ok := parseUint(b); ok {
			st.Memory.MaxUsage = v
			st.Present |= pipeline.MemMaxUsage
		}
	}
	if b, ok := r.loadOptional(f, dirs.memory, optV1Kmem); ok {
		if v, ok := parseUint(b); ok {
			st.Memory.Kernel = v
			st.Present |= pipeline.MemKernel
		}
	}
	if r.perCPU {
		if b, ok := r.loadOptional(f, dirs.cpuacct, optV1PerCPU); ok {
			st.PerCPU = parsePerCPU(b)
		}
	}
}

// parsePerCPU reads cpuacct.usage_percpu: one nanosecond count per CPU.
func parsePerCPU(b []byte) []time.Duration {
	fields := bytes.Fields(b)
	out := make([]time.Duration, 0, len(fields))
	for _, f := range fields {
		v, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return nil
		}
		out = append(out, time.Duration(v))
	}
	return out
}

// readV2Detail reads the v2 files beyond the core ones: memory.peak,
// memory.events and the three pressure files.
func (r *cgroupReader) readV2Detail(f *statFiles, dir string, st *pipeline.Stats) {
	if b, ok := r.loadOptional(f, dir, optV2Peak); ok {
		if v, ok := parseUint(b); ok {
			st.Memory.MaxUsage = v
			st.Present |= pipeline.MemMaxUsage
		}
	}
	if b, ok := r.loadOptional(f, dir, optV2Events); ok {
		forEachKeyed(b, func(k string, v uint64) {
			switch k {
			case "high":
				st.Memory.EventsHigh = v
				st.Present |= pipeline.MemEvents
			case "max":
				st.Memory.EventsMax = v
			}
		})
	}
	for _, p := range [...]struct {
		which int
		psi   *pipeline.PSI
		flag  pipeline.StatsField
	}{
		{optV2CPUPressure, &st.Pressure.CPU, pipeline.PressureCPU},
		{optV2MemoryPressure, &st.Pressure.Memory, pipeline.PressureMemory},
		{optV2IOPressure, &st.Pressure.IO, pipeline.PressureIO},
	} {
		b, ok := r.loadOptional(f, dir, p.which)
		if !ok {
			continue
		}
		psi, full, ok := parsePSI(b)
		if !ok {
			continue
		}
		*p.psi = psi
		st.Present |= p.flag
		if p.which == optV2CPUPressure && full {
			st.Present |= pipeline.PressureCPUFull
		}
	}
}

// parsePSI reads a pressure file:
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=4404
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=4404
//
// totals in microseconds. hasFull is false where the kernel writes no
// "full" line (cpu.pressure before 5.13); ok is false without a "some" one.
func parsePSI(b []byte) (psi pipeline.PSI, hasFull, ok bool) {
	forEachLine(b, func(line []byte) {
		kind, rest, found := bytes.Cut(line, []byte{' '})
		if !found {
			return
		}
		i := bytes.Index(rest, []byte("total="))
		if i < 0 {
			return
		}
		total := rest[i+len("total="):]
		if j := bytes.IndexByte(total, ' '); j >= 0 {
			total = total[:j]
		}
		v, err := strconv.ParseUint(string(bytes.TrimSpace(total)), 10, 64)
		if err != nil {
			return
		}
		switch string(kind) {
		case "some":
			psi.Some, ok = time.Duration(v)*time.Microsecond, true
		case "full":
			psi.Full, hasFull = time.Duration(v)*time.Microsecond, true
		}
	})
	return psi, hasFull, ok
}
