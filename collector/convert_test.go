package collector

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/dockscope/dockscope/pipeline"
)

const v1Dir = "testdata/engine-20.10-cgroupv1"

func readJSON[T any](t *testing.T, path string) T {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	return v
}

func TestStatsCgroupV1(t *testing.T) {
	r := readJSON[engineStats](t, filepath.Join(v1Dir, "stats-oneshot.json"))
	got, err := statsFromResponse(r)
	if err != nil {
		t.Fatal(err)
	}
	want := pipeline.Stats{
		Read:             time.Date(2026, 11, 22, 18, 39, 50, 270555916, time.UTC),
		CPUTotal:         73040691,
		CPUUser:          40 * time.Millisecond,
		CPUSystem:        20 * time.Millisecond,
		CPUPeriods:       11,
		OnlineCPUs:       2,
		MemoryUsage:      770048,
		MemoryWorkingSet: 770048, // total_inactive_file is 0
		MemoryRSS:        118784,
		MemoryCache:      0,
		Pids:             2,
		Present:          pipeline.MemMaxUsage | pipeline.MemFileDetail | pipeline.MemFaults | pipeline.MemFailcnt,
		Memory:           pipeline.MemoryDetail{MaxUsage: 3813376, Pgfault: 2712, TotalPgfault: 2712},
		Networks: []pipeline.NetworkStats{{
			Interface: "eth0", RxBytes: 516, RxPackets: 6,
		}},
		Disks: []pipeline.DiskStats{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v1 stats:\n got %+v\nwant %+v", got, want)
	}
}

func TestStatsCgroupV1WorkingSetSubtractsInactiveFile(t *testing.T) {
	r := readJSON[engineStats](t, filepath.Join(v1Dir, "stats-oneshot.json"))
	r.MemoryStats.Usage = 10_000
	r.MemoryStats.Stats.TotalInactiveFile = 4_000
	r.MemoryStats.Stats.InactiveFile = 9_999 // the non-hierarchical key must be ignored on v1
	swap := uint64(123)
	r.MemoryStats.Stats.TotalSwap = &swap
	got, err := statsFromResponse(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.MemoryWorkingSet != 6_000 {
		t.Errorf("working set = %d, want 6000", got.MemoryWorkingSet)
	}
	if !got.HasMemorySwap || got.MemorySwap != 123 {
		t.Errorf("swap = %d (has %v), want 123", got.MemorySwap, got.HasMemorySwap)
	}

	// Inactive file above usage (seen while the kernel updates counters)
	// must clamp to zero, not wrap around.
	r.MemoryStats.Stats.TotalInactiveFile = 20_000
	got, _ = statsFromResponse(r)
	if got.MemoryWorkingSet != 0 {
		t.Errorf("working set = %d, want 0 when inactive_file > usage", got.MemoryWorkingSet)
	}
}

func TestStatsCgroupV1Blkio(t *testing.T) {
	r := readJSON[engineStats](t, filepath.Join(v1Dir, "stats-oneshot.json"))
	r.BlkioStats.IoServiceBytesRecursive = []container.BlkioStatEntry{
		{Major: 8, Minor: 0, Op: "Read", Value: 100},
		{Major: 8, Minor: 0, Op: "Write", Value: 200},
		{Major: 8, Minor: 0, Op: "Sync", Value: 300},
		{Major: 8, Minor: 0, Op: "Total", Value: 300},
	}
	r.BlkioStats.IoServicedRecursive = []container.BlkioStatEntry{
		{Major: 8, Minor: 0, Op: "Read", Value: 3},
		{Major: 8, Minor: 0, Op: "Write", Value: 4},
	}
	got, _ := statsFromResponse(r)
	want := []pipeline.DiskStats{{Device: "8:0", ReadBytes: 100, WriteBytes: 200, Reads: 3, Writes: 4, HasOps: true}}
	if !reflect.DeepEqual(got.Disks, want) {
		t.Errorf("disks = %+v, want %+v", got.Disks, want)
	}
}

// TestStatsCgroupV2 decodes a stats response recorded from Docker 26.1 on a
// cgroup v2 host with the systemd driver (memory_stats.stats carries
// memory.stat's keys; blkio only bytes, lower-case ops; no failcnt).
func TestStatsCgroupV2(t *testing.T) {
	r := readJSON[engineStats](t, "testdata/engine-26.1-cgroupv2-systemd/limited/stats.json")
	got, err := statsFromResponse(r)
	if err != nil {
		t.Fatal(err)
	}
	want := pipeline.Stats{
		Read:                time.Date(2026, 12, 7, 4, 58, 9, 360807035, time.UTC),
		CPUTotal:            6692572000,
		CPUUser:             2660237000,
		CPUSystem:           4032335000,
		CPUPeriods:          173,
		CPUThrottledPeriods: 113,
		CPUThrottledTime:    7090654000,
		OnlineCPUs:          2,
		MemoryUsage:         35049472,
		MemoryWorkingSet:    35049472 - 33558528, // usage - inactive_file
		MemoryRSS:           114688,              // anon
		MemoryCache:         33558528,            // file
		Pids:                2,
		// The API passes memory.stat's file and fault keys on, not the
		// kernel, reclaim or refault ones (26.1 on v2).
		Present: pipeline.MemFileDetail | pipeline.MemFaults | pipeline.MemReclaim,
		Memory:  pipeline.MemoryDetail{InactiveFile: 33558528, Pgfault: 2902, TotalPgfault: 2902},
		Networks: []pipeline.NetworkStats{
			{Interface: "eth0", RxBytes: 946, RxPackets: 11},
		},
		Disks: []pipeline.DiskStats{
			{Device: "254:0", WriteBytes: 33554432},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v2 stats:\n got %+v\nwant %+v", got, want)
	}
}

func TestStatsOfStoppedContainerIsAnError(t *testing.T) {
	// A stopped container's stats come back zeroed with no read time.
	if _, err := statsFromResponse(engineStats{}); err == nil {
		t.Fatal("want an error for a response without read time")
	}
}

func TestInspectHealthy(t *testing.T) {
	in := readJSON[container.InspectResponse](t, filepath.Join(v1Dir, "inspect-healthy.json"))
	allow := func(k string) bool { return k == "com.docker.compose.service" }
	meta, state, spec := containerFromInspect(in, "host-1", allow)

	wantMeta := pipeline.ContainerMeta{
		ID:             "abdca09ec9ff585c338c57220ad5a5305fac5e702f101130dc9aa3cffcf72754",
		Name:           "fx-hc",
		Image:          "busybox:local",
		ImageName:      "busybox",
		ImageTag:       "local",
		ImageID:        "sha256:a9373ee6b8b565ce8cea3fdec0b7120a09dde084517c9de6400f094e8fd71eff",
		Hostname:       "host-1",
		ComposeProject: "demo",
		ComposeService: "web",
		Labels:         map[string]string{"com.docker.compose.service": "web"},
	}
	if !reflect.DeepEqual(meta, wantMeta) {
		t.Errorf("meta:\n got %+v\nwant %+v", meta, wantMeta)
	}
	if state.Status != "running" || state.Health != "healthy" || state.ExitCode != 0 || state.LogDriver != "json-file" {
		t.Errorf("state = %+v", state)
	}
	if !state.FinishedAt.IsZero() {
		t.Errorf("FinishedAt = %v, want zero for a container that never finished", state.FinishedAt)
	}
	// --memory 64m --cpus 0.5: NanoCPUs become a 50 ms quota per 100 ms.
	wantSpec := pipeline.ContainerSpec{MemoryLimit: 64 << 20, CPUQuota: 50000, CPUPeriod: 100000, CPUShares: 1024}
	if spec != wantSpec {
		t.Errorf("spec = %+v, want %+v", spec, wantSpec)
	}
}

func TestInspectExited(t *testing.T) {
	in := readJSON[container.InspectResponse](t, filepath.Join(v1Dir, "inspect-exited-3.json"))
	meta, state, spec := containerFromInspect(in, "h", nil)
	if meta.Name != "fx-exit" || meta.Labels != nil {
		t.Errorf("meta = %+v", meta)
	}
	if state.Status != "exited" || state.ExitCode != 3 || state.Health != "" || state.Running() {
		t.Errorf("state = %+v", state)
	}
	if state.FinishedAt.IsZero() {
		t.Error("FinishedAt is zero for an exited container")
	}
	if spec.MemoryLimit != 0 || spec.CPUQuota != 0 {
		t.Errorf("spec = %+v, want unlimited", spec)
	}
}

func TestSplitImageRef(t *testing.T) {
	for _, tc := range []struct{ ref, name, tag string }{
		{"nginx", "nginx", "latest"},
		{"nginx:1.27", "nginx", "1.27"},
		{"registry:5000/team/app", "registry:5000/team/app", "latest"},
		{"registry:5000/team/app:v2", "registry:5000/team/app", "v2"},
		{"app:v1@sha256:abcd", "app", "v1"},
		{"app@sha256:abcd", "app", "latest"},
		{"sha256:0123abcd", "sha256:0123abcd", ""},
	} {
		name, tag := splitImageRef(tc.ref)
		if name != tc.name || tag != tc.tag {
			t.Errorf("splitImageRef(%q) = %q, %q; want %q, %q", tc.ref, name, tag, tc.name, tc.tag)
		}
	}
}

func TestCgroupPath(t *testing.T) {
	id := "abc"
	withParent := func(p string) container.InspectResponse {
		hc := &container.HostConfig{}
		hc.CgroupParent = p
		return container.InspectResponse{HostConfig: hc}
	}
	for _, tc := range []struct {
		runtime, driver, parent, want string
	}{
		{"docker", "cgroupfs", "", "/docker/abc"},
		{"docker", "cgroupfs", "/custom/group", "/custom/group/abc"},
		{"docker", "systemd", "", "/system.slice/docker-abc.scope"},
		{"docker", "systemd", "app-web.slice", "/app.slice/app-web.slice/docker-abc.scope"},
		// Podman 4.3 on this machine (cgroupfs, cgroup v1) and its systemd default.
		{"podman", "cgroupfs", "", "/libpod_parent/libpod-abc"},
		{"podman", "cgroupfs", "/custom/group", "/custom/group/libpod-abc"},
		{"podman", "systemd", "", "/machine.slice/libpod-abc.scope"},
	} {
		if got := cgroupPath(tc.runtime, tc.driver, withParent(tc.parent), id); got != tc.want {
			t.Errorf("cgroupPath(%s, %s, %q) = %q, want %q", tc.runtime, tc.driver, tc.parent, got, tc.want)
		}
	}
}

func TestRuntimeNameFromVersionComponents(t *testing.T) {
	for _, tc := range []struct {
		components []string
		want       string
	}{
		// Engine 20.10 and 28.5's /version.
		{[]string{"Engine", "containerd", "runc", "docker-init"}, "docker"},
		// Podman 4.3's (bookworm) and 5.x's.
		{[]string{"Podman Engine", "Conmon", "OCI Runtime (runc)"}, "podman"},
		{nil, "docker"},
	} {
		if got := runtimeName(tc.components); got != tc.want {
			t.Errorf("runtimeName(%q) = %q, want %q", tc.components, got, tc.want)
		}
	}
}

func TestEventsFixture(t *testing.T) {
	f, err := os.Open(filepath.Join(v1Dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cursor eventCursor
	actions := map[string]int{}
	var health []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m events.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if !cursor.advance(m) {
			t.Fatalf("event %s %s seen as a replay", m.Actor.ID[:12], m.Action)
		}
		// Replaying the same event after a reconnect must be recognised.
		if cursor.advance(m) {
			t.Fatalf("replayed event %s %s seen as new", m.Actor.ID[:12], m.Action)
		}
		action, detail := splitAction(m.Action)
		actions[action]++
		if action == "health_status" {
			health = append(health, detail)
		}
	}
	if actions["exec_start"] != 8 || actions["health_status"] != 2 || actions["start"] != 3 {
		t.Errorf("actions = %v", actions)
	}
	if !reflect.DeepEqual(health, []string{"healthy", "healthy"}) {
		t.Errorf("health details = %v", health)
	}
	if s := cursor.String(); len(s) != len("1795372786.640188477") {
		t.Errorf("since = %q, want seconds.nanoseconds", s)
	}
}

func TestHealthFromStatus(t *testing.T) {
	for status, want := range map[string]string{
		"Up 5 seconds (healthy)":          "healthy",
		"Up 1 minute (unhealthy)":         "unhealthy",
		"Up 2 seconds (health: starting)": "starting",
		"Up 2 hours":                      "",
		"Exited (3) 5 seconds ago":        "",
	} {
		if got := healthFromStatus(status); got != want {
			t.Errorf("healthFromStatus(%q) = %q, want %q", status, got, want)
		}
	}
}

func TestInspectCapsHostileLabelValues(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	// "é" is two bytes: a cut at an odd offset must not split it.
	accented := "a" + strings.Repeat("é", 600)
	in := container.InspectResponse{
		ID:   "abc",
		Name: "/job",
		Config: &container.Config{Image: "img:1", Labels: map[string]string{
			labelK8sPod:         huge,
			labelComposeProject: accented,
			labelSwarmTask:      "web.1.abcdefghijklmnopqrstuvwxy",
			"team":              huge,
		}},
	}
	meta, _, _ := containerFromInspect(in, "host", func(k string) bool { return k == "team" })
	if len(meta.K8sPod) != maxIdentityBytes {
		t.Errorf("pod name kept %d bytes, want %d", len(meta.K8sPod), maxIdentityBytes)
	}
	if !utf8.ValidString(meta.ComposeProject) || len(meta.ComposeProject) > maxIdentityBytes || len(meta.ComposeProject) < maxIdentityBytes-1 {
		t.Errorf("compose project cut to %d bytes, valid UTF-8 %v", len(meta.ComposeProject), utf8.ValidString(meta.ComposeProject))
	}
	if meta.SwarmTask != "web.1.abcdefghijklmnopqrstuvwxy" {
		t.Errorf("a normal task name changed: %q", meta.SwarmTask)
	}
	if got := len(meta.Labels["team"]); got != maxLabelValueBytes {
		t.Errorf("allow-listed label kept %d bytes, want %d", got, maxLabelValueBytes)
	}
}
