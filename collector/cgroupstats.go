package collector

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// cgroupReader samples a container from its cgroup files and its network
// namespace's /proc/<pid>/net/dev instead of the Engine API (stats.source:
// cgroup). It is the cheap path: a handful of small file reads in the
// agent instead of a stats request that costs dockerd and containerd ~4 ms
// of CPU each. The numbers are the ones the Engine itself reads from the
// same files, so both sources agree.
type cgroupReader struct {
	root     string // the host's cgroup mount, e.g. /sys/fs/cgroup
	procRoot string // the host's /proc
	v2       bool
	userHZ   int64 // clock ticks per second of cpuacct.stat
	cpus     uint32
	now      func() time.Time

	bufs  sync.Pool // *statFiles, one per concurrent read
	files openFiles
	// blkioMissing[i] is set once blkioPrefixes[i]'s files turn out not to
	// exist: which ones the kernel offers does not change while it runs.
	blkioMissing [3]atomic.Bool
	// optMissing[i] is set once optFileNames[i] turns out not to be
	// offered by the kernel (cgroupdetail.go).
	optMissing [optFiles]atomic.Bool
	perCPU     bool // read cpuacct.usage_percpu (stats.per_cpu)
}

// blkioPrefixes are the v1 blkio file families, in the order runc (and so
// the Engine) prefers them: CFQ, BFQ, then the throttling layer's.
var blkioPrefixes = [3]string{"blkio.", "blkio.bfq.", "blkio.throttle."}

// newCgroupReader checks the layout under root: cgroup v2 has
// cgroup.controllers at its top, v1 one directory per controller.
func newCgroupReader(root, procRoot string) (*cgroupReader, error) {
	r := &cgroupReader{root: root, procRoot: procRoot, userHZ: 100, now: time.Now, files: openFiles{fds: map[string]*openFile{}, max: keptFilesCap()}}
	v2, err := cgroupLayout(root)
	if err != nil {
		return nil, err
	}
	r.v2 = v2
	// USER_HZ is 100 on every Linux architecture Docker runs on; the
	// kernel exports it nowhere but in the ELF auxiliary vector.
	r.cpus = onlineCPUs("/sys/devices/system/cpu/online")
	return r, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// onlineCPUs counts the CPUs of a list such as "0-3,6"; 0 if unreadable.
func onlineCPUs(path string) uint32 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var n uint32
	for part := range strings.SplitSeq(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a {
			return 0
		}
		n += uint32(b - a + 1)
	}
	return n
}

// statsTarget is what the cgroup source needs to know of a container.
type statsTarget struct {
	// dirs are its cgroup directories as found from /proc (see
	// cgroupResolver); when unset, they are derived from cgroupPath, the
	// path relative to the hierarchies' root (ContainerMeta.CgroupPath).
	dirs        cgroupDirs
	cgroupPath  string
	pid         int    // its main process, for the network counters; 0: none
	networkMode string // "host", "none" and "container:<id>": no network counters of its own
	// Files that cannot change are not read (each read costs the kernel
	// as much as the rest of the sample's work): without a CPU quota the
	// CFS counters stay 0 and are not exported, without a memory limit
	// the container never fails a charge (v1 memory.failcnt).
	cpuQuota, memoryLimit bool
}

// read samples one container.
func (r *cgroupReader) read(t statsTarget) (pipeline.Stats, error) {
	st := pipeline.Stats{Read: r.now(), OnlineCPUs: r.cpus}
	f, _ := r.bufs.Get().(*statFiles)
	if f == nil {
		f = &statFiles{buf: make([]byte, 16<<10), open: &r.files}
	}
	defer r.bufs.Put(f)
	dirs := t.dirs
	if dirs == (cgroupDirs{}) {
		dirs = patternDirs(r.root, r.v2, t.cgroupPath)
	}
	var err error
	if r.v2 {
		err = r.readV2(f, dirs.unified, &st)
	} else {
		err = r.readV1(f, t, dirs, &st)
	}
	if err != nil {
		return pipeline.Stats{}, err
	}
	if t.pid > 0 && t.networkMode != "host" && t.networkMode != "none" && !sharesNetns(t.networkMode) {
		b, err := f.load(filepath.Join(r.procRoot, strconv.Itoa(t.pid), "net", "dev"))
		if err != nil {
			return pipeline.Stats{}, fmt.Errorf("reading network stats: %w", err)
		}
		st.Networks = parseNetDev(b)
	}
	return st, nil
}

