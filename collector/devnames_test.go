package collector

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// sysTree builds a sysfs as the kernel lays it out: /sys/dev/block/<maj:min>
// are links to the device's directory, whose uevent names it.
func sysTree(t *testing.T) string {
	t.Helper()
	root := writeTree(t, map[string]string{
		"devices/pci0000:00/0000:00:04.0/virtio2/block/vda/uevent":         "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=9\n",
		"devices/pci0000:00/0000:00:05.0/ata1/host0/block/sda/uevent":      "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n",
		"devices/virtual/block/dm-0/uevent":                                "MAJOR=253\nMINOR=0\nDEVNAME=dm-0\nDEVTYPE=disk\n",
		"devices/virtual/block/nouevent/size":                              "0\n", // a device whose uevent cannot be read
		"devices/pci0000:00/0000:00:05.0/ata1/host0/block/sda/sda1/uevent": "MAJOR=8\nMINOR=1\nDEVNAME=sda1\nDEVTYPE=partition\n",
	})
	links := map[string]string{
		"254:0": "../../devices/pci0000:00/0000:00:04.0/virtio2/block/vda",
		"8:0":   "../../devices/pci0000:00/0000:00:05.0/ata1/host0/block/sda",
		"8:1":   "../../devices/pci0000:00/0000:00:05.0/ata1/host0/block/sda/sda1",
		"253:0": "../../devices/virtual/block/dm-0",
		"7:3":   "../../devices/virtual/block/nouevent",
	}
	if err := os.MkdirAll(filepath.Join(root, "dev", "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	for dev, target := range links {
		if err := os.Symlink(target, filepath.Join(root, "dev", "block", dev)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDeviceNamesComeFromSysfs(t *testing.T) {
	n := newDeviceNamer(sysTree(t))
	for dev, want := range map[string]string{
		"8:0":   "/dev/sda",
		"8:1":   "/dev/sda1",
		"254:0": "/dev/vda",
		"253:0": "/dev/dm-0",
		"7:3":   "/dev/nouevent", // no uevent: the link's target names it
		"9:9":   "9:9",           // unknown to sysfs: the numbers stay
		"sda":   "sda",           // not major:minor: left alone
		"8:":    "8:",
	} {
		if got := n.name(dev); got != want {
			t.Errorf("name(%q) = %q, want %q", dev, got, want)
		}
	}

	disks := []pipeline.DiskStats{{Device: "8:0", ReadBytes: 1}, {Device: "9:9", WriteBytes: 2}}
	n.rename(disks)
	if want := []pipeline.DiskStats{{Device: "/dev/sda", ReadBytes: 1}, {Device: "9:9", WriteBytes: 2}}; !reflect.DeepEqual(disks, want) {
		t.Errorf("rename: %+v, want %+v", disks, want)
	}
}

// A name is read once per device; an unknown device is looked up again
// only after retryUnknown, so a disk attached later gets its name.
func TestDeviceNamesAreCached(t *testing.T) {
	root := sysTree(t)
	n := newDeviceNamer(root)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	n.now = func() time.Time { return now }
	if got := n.name("8:0"); got != "/dev/sda" {
		t.Fatalf("name(8:0) = %q", got)
	}
	if got := n.name("8:16"); got != "8:16" {
		t.Fatalf("name(8:16) before it exists = %q", got)
	}
	// sda goes away and sdb appears: the cache still answers for sda, and
	// sdb is not looked up before retryUnknown.
	if err := os.Remove(filepath.Join(root, "dev", "block", "8:0")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "devices", "virtual", "block", "sdb")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "uevent"), []byte("DEVNAME=sdb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../devices/virtual/block/sdb", filepath.Join(root, "dev", "block", "8:16")); err != nil {
		t.Fatal(err)
	}
	if got := n.name("8:0"); got != "/dev/sda" {
		t.Errorf("name(8:0) not cached: %q", got)
	}
	if got := n.name("8:16"); got != "8:16" {
		t.Errorf("name(8:16) looked up again before retryUnknown: %q", got)
	}
	now = now.Add(retryUnknown)
	if got := n.name("8:16"); got != "/dev/sdb" {
		t.Errorf("name(8:16) after retryUnknown = %q, want /dev/sdb", got)
	}
}

// statsEngine serves one stats document, the one Engine 20.10 gave for a
// container on a bridge network with disk I/O on 8:0 and on a device the
// host's sysfs does not list (253:7).
func statsEngine(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", "1.41")
		fmt.Fprint(w, "OK")
	})
	mux.HandleFunc("/containers/{id}/stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"read":"2026-12-07T12:00:00.5Z","num_procs":0,
"cpu_stats":{"cpu_usage":{"total_usage":1000000,"usage_in_kernelmode":0,"usage_in_usermode":0},"online_cpus":2},
"memory_stats":{"usage":4096,"limit":8589934592,"stats":{"total_inactive_file":0,"total_rss":4096,"total_cache":0}},
"pids_stats":{"current":1},
"networks":{"eth0":{"rx_bytes":516,"rx_packets":6,"rx_errors":0,"rx_dropped":0,"tx_bytes":42,"tx_packets":1,"tx_errors":0,"tx_dropped":0}},
"blkio_stats":{"io_service_bytes_recursive":[{"major":8,"minor":0,"op":"Read","value":4096},{"major":8,"minor":0,"op":"Write","value":8192},{"major":253,"minor":7,"op":"Read","value":512}],
"io_serviced_recursive":[{"major":8,"minor":0,"op":"Read","value":1},{"major":8,"minor":0,"op":"Write","value":2},{"major":253,"minor":7,"op":"Read","value":1}]}}`)
	})
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = apiPrefix.ReplaceAllString(r.URL.Path, "")
		mux.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// TestSamplesNameDevicesAndSkipSharedNetworks takes samples through the
// sampler as the collector does: the disks carry device names, and the
// container that joined another's network namespace has no interfaces of
// its own, although the Engine repeats the namespace's counters for it.
func TestSamplesNameDevicesAndSkipSharedNetworks(t *testing.T) {
	cfg := config.Default()
	cfg.Docker.Host = "unix://" + statsEngine(t)
	cfg.Stats.Source, cfg.Stats.SysRoot = "api", sysTree(t)
	store := pipeline.NewStore()
	c, err := New(Options{Config: cfg, Store: store, Telemetry: pipeline.NewTelemetry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.docker.Close()
	const owner, member = "aaaa", "bbbb"
	store.Upsert(pipeline.ContainerMeta{ID: owner, Name: "pod-app"}, pipeline.ContainerState{Status: "running", NetworkMode: "bridge"}, pipeline.ContainerSpec{})
	store.Upsert(pipeline.ContainerMeta{ID: member, Name: "pod-sidecar"}, pipeline.ContainerState{Status: "running", NetworkMode: "container:" + owner}, pipeline.ContainerSpec{})

	s := newStatsSampler(c)
	for _, id := range []string{owner, member} {
		s.sampleOne(context.Background(), s.jobFor(id))
	}
	wantDisks := []pipeline.DiskStats{ // in the order of their numbers
		{Device: "253:7", ReadBytes: 512, Reads: 1, HasOps: true},
		{Device: "/dev/sda", ReadBytes: 4096, WriteBytes: 8192, Reads: 1, Writes: 2, HasOps: true},
	}
	for _, tc := range []struct {
		id       string
		networks int
	}{{owner, 1}, {member, 0}} {
		snap, _ := store.Get(tc.id)
		if snap.Stats == nil {
			t.Fatalf("%s: no sample", snap.Meta.Name)
		}
		if got := len(snap.Stats.Networks); got != tc.networks {
			t.Errorf("%s (%s): %d interfaces, want %d: %+v", snap.Meta.Name, snap.State.NetworkMode, got, tc.networks, snap.Stats.Networks)
		}
		if !reflect.DeepEqual(snap.Stats.Disks, wantDisks) {
			t.Errorf("%s: disks %+v, want %+v", snap.Meta.Name, snap.Stats.Disks, wantDisks)
		}
	}

	// In a round, the same.
	// Stopped and started again: no sample until the round's.
	store.Upsert(pipeline.ContainerMeta{ID: member, Name: "pod-sidecar"}, pipeline.ContainerState{Status: "exited", NetworkMode: "container:" + owner}, pipeline.ContainerSpec{})
	store.Upsert(pipeline.ContainerMeta{ID: member, Name: "pod-sidecar"}, pipeline.ContainerState{Status: "running", NetworkMode: "container:" + owner}, pipeline.ContainerSpec{})
	s2 := newStatsSampler(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s2.run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		snap, _ := store.Get(member)
		if snap.Stats != nil && len(snap.Stats.Disks) > 0 {
			if len(snap.Stats.Networks) != 0 {
				t.Errorf("a round sampled the member's shared interfaces: %+v", snap.Stats.Networks)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no round sample of the member within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
