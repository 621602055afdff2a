package collector

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/storage"

	"github.com/dockscope/dockscope/pipeline"
)

func TestFSTargetFor(t *testing.T) {
	const id = "abc"
	for _, c := range []struct {
		name, upper, daemonRoot, agentRoot string
		want                               fsTarget
		ok                                 bool
	}{
		{"on the host", "/var/lib/docker/overlay2/l1/diff", "/var/lib/docker", "",
			fsTarget{"/var/lib/docker/overlay2/l1/diff", "/var/lib/docker/containers/abc", "/var/lib/docker/containers"}, true},
		{"in a container", "/var/lib/docker/overlay2/l1/diff", "/var/lib/docker", "/host/var/lib/docker",
			fsTarget{"/host/var/lib/docker/overlay2/l1/diff", "/host/var/lib/docker/containers/abc", "/host/var/lib/docker/containers"}, true},
		{"data root with a trailing slash", "/data/docker/fuse-overlayfs/l1/diff", "/data/docker/", "/mnt/docker",
			fsTarget{"/mnt/docker/fuse-overlayfs/l1/diff", "/mnt/docker/containers/abc", "/mnt/docker/containers"}, true},
		{"a root that merely shares a prefix is not mapped", "/var/lib/docker2/overlay2/l1/diff", "/var/lib/docker", "/host",
			fsTarget{"/var/lib/docker2/overlay2/l1/diff", "/host/containers/abc", "/host/containers"}, true},
		{"no upper dir (vfs, btrfs, zfs, containerd snapshotter)", "", "/var/lib/docker", "", fsTarget{}, false},
		{"daemon root unknown", "/var/lib/docker/overlay2/l1/diff", "", "", fsTarget{}, false},
	} {
		got, ok := fsTargetFor(id, c.upper, c.daemonRoot, c.agentRoot)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: got %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// fsFixture is a store of running containers whose layers are temporary
// directories, and an fsUsage measuring them.
type fsFixture struct {
	store *pipeline.Store
	u     *fsUsage
	logs  *syncBuf
	dir   string
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFSFixture(t *testing.T, opts fsUsageOptions) *fsFixture {
	t.Helper()
	f := &fsFixture{store: pipeline.NewStore(), logs: new(syncBuf), dir: t.TempDir()}
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.u = newFSUsage(opts, f.store, log, nil)
	return f
}

// add makes a running container with a layer of files entries of size
// bytes each, and a log directory with one 1 KiB file.
func (f *fsFixture) add(t *testing.T, id string, files, size int) {
	t.Helper()
	f.store.Upsert(pipeline.ContainerMeta{ID: id, Name: id}, pipeline.ContainerState{Status: "running"}, pipeline.ContainerSpec{})
	for i := range files {
		writeSized(t, filepath.Join(f.dir, "overlay2", id, "diff", fmt.Sprintf("d%d", i/100), fmt.Sprintf("f%d", i)), size)
	}
	writeSized(t, filepath.Join(f.dir, "containers", id, id+"-json.log"), 1024)
	f.u.observe(id, &storage.DriverData{Name: "overlay2", Data: map[string]string{
		"UpperDir": "/var/lib/docker/overlay2/" + id + "/diff",
	}}, "/var/lib/docker", f.dir)
}

func (f *fsFixture) fs(id string) *pipeline.FilesystemStats {
	s, _ := f.store.Get(id)
	return s.Filesystem
}

func TestFSUsageTakesTurns(t *testing.T) {
	f := newFSFixture(t, fsUsageOptions{Interval: time.Hour, FilesPerTurn: 100, FilesPerSecond: 1 << 30})
	f.add(t, "big", 1000, 1)
	f.add(t, "small", 10, 4096)
	f.u.enqueue(true)
	var order []string
	for turns := 0; ; turns++ {
		id, ok := f.u.next()
		if !ok {
			break
		}
		if n := f.u.turn(id); n > 100 {
			t.Fatalf("a turn read %d entries, over files_per_turn", n)
		}
		if f.fs(id) != nil && !strings.Contains(strings.Join(order, ","), id) {
			order = append(order, id)
		}
		if turns > 100 {
			t.Fatal("the walks do not end")
		}
	}
	// Whichever was listed first, the small layer is done long before the
	// big one, which needs more than 10 turns.
	if len(order) != 2 || order[0] != "small" {
		t.Errorf("finished in order %v, want small before big", order)
	}
	small, big := f.fs("small"), f.fs("big")
	if small.Inodes != 1+1+10+1+1 || big.Inodes != 1+10+1000+1+1 {
		t.Errorf("inodes: small %d, big %d", small.Inodes, big.Inodes)
	}
	if small.UsageBytes < 10*4096+1024 || small.CapacityBytes == 0 || small.AvailableBytes > small.CapacityBytes ||
		small.InodesTotal == 0 || small.InodesFree > small.InodesTotal || small.Device == "" {
		t.Errorf("small = %+v", small)
	}
}

func TestFSUsagePaces(t *testing.T) {
	f := newFSFixture(t, fsUsageOptions{Interval: time.Hour, FilesPerTurn: 200, FilesPerSecond: 1000})
	f.add(t, "a", 1000, 1)
	var mu sync.Mutex
	var slept time.Duration
	ctx, cancel := context.WithCancel(context.Background())
	f.u.sleep = func(ctx context.Context, d time.Duration) bool {
		mu.Lock()
		slept += d
		mu.Unlock()
		return ctx.Err() == nil
	}
	done := make(chan struct{})
	go func() { defer close(done); f.u.run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for f.fs("a") == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if f.fs("a") == nil {
		t.Fatal("not measured")
	}
	// ~1,015 entries at 1,000 a second: about a second of pauses in all,
	// less the time the walk itself took.
	mu.Lock()
	defer mu.Unlock()
	if slept < 500*time.Millisecond || slept > 1100*time.Millisecond {
		t.Errorf("paused %v for ~1,015 entries at 1,000/s", slept)
	}
}

func TestFSUsageMissingDirectoryLoggedOnce(t *testing.T) {
	f := newFSFixture(t, fsUsageOptions{Interval: 20 * time.Millisecond, FilesPerTurn: 100, FilesPerSecond: 1 << 30})
	f.add(t, "ok", 3, 1)
	for _, id := range []string{"gone1", "gone2"} {
		f.store.Upsert(pipeline.ContainerMeta{ID: id, Name: id}, pipeline.ContainerState{Status: "running"}, pipeline.ContainerSpec{})
		f.u.observe(id, &storage.DriverData{Name: "overlay2", Data: map[string]string{"UpperDir": "/var/lib/docker/overlay2/" + id + "/diff"}},
			"/var/lib/docker", f.dir)
	}
	// A driver without a writable layer directory: said once for all.
	for _, id := range []string{"vfs1", "vfs2"} {
		f.store.Upsert(pipeline.ContainerMeta{ID: id, Name: id}, pipeline.ContainerState{Status: "running"}, pipeline.ContainerSpec{})
		f.u.observe(id, &storage.DriverData{Name: "vfs", Data: map[string]string{}}, "/var/lib/docker", f.dir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.u.run(ctx) }()
	time.Sleep(300 * time.Millisecond) // ~15 intervals
	cancel()
	<-done

	if f.fs("ok") == nil {
		t.Error("the readable container was not measured")
	}
	for _, id := range []string{"gone1", "gone2", "vfs1"} {
		if fs := f.fs(id); fs != nil {
			t.Errorf("%s has a measurement: %+v", id, fs)
		}
	}
	out := f.logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Errorf("%d warnings over ~15 intervals, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "cannot measure"); n != 2 {
		t.Errorf("%d failure lines, want one per container:\n%s", n, out)
	}
	if n := strings.Count(out, "storage_driver=vfs"); n != 1 {
		t.Errorf("the unmeasurable driver was reported %d times, want once:\n%s", n, out)
	}
}

func TestFSUsageForgetDuringWalk(t *testing.T) {
	f := newFSFixture(t, fsUsageOptions{Interval: time.Hour, FilesPerTurn: 100, FilesPerSecond: 1 << 30})
	f.add(t, "a", 500, 1)
	f.u.enqueue(true)
	id, _ := f.u.next()
	f.u.turn(id) // in progress: a directory held open
	f.u.forget(id)
	f.store.Remove(id)
	for {
		id, ok := f.u.next()
		if !ok {
			break
		}
		f.u.turn(id)
	}
	if len(f.u.walks) != 0 || len(f.u.queued) != 0 {
		t.Errorf("walks %v, queued %v left after the container was forgotten", f.u.walks, f.u.queued)
	}
}

// writeSized writes size bytes of data to path, creating its parents.
func writeSized(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Repeat([]byte{'x'}, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A container seen after the agent started is measured at once, not an
// interval later.
func TestFSUsageMeasuresNewContainersAtOnce(t *testing.T) {
	f := newFSFixture(t, fsUsageOptions{Interval: time.Hour, FilesPerTurn: 100, FilesPerSecond: 1 << 30})
	f.add(t, "first", 5, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.u.run(ctx) }()
	defer func() { cancel(); <-done }()
	waitMeasured := func(id string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for f.fs(id) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s not measured within 5s with a 1h interval", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitMeasured("first")
	first := f.fs("first")
	f.add(t, "second", 5, 1)
	waitMeasured("second")
	// Measuring the newcomer did not measure the first again (a new
	// measurement is a new value in the store).
	if f.fs("first") != first {
		t.Error("the first container was measured again when the second appeared")
	}
}

// An agent in a container without the host's data root mounted (the
// default deployment) says so once, as information, not as a warning per
// container.
func TestFSUsageNoDataRootIsInformation(t *testing.T) {
	f := newFSFixture(t, fsUsageOptions{Interval: 20 * time.Millisecond, FilesPerTurn: 100, FilesPerSecond: 1 << 30})
	for _, id := range []string{"a", "b"} {
		f.store.Upsert(pipeline.ContainerMeta{ID: id, Name: id}, pipeline.ContainerState{Status: "running"}, pipeline.ContainerSpec{})
		f.u.observe(id, &storage.DriverData{Name: "overlay2", Data: map[string]string{"UpperDir": "/var/lib/docker/overlay2/" + id + "/diff"}},
			"/var/lib/docker", filepath.Join(f.dir, "not-mounted"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.u.run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	out := f.logs.String()
	if strings.Contains(out, "level=WARN") || strings.Count(out, "data root is not visible") != 1 {
		t.Errorf("want one information line and no warning:\n%s", out)
	}
	if f.fs("a") != nil || f.fs("b") != nil {
		t.Error("measurements without a data root")
	}
}
