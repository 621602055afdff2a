// Package procfs reads the process and host CPU and memory figures the
// benchmarks report, from /proc.
package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is
// 100 on every Linux we run on; getconf is asked once in case it is not.
var ClockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil || v <= 0 {
		return 100
	}
	return v
}()

// Stat is the part of /proc/<pid>/stat the benchmark uses.
type Stat struct {
	PID, PPID int
	Comm      string
	// CPUTicks is utime+stime of the process itself.
	CPUTicks uint64
	// ChildTicks is cutime+cstime: CPU of children it has already reaped.
	ChildTicks uint64
}

// ReadStat parses /proc/<pid>/stat. The comm field may contain spaces
// and parentheses, so the fixed fields are counted from the last ')'.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, err
	}
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return Stat{}, fmt.Errorf("parsing /proc/%d/stat: no (comm)", pid)
	}
	// After ')': state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
	f := strings.Fields(string(b[closing+1:]))
	if len(f) < 15 {
		return Stat{}, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f))
	}
	num := func(i int) uint64 {
		v, _ := strconv.ParseUint(f[i], 10, 64)
		return v
	}
	ppid, _ := strconv.Atoi(f[1])
	return Stat{
		PID:        pid,
		PPID:       ppid,
		Comm:       string(b[open+1 : closing]),
		CPUTicks:   num(11) + num(12),
		ChildTicks: num(13) + num(14),
	}, nil
}

// All reads the stat of every process. Processes that exit while the
// directory is being read are skipped.
func All() ([]Stat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing /proc: %w", err)
	}
	procs := make([]Stat, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := ReadStat(pid); err == nil {
			procs = append(procs, st)
		}
	}
	return procs, nil
}

// IsDaemon tells the Docker daemon's processes: dockerd, containerd and
// every shim. The kernel cuts comm to 15 bytes, so "containerd-shim-runc-v2"
// appears as "containerd-shim".
func IsDaemon(comm string) bool {
	return comm == "dockerd" || comm == "containerd" || strings.HasPrefix(comm, "containerd-shim")
}

// CPUSnapshot maps pid to CPU ticks at one instant, for a set of processes.
type CPUSnapshot map[int]uint64

// DaemonCPU takes a snapshot of the Docker daemon processes (utime+stime).
func DaemonCPU() (CPUSnapshot, error) {
	procs, err := All()
	if err != nil {
		return nil, err
	}
	snap := CPUSnapshot{}
	for _, p := range procs {
		if IsDaemon(p.Comm) {
			snap[p.PID] = p.CPUTicks
		}
	}
	if len(snap) == 0 {
		return nil, fmt.Errorf("no dockerd/containerd process found in /proc (is the daemon in another pid namespace?)")
	}
	return snap, nil
}

// TreeCPU takes a snapshot of a process and all its descendants. Reaped
// children's CPU is counted through cutime+cstime, so a command run through
// `sh -c` that forks is accounted in full.
func TreeCPU(root int) (CPUSnapshot, error) {
	procs, err := All()
	if err != nil {
		return nil, err
	}
	snap := CPUSnapshot{}
	for _, p := range Tree(procs, root) {
		snap[p.PID] = p.CPUTicks + p.ChildTicks
	}
	if _, ok := snap[root]; !ok {
		return nil, fmt.Errorf("process %d is gone", root)
	}
	return snap, nil
}

// Tree returns root and its descendants among procs.
func Tree(procs []Stat, root int) []Stat {
	children := map[int][]Stat{}
	var tree []Stat
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p)
		if p.PID == root {
			tree = append(tree, p)
		}
	}
	if len(tree) == 0 {
		return nil
	}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i].PID]...)
	}
	return tree
}

// SecondsBetween is the CPU time spent between two snapshots. A process
// present only at the end started in between and counts in full; one
// present only at the start exited and its last ticks are lost (the shims
// and daemons measured here live for the whole window).
func SecondsBetween(start, end CPUSnapshot) float64 {
	var ticks uint64
	for pid, e := range end {
		s := start[pid]
		if e >= s {
			ticks += e - s
		}
	}
	return float64(ticks) / ClockTicks
}

// OwnCPU is the snapshot of a single process: reading one file instead of
// scanning /proc keeps the reading instantaneous even on a loaded host.
func OwnCPU(pid int) (CPUSnapshot, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return nil, fmt.Errorf("process %d is gone: %w", pid, err)
	}
	return CPUSnapshot{pid: st.CPUTicks + st.ChildTicks}, nil
}

// HostTicks is the first line of /proc/stat: CPU ticks of all cores.
type HostTicks struct{ Busy, Total uint64 }

// ReadHostTicks tells how busy the whole host was, so that a window spoiled
// by other work on the machine can be recognised.
func ReadHostTicks() (HostTicks, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return HostTicks{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return HostTicks{}, fmt.Errorf("reading /proc/stat: %w", sc.Err())
	}
	// cpu user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is already included in user and nice.
	f8 := strings.Fields(sc.Text())
	if len(f8) < 9 || f8[0] != "cpu" {
		return HostTicks{}, fmt.Errorf("parsing /proc/stat: %q", sc.Text())
	}
	var t HostTicks
	for i, v := range f8[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return HostTicks{}, fmt.Errorf("parsing /proc/stat: %w", err)
		}
		t.Total += n
		if i != 3 && i != 4 { // idle, iowait
			t.Busy += n
		}
	}
	return t, nil
}

// BusyCores is how many cores were busy on average between two readings.
func BusyCores(start, end HostTicks, took time.Duration) float64 {
	return float64(end.Busy-start.Busy) / ClockTicks / took.Seconds()
}

// MemKiB reads VmRSS and VmHWM (peak RSS) in KiB from /proc/<pid>/status.
func MemKiB(pid int) (rss, hwm uint64, err error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parsing %s in /proc/%d/status: %w", key, pid, err)
		}
		if key == "VmRSS" {
			rss = v
		} else {
			hwm = v
		}
	}
	return rss, hwm, sc.Err()
}

// TreeMemKiB sums VmRSS and VmHWM over a process tree. For a single process
// (dockscope) both are exact; for a tree the summed peaks are an upper bound.
func TreeMemKiB(root int) (rss, hwm uint64, err error) {
	procs, err := All()
	if err != nil {
		return 0, 0, err
	}
	tree := Tree(procs, root)
	if len(tree) == 0 {
		return 0, 0, fmt.Errorf("process %d is gone", root)
	}
	for _, p := range tree {
		r, h, err := MemKiB(p.PID)
		if err != nil {
			continue // exited meanwhile
		}
		rss += r
		hwm += h
	}
	return rss, hwm, nil
}

// CPUSeconds is a process's own CPU time (utime+stime plus reaped
// children's) in seconds.
func CPUSeconds(pid int) (float64, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return 0, err
	}
	return float64(st.CPUTicks+st.ChildTicks) / ClockTicks, nil
}

// LoadAvg is the first three fields of /proc/loadavg, for reports.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
