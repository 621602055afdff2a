package collector

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/storage"
	"golang.org/x/sys/unix"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/internal/fswalk"
	"github.com/dockscope/dockscope/pipeline"
)

// fsTarget is where one container's files are, as the agent sees them.
type fsTarget struct {
	layer  string // the writable layer (overlay2's upper "diff" directory)
	logDir string // <data root>/containers/<id>: logs, config, hosts files
	root   string // the data root itself
}

// fsUsageOptions bound the walks.
type fsUsageOptions struct {
	// Interval is how often each running container is measured again.
	Interval time.Duration
	// FilesPerTurn is how many entries one container's walk reads before
	// the next container in line gets its turn; a larger tree continues at
	// its next turn.
	FilesPerTurn int
	// FilesPerSecond caps the pace of all walks together.
	FilesPerSecond int
}

// fsUsage measures the disk use of every running container's writable
// layer and log directory (cAdvisor's container_fs_usage_bytes), the costly
// part of the filesystem metrics: a stat per file. So it runs in a
// goroutine of its own, never in the stats path; measures each container
// once per Interval, not per stats interval; walks at most FilesPerSecond
// entries a second; and takes turns of FilesPerTurn entries among the
// containers, so that a huge layer delays nobody else. The backing
// filesystem's capacity and free space come from one statfs per walk.
type fsUsage struct {
	opts    fsUsageOptions
	store   *pipeline.Store
	log     *slog.Logger
	devices *deviceNamer // nil: the device keeps its major:minor

	mu      sync.Mutex
	targets map[string]fsTarget
	skipped map[string]bool // storage drivers already logged as unmeasurable
	walks   map[string]*fswalk.Walk
	walking string   // the container whose walk is stepping, outside mu
	queue   []string // containers due, in turn order
	queued  map[string]bool
	// tried holds the containers whose walk ended (measured or failed):
	// the others are new, and measured without waiting for the interval.
	tried map[string]bool
	kick  chan struct{} // a new container was seen
	// failed: why a container's directories could not be read, so that
	// the same failure is logged once, not at every interval.
	failed       map[string]string
	failLogged   bool
	noRootLogged bool

	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) bool
}

func newFSUsage(opts fsUsageOptions, store *pipeline.Store, log *slog.Logger, devices *deviceNamer) *fsUsage {
	return &fsUsage{
		opts:    opts,
		store:   store,
		log:     log,
		devices: devices,
		targets: make(map[string]fsTarget),
		skipped: make(map[string]bool),
		walks:   make(map[string]*fswalk.Walk),
		queued:  make(map[string]bool),
		tried:   make(map[string]bool),
		kick:    make(chan struct{}, 1),
		failed:  make(map[string]string),
		now:     time.Now,
		sleep:   sleepCtx,
	}
}

// newFSUsageFor builds the measurement the configuration asks for, or nil:
// when it is off, or when the daemon is not on a local unix socket (its
// files are on another host).
func newFSUsageFor(cfg config.StatsConfig, host string, store *pipeline.Store, log *slog.Logger) *fsUsage {
	f := cfg.Filesystem
	if !f.Enabled {
		return nil
	}
	if !strings.HasPrefix(host, "unix://") {
		log.Info("not measuring containers' filesystem use (container_fs_usage_bytes): the daemon is not on a local unix socket, its files are on another host", "host", host)
		return nil
	}
	return newFSUsage(fsUsageOptions{
		Interval:       f.Interval,
		FilesPerTurn:   f.FilesPerTurn,
		FilesPerSecond: f.FilesPerSecond,
	}, store, log, newDeviceNamer(cfg.SysRoot))
}

// observe records where an inspected container's files are.
func (u *fsUsage) observe(id string, gd *storage.DriverData, daemonRoot, agentRoot string) {
	driver, upper := "containerd image store", ""
	if gd != nil {
		driver, upper = gd.Name, gd.Data["UpperDir"]
	}
	t, ok := fsTargetFor(id, upper, daemonRoot, agentRoot)
	u.set(id, driver, t, ok)
}