func (r *cgroupReader) readV1(f *statFiles, t statsTarget, dirs cgroupDirs, st *pipeline.Stats) error {
	cpuacct, memory := dirs.cpuacct, dirs.memory

	total, err := f.uint(filepath.Join(cpuacct, "cpuacct.usage"))
	if err != nil {
		return err
	}
	st.CPUTotal = time.Duration(total)
	tick := time.Second / time.Duration(r.userHZ)
	err = f.keyed(filepath.Join(cpuacct, "cpuacct.stat"), func(k string, v uint64) {
		switch k {
		case "user":
			st.CPUUser = time.Duration(v) * tick
		case "system":
			st.CPUSystem = time.Duration(v) * tick
		}
	})
	if err != nil {
		return err
	}
	if t.cpuQuota && dirs.cpu != "" {
		_ = f.keyed(filepath.Join(dirs.cpu, "cpu.stat"), func(k string, v uint64) {
			switch k {
			case "nr_periods":
				st.CPUPeriods = v
			case "nr_throttled":
				st.CPUThrottledPeriods = v
			case "throttled_time":
				st.CPUThrottledTime = time.Duration(v)
			default:
				cpuStatBurst(st, k, v)
			}
		})
	}

	if st.MemoryUsage, err = f.uint(filepath.Join(memory, "memory.usage_in_bytes")); err != nil {
		return err
	}
	if t.memoryLimit {
		var ferr error
		if st.MemoryFailcnt, ferr = f.uint(filepath.Join(memory, "memory.failcnt")); ferr == nil {
			st.Present |= pipeline.MemFailcnt
		}
	}
	var inactive uint64
	err = f.keyed(filepath.Join(memory, "memory.stat"), func(k string, v uint64) {
		switch k {
		case "total_rss":
			st.MemoryRSS = v
		case "total_cache":
			st.MemoryCache = v
		case "total_swap":
			st.MemorySwap, st.HasMemorySwap = v, true
		case "total_inactive_file":
			inactive = v
		}
		memStatV1(st, k, v)
	})
	if err != nil {
		return err
	}
	st.MemoryWorkingSet = workingSet(st.MemoryUsage, inactive)
	r.readV1Detail(f, dirs, st)
	if dirs.pids != "" {
		st.Pids, _ = f.uint(filepath.Join(dirs.pids, "pids.current"))
	}

	// Like runc (and so the Engine): the first family the kernel fills.
	blkio := dirs.blkio
	for i, prefix := range blkioPrefixes {
		if r.blkioMissing[i].Load() || blkio == "" {
			continue
		}
		b, err := f.load(filepath.Join(blkio, prefix+"io_service_bytes_recursive"))
		if errors.Is(err, fs.ErrNotExist) && fileExists(blkio) {
			r.blkioMissing[i].Store(true)
		}
		if err != nil {
			continue
		}
		bytesRW := parseBlkio(b)
		if len(bytesRW) == 0 {
			continue
		}
		var ops []blkioEntry
		if b, err := f.load(filepath.Join(blkio, prefix+"io_serviced_recursive")); err == nil {
			ops = parseBlkio(b)
		}
		st.Disks = mergeDisks(bytesRW, ops)
		break
	}
	if st.Disks == nil {
		st.Disks = []pipeline.DiskStats{}
	}
	return nil
}

func (r *cgroupReader) readV2(f *statFiles, dir string, st *pipeline.Stats) error {
	err := f.keyed(filepath.Join(dir, "cpu.stat"), func(k string, v uint64) {
		switch k {
		case "usage_usec":
			st.CPUTotal = time.Duration(v) * time.Microsecond
		case "user_usec":
			st.CPUUser = time.Duration(v) * time.Microsecond
		case "system_usec":
			st.CPUSystem = time.Duration(v) * time.Microsecond
		case "nr_periods":
			st.CPUPeriods = v
		case "nr_throttled":
			st.CPUThrottledPeriods = v
		case "throttled_usec":
			st.CPUThrottledTime = time.Duration(v) * time.Microsecond
		default:
			cpuStatBurst(st, k, v)
		}
	})
	if err != nil {
		return err
	}
	if st.MemoryUsage, err = f.uint(filepath.Join(dir, "memory.current")); err != nil {
		return err
	}
	var inactive uint64
	err = f.keyed(filepath.Join(dir, "memory.stat"), func(k string, v uint64) {
		switch k {
		case "anon":
			st.MemoryRSS = v
		case "file":
			st.MemoryCache = v
		case "inactive_file":
			inactive = v
		}
		memStatV2(st, k, v)
	})
	if err != nil {
		return err
	}
	st.MemoryWorkingSet = workingSet(st.MemoryUsage, inactive)
	r.readV2Detail(f, dir, st)
	st.Pids, _ = f.uint(filepath.Join(dir, "pids.current"))
	st.Disks = []pipeline.DiskStats{}
	if b, err := f.load(filepath.Join(dir, "io.stat")); err == nil {
		st.Disks = parseIOStat(b)
	}
	return nil
}

