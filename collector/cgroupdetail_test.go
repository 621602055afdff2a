package collector

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/dockscope/dockscope/pipeline"
)

// copyTree copies testdata files (name → source path) under a new root.
func copyTree(t *testing.T, files map[string]string) string {
	t.Helper()
	contents := map[string]string{}
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		contents[dst] = string(b)
	}
	return writeTree(t, contents)
}

// The v1 files recorded on this project's host: cAdvisor's wider memory
// family from memory.stat's total_* keys, the high-water mark, kmem, the
// burst counters and per-CPU usage.
func TestCgroupDetailV1Recorded(t *testing.T) {
	const id = "d75b37de7779"
	rec := "testdata/cgroupv1-engine20.10/"
	files := map[string]string{}
	for _, f := range []string{"memory.stat", "memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.kmem.usage_in_bytes", "memory.failcnt"} {
		files["memory/docker/"+id+"/"+f] = rec + "memory/" + f
	}
	for _, f := range []string{"cpuacct.usage", "cpuacct.stat", "cpuacct.usage_percpu"} {
		files["cpuacct/docker/"+id+"/"+f] = rec + "cpuacct/" + f
	}
	files["cpu/docker/"+id+"/cpu.stat"] = rec + "cpu/cpu.stat"
	root := copyTree(t, files)
	r, err := newCgroupReader(root, filepath.Join(root, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	r.perCPU = true
	st, err := r.read(statsTarget{cgroupPath: "/docker/" + id, cpuQuota: true, memoryLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	wantPresent := pipeline.MemMaxUsage | pipeline.MemKernel | pipeline.MemFileDetail | pipeline.MemFaults |
		pipeline.MemRefault | pipeline.MemFailcnt | pipeline.CPUBurst
	if st.Present != wantPresent {
		t.Errorf("present = %b, want %b", st.Present, wantPresent)
	}
	wantMem := pipeline.MemoryDetail{MaxUsage: 4091904, Kernel: 446464, MappedFile: 1757184, InactiveFile: 1884160,
		Pgfault: 1369, Pgmajfault: 25, TotalPgfault: 1369, TotalPgmajfault: 25}
	if st.Memory != wantMem {
		t.Errorf("memory detail:\n got %+v\nwant %+v", st.Memory, wantMem)
	}
	if want := []time.Duration{30479250, 7817479}; !reflect.DeepEqual(st.PerCPU, want) {
		t.Errorf("per-CPU = %v, want %v", st.PerCPU, want)
	}
	if st.CPUPeriods != 10 || st.CPUBursts != 0 || st.CPUBurstTime != 0 {
		t.Errorf("cpu.stat: periods %d bursts %d burst time %v, want 10, 0, 0", st.CPUPeriods, st.CPUBursts, st.CPUBurstTime)
	}

	// Per-CPU usage is read only when asked for (stats.per_cpu).
	r.perCPU = false
	if st, _ = r.read(statsTarget{cgroupPath: "/docker/" + id}); st.PerCPU != nil {
		t.Errorf("per-CPU read with the option off: %v", st.PerCPU)
	}
	// Without a quota cpu.stat is not read, without a limit nor failcnt.
	if st.Has(pipeline.CPUBurst) || st.Has(pipeline.MemFailcnt) {
		t.Errorf("present without quota and limit = %b", st.Present)
	}
}

// The v2 files recorded in the Engine 26.1 VM.
func TestCgroupDetailV2Recorded(t *testing.T) {
	const scope = "system.slice/docker-0e21a6f0.scope"
	files := map[string]string{}
	for _, f := range []string{"cpu.stat", "memory.current", "memory.stat", "memory.peak", "memory.events", "cpu.pressure", "memory.pressure", "io.pressure", "io.stat", "pids.current"} {
		files[scope+"/"+f] = "testdata/engine-26.1-cgroupv2-systemd/limited/cgroup/" + f
	}
	root := copyTree(t, files)
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory io pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := newCgroupReader(root, filepath.Join(root, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.read(statsTarget{cgroupPath: "/" + scope})
	if err != nil {
		t.Fatal(err)
	}
	wantPresent := pipeline.MemMaxUsage | pipeline.MemKernel | pipeline.MemFileDetail | pipeline.MemFaults | pipeline.MemReclaim |
		pipeline.MemRefault | pipeline.MemEvents | pipeline.CPUBurst | pipeline.PressureCPU | pipeline.PressureCPUFull |
		pipeline.PressureMemory | pipeline.PressureIO
	if st.Present != wantPresent {
		t.Errorf("present = %b, want %b", st.Present, wantPresent)
	}
	wantMem := pipeline.MemoryDetail{MaxUsage: 36352000, Kernel: 1380352, InactiveFile: 33558528, Pgfault: 2682, TotalPgfault: 2682}
	if st.Memory != wantMem {
		t.Errorf("memory detail:\n got %+v\nwant %+v", st.Memory, wantMem)
	}
	wantPSI := pipeline.Pressure{
		CPU: pipeline.PSI{Some: 4833925 * time.Microsecond, Full: 4359925 * time.Microsecond},
		IO:  pipeline.PSI{Some: 4404 * time.Microsecond, Full: 4404 * time.Microsecond},
	}
	if st.Pressure != wantPSI {
		t.Errorf("pressure:\n got %+v\nwant %+v", st.Pressure, wantPSI)
	}
	if st.CPUThrottledPeriods != 113 || st.CPUBursts != 0 {
		t.Errorf("cpu.stat: throttled %d bursts %d, want 113, 0", st.CPUThrottledPeriods, st.CPUBursts)
	}
}

// A kernel without memory.peak (< 5.19), memory.events' high key, and a
// cpu.pressure without its "full" line (< 5.13): those values are absent,
// and the files it lacks are not asked for again.
func TestCgroupDetailV2OlderKernel(t *testing.T) {
	const scope = "system.slice/docker-1.scope"
	root := writeTree(t, map[string]string{
		"cgroup.controllers":            "cpu memory io pids\n",
		scope + "/cpu.stat":             "usage_usec 10\nuser_usec 5\nsystem_usec 5\n",
		scope + "/memory.current":       "4096\n",
		scope + "/memory.stat":          "anon 4096\nfile 0\ninactive_file 0\nworkingset_refault 0\n",
		scope + "/cpu.pressure":         "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\n",
		scope + "/pids.current":         "1\n",
		scope + "/memory.events":        "low 0\n",
		scope + "/memory.pressure.junk": "",
	})
	r, err := newCgroupReader(root, filepath.Join(root, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.read(statsTarget{cgroupPath: "/" + scope})
	if err != nil {
		t.Fatal(err)
	}
	if want := pipeline.MemFileDetail | pipeline.PressureCPU; st.Present != want {
		t.Errorf("present = %b, want %b", st.Present, want)
	}
	if st.Pressure.CPU.Some != 1500*time.Millisecond {
		t.Errorf("cpu pressure some = %v, want 1.5s", st.Pressure.CPU.Some)
	}
	for _, which := range []int{optV2Peak, optV2MemoryPressure, optV2IOPressure} {
		if !r.optMissing[which].Load() {
			t.Errorf("%s not remembered as missing", optFileNames[which])
		}
	}
	if r.optMissing[optV2Events].Load() || r.optMissing[optV2CPUPressure].Load() {
		t.Error("a file that exists was remembered as missing")
	}
}

func TestParsePSI(t *testing.T) {
	for _, tc := range []struct {
		in            string
		psi           pipeline.PSI
		hasFull, isOK bool
	}{
		{"some avg10=6.28 avg60=5.56 avg300=1.50 total=4833925\nfull avg10=5.79 avg60=5.02 avg300=1.35 total=4359925\n",
			pipeline.PSI{Some: 4833925 * time.Microsecond, Full: 4359925 * time.Microsecond}, true, true},
		{"some avg10=0.00 avg60=0.00 avg300=0.00 total=7", pipeline.PSI{Some: 7 * time.Microsecond}, false, true},
		{"full avg10=0.00 total=9\n", pipeline.PSI{Full: 9 * time.Microsecond}, true, false},
		{"", pipeline.PSI{}, false, false},
		{"some total=x\n", pipeline.PSI{}, false, false},
	} {
		psi, full, ok := parsePSI([]byte(tc.in))
		if psi != tc.psi || full != tc.hasFull || ok != tc.isOK {
			t.Errorf("parsePSI(%q) = %+v, %v, %v; want %+v, %v, %v", tc.in, psi, full, ok, tc.psi, tc.hasFull, tc.isOK)
		}
	}
}

// The Engine 26.1 (cgroup v2) stats document of the same container: what
// the API passes through of memory.stat, and nothing of memory.peak,
// memory.events, pressure or burst.
func TestStatsDetailEngine26V2(t *testing.T) {
	b, err := os.ReadFile("testdata/engine-26.1-cgroupv2-systemd/limited/stats.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw engineStats
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	st, err := statsFromResponse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := pipeline.MemFileDetail | pipeline.MemFaults | pipeline.MemReclaim; st.Present != want {
		t.Errorf("present = %b, want %b", st.Present, want)
	}
	if st.Memory.InactiveFile != 33558528 || st.Memory.Pgfault != 2902 || st.Memory.TotalPgfault != 2902 {
		t.Errorf("memory detail = %+v", st.Memory)
	}
	if _, pc, err := decodeStatsPerCPU(bytes.NewReader(b)); err != nil || pc != nil {
		t.Errorf("per-CPU usage from a v2 document: %v, %v", pc, err)
	}
	v1, err := os.ReadFile("testdata/engine-28.5-cgroupv1/stats-oneshot.json")
	if err != nil {
		t.Fatal(err)
	}
	if raw, pc, err := decodeStatsPerCPU(bytes.NewReader(v1)); err != nil || !reflect.DeepEqual(pc, []time.Duration{33299469, 13804793}) || raw.CPUStats.CPUUsage.TotalUsage != 47104262 {
		t.Errorf("v1 per-CPU usage = %v (total %d), %v", pc, raw.CPUStats.CPUUsage.TotalUsage, err)
	}
}

func TestSpecDetail(t *testing.T) {
	pids := int64(100)
	unlimited := int64(-1)
	for _, tc := range []struct {
		name      string
		memory    int64
		swap      int64
		reserve   int64
		pidsLimit *int64
		v2        bool
		want      pipeline.ContainerSpec
	}{
		{"v1 memory+swap", 64 << 20, 128 << 20, 32 << 20, &pids, false, pipeline.ContainerSpec{MemorySwapLimit: 128 << 20, MemoryReservation: 32 << 20, PidsLimit: 100}},
		{"v2 swap alone", 256 << 20, 512 << 20, 0, nil, true, pipeline.ContainerSpec{MemorySwapLimit: 256 << 20}},
		{"unlimited swap", 64 << 20, -1, 0, &unlimited, false, pipeline.ContainerSpec{}},
		{"no memory limit", 0, 0, 16 << 20, nil, true, pipeline.ContainerSpec{MemoryReservation: 16 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var spec pipeline.ContainerSpec
			hc := hostConfigForSpec(tc.memory, tc.swap, tc.reserve, tc.pidsLimit)
			specDetail(&spec, hc, tc.v2)
			if spec != tc.want {
				t.Errorf("got %+v, want %+v", spec, tc.want)
			}
		})
	}
}

func hostConfigForSpec(memory, swap, reserve int64, pids *int64) *container.HostConfig {
	hc := &container.HostConfig{}
	hc.Memory, hc.MemorySwap, hc.MemoryReservation, hc.PidsLimit = memory, swap, reserve, pids
	return hc
}