// fsTargetFor finds a container's directories from its inspect:
// GraphDriver.Data.UpperDir is the writable layer for overlay2, overlay and
// fuse-overlayfs. Other drivers (vfs, btrfs, zfs, devicemapper, the
// containerd image store's snapshotters) name no such directory and are
// not measured. daemonRoot is the daemon's DockerRootDir; agentRoot is
// where the agent sees it ("" for the same path).
func fsTargetFor(id, upperDir, daemonRoot, agentRoot string) (fsTarget, bool) {
	if upperDir == "" || daemonRoot == "" {
		return fsTarget{}, false
	}
	return fsTarget{
		layer:  mapRoot(upperDir, daemonRoot, agentRoot),
		logDir: mapRoot(filepath.Join(daemonRoot, "containers", id), daemonRoot, agentRoot),
		root:   mapRoot(filepath.Join(daemonRoot, "containers"), daemonRoot, agentRoot),
	}, true
}

// mapRoot rewrites a path below the daemon's data root to where the agent
// has it mounted (e.g. /host/var/lib/docker).
func mapRoot(p, daemonRoot, agentRoot string) string {
	if agentRoot == "" {
		return p
	}
	rel, ok := strings.CutPrefix(p, strings.TrimSuffix(daemonRoot, "/")+"/")
	if !ok {
		return p // elsewhere than the data root: the host's own path
	}
	return filepath.Join(agentRoot, rel)
}

// set records where a container's files are, or, when ok is false, that
// its storage driver cannot be measured.
func (u *fsUsage) set(id, driver string, t fsTarget, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !ok {
		delete(u.targets, id)
		if !u.skipped[driver] {
			u.skipped[driver] = true
			u.log.Info("not measuring containers' filesystem use (container_fs_usage_bytes) with this storage driver: its inspect names no writable layer directory",
				"storage_driver", driver)
		}
		return
	}
	u.targets[id] = t
	if !u.tried[id] {
		select {
		case u.kick <- struct{}{}:
		default:
		}
	}
}

// forget drops a container that is gone.
func (u *fsUsage) forget(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.targets, id)
	delete(u.failed, id)
	delete(u.tried, id)
	if w := u.walks[id]; w != nil {
		if u.walking != id { // else the turn closes it
			w.Close()
		}
		delete(u.walks, id)
	}
}

// run measures until ctx is cancelled.
func (u *fsUsage) run(ctx context.Context) {
	defer func() {
		u.mu.Lock()
		for id, w := range u.walks {
			w.Close()
			delete(u.walks, id)
		}
		u.mu.Unlock()
	}()
	tick := time.NewTicker(u.opts.Interval)
	defer tick.Stop()
	u.enqueue(true)
	for {
		id, ok := u.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				u.enqueue(true)
			case <-u.kick:
				u.enqueue(false)
			}
			continue
		}
		start := u.now()
		n := u.turn(id)
		// Pace: n entries may take no less than n/FilesPerSecond.
		if d := time.Duration(n)*time.Second/time.Duration(u.opts.FilesPerSecond) - u.now().Sub(start); d > 0 {
			if !u.sleep(ctx, d) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			u.enqueue(true)
		case <-u.kick:
			u.enqueue(false)
		default:
		}
	}
}

// enqueue puts every running container with a known layer in line (only
// those never measured unless all), unless it is there already (its walk
// of the previous interval continues).
func (u *fsUsage) enqueue(all bool) {
	snaps := u.store.Snapshot()
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := range snaps {
		id := snaps[i].Meta.ID
		if !snaps[i].State.Running() || u.queued[id] || (!all && u.tried[id]) {
			continue
		}
		if _, ok := u.targets[id]; !ok {
			continue
		}
		u.queued[id] = true
		u.queue = append(u.queue, id)
	}
}

func (u *fsUsage) next() (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.queue) == 0 {
		return "", false
	}
	id := u.queue[0]
	u.queue = u.queue[1:]
	return id, true
}

