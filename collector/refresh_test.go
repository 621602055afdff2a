package collector

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// TestRefreshReadsCountersAtScrapeTime: an exporter's Store.Refresh makes
// the sampler read the running containers' cgroup files again, so a scrape
// serves the counters as they are now, not as the last round left them;
// and it does so at most once per refreshGap.
func TestRefreshReadsCountersAtScrapeTime(t *testing.T) {
	const dir = "cgroup/cpuacct/docker/aaaa"
	root := writeTree(t, map[string]string{
		dir + "/cpuacct.usage":                            "1000000000\n",
		dir + "/cpuacct.stat":                             "user 50\nsystem 50\n",
		"cgroup/memory/docker/aaaa/memory.usage_in_bytes": "4096\n",
		"cgroup/memory/docker/aaaa/memory.stat":           "total_rss 4096\ntotal_cache 0\ntotal_inactive_file 0\n",
		"cgroup/cpu/docker/aaaa/cpu.stat":                 "nr_periods 0\n",
		"cgroup/pids/docker/aaaa/pids.current":            "1\n",
		"sys/dev/block/.keep":                             "",
	})
	r, err := newCgroupReader(filepath.Join(root, "cgroup"), filepath.Join(root, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	store := pipeline.NewStore()
	c := &Collector{cfg: config.Default(), store: store, tel: pipeline.NewTelemetry(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s := &statsSampler{c: c, cgroup: r, devices: newDeviceNamer(filepath.Join(root, "sys"))}
	store.Upsert(pipeline.ContainerMeta{ID: "aaaa", CgroupPath: "/docker/aaaa"}, pipeline.ContainerState{Status: "running", NetworkMode: "none"}, pipeline.ContainerSpec{})
	store.Upsert(pipeline.ContainerMeta{ID: "bbbb", CgroupPath: "/docker/bbbb"}, pipeline.ContainerState{Status: "exited"}, pipeline.ContainerSpec{})
	remove := store.SetRefresher(s.refresh)
	defer remove()

	// Not sampled by a round yet: a refresh leaves it to the round.
	store.Refresh(context.Background())
	if snap, _ := store.Get("aaaa"); snap.Stats != nil {
		t.Fatalf("a refresh sampled a container no round has: %+v", snap.Stats)
	}
	s.lastRefresh = time.Time{}
	s.sampleOne(context.Background(), statsJob{id: "aaaa", target: &statsTarget{cgroupPath: "/docker/aaaa", networkMode: "none"}})

	// The container burns a second of CPU; the next scrape sees it.
	if err := os.WriteFile(filepath.Join(root, dir, "cpuacct.usage"), []byte("2000000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	store.Refresh(context.Background())
	if snap, _ := store.Get("aaaa"); snap.Stats == nil || snap.Stats.CPUTotal != 2*time.Second {
		t.Fatalf("after a refresh: %+v, want CPUTotal 2s", snap.Stats)
	}
	if snap, _ := store.Get("bbbb"); snap.Stats != nil {
		t.Errorf("a refresh sampled a stopped container: %+v", snap.Stats)
	}
	// A second scrape within refreshGap (an HA pair) shares that read.
	if err := os.WriteFile(filepath.Join(root, dir, "cpuacct.usage"), []byte("3000000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	store.Refresh(context.Background())
	if snap, _ := store.Get("aaaa"); snap.Stats.CPUTotal != 2*time.Second {
		t.Errorf("refreshed again within refreshGap: %v", snap.Stats.CPUTotal)
	}
	s.lastRefresh = time.Now().Add(-refreshGap)
	store.Refresh(context.Background())
	if snap, _ := store.Get("aaaa"); snap.Stats.CPUTotal != 3*time.Second {
		t.Errorf("not refreshed after refreshGap: %v", snap.Stats.CPUTotal)
	}
}