// openFiles keeps the stats files open between samples: a kernel-generated
// file read again from offset 0 is generated afresh, and the open (a path
// walk through the cgroup filesystem) was most of a file's cost. Files of
// containers no longer sampled are closed by sweep, after each round.
type openFiles struct {
	// mu is held for reading while a descriptor is in use, and for writing
	// to open, close or sweep: a closed descriptor's number could be
	// reused by another file.
	mu    sync.RWMutex
	fds   map[string]*openFile
	round atomic.Uint64
	// max caps the descriptors kept (0: no cap); past it a file is opened,
	// read and closed each time, as before descriptors were kept.
	max int
}

// keptFilesCap leaves three quarters of the process's descriptor limit to
// everything else — one log stream per followed container, the scrape and
// OTLP connections — so that on a host with thousands of containers, or
// under a low hard limit, keeping stat files open can never make a log
// stream or a scrape fail with EMFILE. Go raises the soft limit to the hard
// one at start, so this is usually a large number.
func keptFilesCap() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return 256
	}
	return int(min(lim.Cur/4, 1<<20))
}

type openFile struct {
	fd   int
	used atomic.Uint64 // the round it was last read in
}

// sweep closes the files not read since the round before last, and starts a
// new round.
func (o *openFiles) sweep() {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.round.Add(1)
	for path, f := range o.fds {
		if f.used.Load()+2 <= now {
			syscall.Close(f.fd)
			delete(o.fds, path)
		}
	}
}

// closeAll closes every file.
func (o *openFiles) closeAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for path, f := range o.fds {
		syscall.Close(f.fd)
		delete(o.fds, path)
	}
}

// statFiles reads small kernel-generated files into one reused buffer, with
// plain system calls on descriptors kept open (see openFiles): os.ReadFile
// adds an fstat and a poller registration attempt per file, which more
// than doubled the cost of a sample (about 10 files) on the hosts measured.
type statFiles struct {
	buf  []byte
	open *openFiles
}

// load returns the file's content, valid until the next load. A read that
// fails on a kept descriptor (the cgroup was removed and made again by a
// restart, say) is tried once more on a fresh one.
func (f *statFiles) load(path string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		b, stale, err := f.loadOnce(path)
		if err == nil || !stale || attempt == 1 {
			return b, err
		}
	}
}

// loadOnce reads path through its kept descriptor, opening it if needed;
// stale says the descriptor was an old one, now closed.
func (f *statFiles) loadOnce(path string) (b []byte, stale bool, err error) {
	o := f.open
	o.mu.RLock()
	of, ok := o.fds[path]
	if !ok {
		full := o.max > 0 && len(o.fds) >= o.max
		o.mu.RUnlock()
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, false, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		if full {
			b, err = f.pread(fd)
			syscall.Close(fd)
			if err != nil {
				return nil, false, &fs.PathError{Op: "read", Path: path, Err: err}
			}
			return b, false, nil
		}
		o.mu.Lock()
		if of, ok = o.fds[path]; ok {
			syscall.Close(fd) // another reader opened it meanwhile
		} else {
			of = &openFile{fd: fd}
			o.fds[path] = of
		}
		o.mu.Unlock()
		o.mu.RLock()
		if o.fds[path] != of { // swept in between: rare, read it next time
			o.mu.RUnlock()
			return nil, false, &fs.PathError{Op: "read", Path: path, Err: syscall.EAGAIN}
		}
	}
	of.used.Store(o.round.Load())
	b, err = f.pread(of.fd)
	o.mu.RUnlock()
	if err == nil {
		return b, false, nil
	}
	o.mu.Lock()
	if o.fds[path] == of {
		syscall.Close(of.fd)
		delete(o.fds, path)
	}
	o.mu.Unlock()
	return nil, ok, &fs.PathError{Op: "read", Path: path, Err: err}
}

// pread reads the whole file from offset 0.
func (f *statFiles) pread(fd int) ([]byte, error) {
	n := 0
	for {
		if n == len(f.buf) {
			f.buf = append(f.buf, make([]byte, len(f.buf))...)
		}
		m, err := syscall.Pread(fd, f.buf[n:], int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return f.buf[:n], nil
		}
		n += m
	}
}