// turn advances one container's walk by FilesPerTurn entries, finishes
// it when complete, and puts it back in line otherwise. It returns the
// entries read.
func (u *fsUsage) turn(id string) int {
	u.mu.Lock()
	t, ok := u.targets[id]
	w := u.walks[id]
	if !ok {
		delete(u.queued, id)
		u.mu.Unlock()
		return 0
	}
	if w == nil {
		w = fswalk.New(t.layer, t.logDir)
		u.walks[id] = w
	}
	u.walking = id
	u.mu.Unlock()

	// The walk steps without the lock, so that discovery (set, forget)
	// never waits for the disk.
	n, done, err := w.Step(u.opts.FilesPerTurn)

	u.mu.Lock()
	defer u.mu.Unlock()
	u.walking = ""
	if u.walks[id] != w { // forgotten during the turn
		w.Close()
		delete(u.queued, id)
		return n
	}
	if !done && err == nil {
		u.queue = append(u.queue, id)
		return n
	}
	w.Close()
	delete(u.walks, id)
	delete(u.queued, id)
	u.tried[id] = true
	if err != nil {
		u.fail(id, t, err)
		return n
	}
	fs, err := u.measured(t, w)
	if err != nil {
		u.fail(id, t, err)
		return n
	}
	if prev, ok := u.failed[id]; ok {
		u.log.Info("container's filesystem use can be measured again", "container", shortID(id), "previous_error", prev)
		delete(u.failed, id)
	}
	u.store.SetFilesystem(id, fs)
	return n
}

// measured completes a finished walk with the backing filesystem's size.
func (u *fsUsage) measured(t fsTarget, w *fswalk.Walk) (*pipeline.FilesystemStats, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(t.layer, &sfs); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", t.layer, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(t.layer, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", t.layer, err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
	if u.devices != nil {
		dev = u.devices.name(dev)
	}
	bsize := uint64(sfs.Bsize)
	return &pipeline.FilesystemStats{
		Device:         dev,
		UsageBytes:     w.Bytes(),
		Inodes:         w.Inodes(),
		CapacityBytes:  sfs.Blocks * bsize,
		AvailableBytes: sfs.Bavail * bsize,
		InodesTotal:    sfs.Files,
		InodesFree:     sfs.Ffree,
		Measured:       u.now(),
	}, nil
}

// fail omits a container's filesystem series and says why: the first
// failure of the agent as a warning, the others at debug level, each
// container's once until it changes.
func (u *fsUsage) fail(id string, t fsTarget, err error) {
	u.store.SetFilesystem(id, nil)
	msg := err.Error()
	if u.failed[id] == msg {
		return
	}
	u.failed[id] = msg
	if _, statErr := os.Stat(t.root); errors.Is(statErr, fs.ErrNotExist) {
		// No data root at all: the agent runs in a container without the
		// host's /var/lib/docker, a deployment that has not asked for these
		// metrics. Said once, plainly, not as a failure per container.
		if !u.noRootLogged {
			u.noRootLogged = true
			u.log.Info("not measuring containers' filesystem use (container_fs_usage_bytes): the daemon's data root is not visible to the agent; to measure it, mount the host's Docker data root read-only and set stats.filesystem.docker_root to where it is mounted",
				"looked_in", filepath.Dir(t.root))
		}
		return
	}
	level := slog.LevelDebug
	if !u.failLogged {
		u.failLogged = true
		level = slog.LevelWarn
	}
	hint := ""
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		hint = "the agent may not read the container's files: run it as root or with CAP_DAC_READ_SEARCH"
	} else if errors.Is(err, fswalk.ErrRoot) {
		hint = "the daemon's data root is not where stats.filesystem.docker_root says (mount the host's /var/lib/docker read-only and point docker_root at it)"
	}
	u.log.Log(context.Background(), level, "cannot measure a container's filesystem use; its container_fs_* series are omitted (further such failures are logged at debug level)",
		"container", shortID(id), "layer", t.layer, "err", err, "hint", hint)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
