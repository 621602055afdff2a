package main

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

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is
// 100 on every Linux we run on; getconf is asked once in case it is not.
var clockTicks = func() float64 {
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

// procStat is the part of /proc/<pid>/stat the benchmark uses.
type procStat struct {
	pid, ppid int
	comm      string
	// cpuTicks is utime+stime of the process itself.
	cpuTicks uint64
	// childTicks is cutime+cstime: CPU of children it has already reaped.
	childTicks uint64
}

// readProcStat parses /proc/<pid>/stat. The comm field may contain spaces
// and parentheses, so the fixed fields are counted from the last ')'.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: no (comm)", pid)
	}
	// After ')': state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
	f := strings.Fields(string(b[closing+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f))
	}
	num := func(i int) uint64 {
		v, _ := strconv.ParseUint(f[i], 10, 64)
		return v
	}
	ppid, _ := strconv.Atoi(f[1])
	return procStat{
		pid:        pid,
		ppid:       ppid,
		comm:       string(b[open+1 : closing]),
		cpuTicks:   num(11) + num(12),
		childTicks: num(13) + num(14),
	}, nil
}

// allProcs reads the stat of every process. Processes that exit while the
// directory is being read are skipped.
func allProcs() ([]procStat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing /proc: %w", err)
	}
	procs := make([]procStat, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readProcStat(pid); err == nil {
			procs = append(procs, st)
		}
	}
	return procs, nil
}

// isDaemon tells the Docker daemon's processes: dockerd, containerd and
// every shim. The kernel cuts comm to 15 bytes, so "containerd-shim-runc-v2"
// appears as "containerd-shim".
func isDaemon(comm string) bool {
	return comm == "dockerd" || comm == "containerd" || strings.HasPrefix(comm, "containerd-shim")
}

// cpuSnapshot maps pid to CPU ticks at one instant, for a set of processes.
type cpuSnapshot map[int]uint64

// daemonCPU takes a snapshot of the Docker daemon processes (utime+stime).
func daemonCPU() (cpuSnapshot, error) {
	procs, err := allProcs()
	if err != nil {
		return nil, err
	}
	snap := cpuSnapshot{}
	for _, p := range procs {
		if isDaemon(p.comm) {
			snap[p.pid] = p.cpuTicks
		}
	}
	if len(snap) == 0 {
		return nil, fmt.Errorf("no dockerd/containerd process found in /proc (is the daemon in another pid namespace?)")
	}
	return snap, nil
}

// treeCPU takes a snapshot of a process and all its descendants. Reaped
// children's CPU is counted through cutime+cstime, so a command run through
// `sh -c` that forks is accounted in full.
func treeCPU(root int) (cpuSnapshot, error) {
	procs, err := allProcs()
	if err != nil {
		return nil, err
	}
	snap := cpuSnapshot{}
	for _, p := range procTree(procs, root) {
		snap[p.pid] = p.cpuTicks + p.childTicks
	}
	if _, ok := snap[root]; !ok {
		return nil, fmt.Errorf("process %d is gone", root)
	}
	return snap, nil
}

// procTree returns root and its descendants among procs.
func procTree(procs []procStat, root int) []procStat {
	children := map[int][]procStat{}
	var tree []procStat
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p)
		if p.pid == root {
			tree = append(tree, p)
		}
	}
	if len(tree) == 0 {
		return nil
	}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i].pid]...)
	}
	return tree
}

// cpuSecondsBetween is the CPU time spent between two snapshots. A process
// present only at the end started in between and counts in full; one
// present only at the start exited and its last ticks are lost (the shims
// and daemons measured here live for the whole window).
func cpuSecondsBetween(start, end cpuSnapshot) float64 {
	var ticks uint64
	for pid, e := range end {
		s := start[pid]
		if e >= s {
			ticks += e - s
		}
	}
	return float64(ticks) / clockTicks
}

// ownCPU is the snapshot of a single process: reading one file instead of
// scanning /proc keeps the reading instantaneous even on a loaded host.
func ownCPU(pid int) (cpuSnapshot, error) {
	st, err := readProcStat(pid)
	if err != nil {
		return nil, fmt.Errorf("process %d is gone: %w", pid, err)
	}
	return cpuSnapshot{pid: st.cpuTicks + st.childTicks}, nil
}

// hostTicks is the first line of /proc/stat: CPU ticks of all cores.
type hostTicks struct{ busy, total uint64 }

// readHostTicks tells how busy the whole host was, so that a window spoiled
// by other work on the machine can be recognised.
func readHostTicks() (hostTicks, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return hostTicks{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return hostTicks{}, fmt.Errorf("reading /proc/stat: %w", sc.Err())
	}
	// cpu user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is already included in user and nice.
	f8 := strings.Fields(sc.Text())
	if len(f8) < 9 || f8[0] != "cpu" {
		return hostTicks{}, fmt.Errorf("parsing /proc/stat: %q", sc.Text())
	}
	var t hostTicks
	for i, v := range f8[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return hostTicks{}, fmt.Errorf("parsing /proc/stat: %w", err)
		}
		t.total += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
	}
	return t, nil
}

// busyCores is how many cores were busy on average between two readings.
func busyCores(start, end hostTicks, took time.Duration) float64 {
	return float64(end.busy-start.busy) / clockTicks / took.Seconds()
}

// memKiB reads VmRSS and VmHWM (peak RSS) in KiB from /proc/<pid>/status.
func memKiB(pid int) (rss, hwm uint64, err error) {
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

// treeMemKiB sums VmRSS and VmHWM over a process tree. For a single process
// (dockscope) both are exact; for a tree the summed peaks are an upper bound.
func treeMemKiB(root int) (rss, hwm uint64, err error) {
	procs, err := allProcs()
	if err != nil {
		return 0, 0, err
	}
	tree := procTree(procs, root)
	if len(tree) == 0 {
		return 0, 0, fmt.Errorf("process %d is gone", root)
	}
	for _, p := range tree {
		r, h, err := memKiB(p.pid)
		if err != nil {
			continue // exited meanwhile
		}
		rss += r
		hwm += h
	}
	return rss, hwm, nil
}

// sinceSeconds is a small helper for progress lines.
func sinceSeconds(t time.Time) string {
	return fmt.Sprintf("%.1fs", time.Since(t).Seconds())
}