// uint reads a file holding one number ("max" reads as 0).
func (f *statFiles) uint(path string) (uint64, error) {
	b, err := f.load(path)
	if err != nil {
		return 0, fmt.Errorf("reading cgroup stats: %w", err)
	}
	b = bytes.TrimSpace(b)
	if string(b) == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reading cgroup stats: %s: %w", path, err)
	}
	return v, nil
}

// keyed calls fn with each "key value" line of a file (cpu.stat,
// memory.stat, cpuacct.stat).
func (f *statFiles) keyed(path string, fn func(key string, v uint64)) error {
	b, err := f.load(path)
	if err != nil {
		return fmt.Errorf("reading cgroup stats: %w", err)
	}
	forEachKeyed(b, fn)
	return nil
}

// forEachKeyed calls fn with each "key value" line of b whose value is a
// number.
func forEachKeyed(b []byte, fn func(key string, v uint64)) {
	forEachLine(b, func(line []byte) {
		k, v, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			return
		}
		if n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64); err == nil {
			fn(string(k), n)
		}
	})
}

// forEachLine calls fn with each line of b, without its newline.
func forEachLine(b []byte, fn func(line []byte)) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		fn(line)
	}
}

// blkioEntry is one "major:minor Op value" line of a v1 blkio file.
type blkioEntry struct {
	dev   string
	op    string
	value uint64
}

func parseBlkio(b []byte) []blkioEntry {
	var out []blkioEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue // the closing "Total N"
		}
		v, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, blkioEntry{dev: f[0], op: strings.ToLower(f[1]), value: v})
	}
	return out
}

// mergeDisks sums blkio entries (op in lower case) per device.
func mergeDisks(bytesRW, ops []blkioEntry) []pipeline.DiskStats {
	byDev := map[string]*pipeline.DiskStats{}
	get := func(dev string) *pipeline.DiskStats {
		d, ok := byDev[dev]
		if !ok {
			d = &pipeline.DiskStats{Device: dev}
			byDev[dev] = d
		}
		return d
	}
	for _, e := range bytesRW {
		switch e.op {
		case "read":
			get(e.dev).ReadBytes += e.value
		case "write":
			get(e.dev).WriteBytes += e.value
		}
	}
	for _, e := range ops {
		d := get(e.dev)
		d.HasOps = true
		switch e.op {
		case "read":
			d.Reads += e.value
		case "write":
			d.Writes += e.value
		}
	}
	return sortedDisks(byDev)
}

func sortedDisks(byDev map[string]*pipeline.DiskStats) []pipeline.DiskStats {
	out := make([]pipeline.DiskStats, 0, len(byDev))
	for _, d := range byDev {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b pipeline.DiskStats) int { return strings.Compare(a.Device, b.Device) })
	return out
}

// parseIOStat reads cgroup v2's io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...".
func parseIOStat(b []byte) []pipeline.DiskStats {
	byDev := map[string]*pipeline.DiskStats{}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		d := &pipeline.DiskStats{Device: f[0], HasOps: true}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				d.ReadBytes = n
			case "wbytes":
				d.WriteBytes = n
			case "rios":
				d.Reads = n
			case "wios":
				d.Writes = n
			}
		}
		byDev[d.Device] = d
	}
	return sortedDisks(byDev)
}

// parseNetDev reads the interfaces of a network namespace from
// /proc/<pid>/net/dev, loopback left out as the Engine leaves it out.
func parseNetDev(b []byte) []pipeline.NetworkStats {
	var out []pipeline.NetworkStats
	for line := range strings.SplitSeq(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || name == "lo" || strings.ContainsAny(name, " \t|") {
			continue // the two header lines, loopback, or not an interface
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			continue
		}
		n := make([]uint64, 16)
		for i := range n {
			n[i], _ = strconv.ParseUint(f[i], 10, 64)
		}
		// Receive: bytes packets errs drop fifo frame compressed multicast;
		// transmit: bytes packets errs drop fifo colls carrier compressed.
		out = append(out, pipeline.NetworkStats{
			Interface: name,
			RxBytes:   n[0], RxPackets: n[1], RxErrors: n[2], RxDropped: n[3],
			TxBytes: n[8], TxPackets: n[9], TxErrors: n[10], TxDropped: n[11],
		})
	}
	slices.SortFunc(out, func(a, b pipeline.NetworkStats) int { return strings.Compare(a.Interface, b.Interface) })
	return out
}
