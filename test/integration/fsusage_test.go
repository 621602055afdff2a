//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// skipWithoutWritableLayer skips on an Engine whose containers' writable
// layer the agent cannot walk: a daemon elsewhere, or a storage driver that
// names no UpperDir (vfs, btrfs, zfs, the containerd image store).
func skipWithoutWritableLayer(t *testing.T, id string) string {
	t.Helper()
	if !harness.IsDefaultEngine() {
		t.Skip("the Engine under test is not this host's default one: its files are not here")
	}
	upper := strings.TrimSpace(harness.Docker(t, "inspect", "-f", `{{index .GraphDriver.Data "UpperDir"}}`, id))
	if upper == "" || upper == "<no value>" {
		t.Skipf("storage driver %s names no writable layer directory", strings.TrimSpace(harness.Docker(t, "info", "-f", "{{.Driver}}")))
	}
	return upper
}

// TestFilesystemUsage checks container_fs_usage_bytes against the Engine:
// a container that writes a 50 MiB file shows its usage rise by ~50 MiB
// within an interval, with cAdvisor's `device` label and the backing
// filesystem's size as its limit.
func TestFilesystemUsage(t *testing.T) {
	t.Parallel()
	scope := "fsusage"
	name := uniq(t, "fsusage")
	id := harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t), "sleep")...)
	upper := skipWithoutWritableLayer(t, id)
	a := startAgent(t, agentOpts{scope: scope, stats: "  filesystem:\n    interval: 10s\n"})

	// The log directory alone (config, hosts files) takes some blocks.
	before := a.waitValue(t, 30*time.Second, "container_fs_usage_bytes", name, nil, func(v float64) bool { return v > 0 })
	m := a.scrape(t)
	usage, _ := m.Find("container_fs_usage_bytes", map[string]string{"name": name})
	device := usage.Labels["device"]
	if !strings.HasPrefix(device, "/dev/") {
		t.Errorf("device = %q, want the layer's block device as cAdvisor names it (/dev/...)", device)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(upper, &sfs); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"name": name, "device": device}
	for series, want := range map[string]float64{
		"container_fs_limit_bytes":  float64(sfs.Blocks) * float64(sfs.Bsize),
		"container_fs_inodes_total": float64(sfs.Files),
	} {
		s, ok := m.Find(series, labels)
		if !ok || s.Value != want {
			t.Errorf("%s = %v (present %v), want the layer filesystem's %v", series, s.Value, ok, want)
		}
	}
	if s, ok := m.Find("container_fs_inodes_free", labels); !ok || s.Value <= 0 || s.Value > float64(sfs.Files) {
		t.Errorf("container_fs_inodes_free = %v (present %v), want the filesystem's free inodes", s.Value, ok)
	}

	const mib = 1 << 20
	harness.Docker(t, "exec", id, "/workload", "fill", "-file", "/tmp/big", "-mb", "50")
	after := a.waitValue(t, 40*time.Second, "container_fs_usage_bytes", name, nil, func(v float64) bool { return v >= before+49*mib })
	if grew := after - before; grew > 52*mib {
		t.Errorf("usage grew by %.1f MiB after writing 50 MiB", grew/mib)
	}
	t.Logf("usage %.1f MiB -> %.1f MiB on %s", before/mib, after/mib, device)
}

// TestFilesystemUsageUnreadable runs the agent with docker_root pointing
// where the daemon's files are not: the series are omitted and the agent
// says so once, not once per interval — as information when there is no
// data root at all (an agent in a container without the host's
// /var/lib/docker mounted), as a warning when the data root is there but
// the container's layer is not.
func TestFilesystemUsageUnreadable(t *testing.T) {
	t.Parallel()
	emptyRoot := t.TempDir()
	if err := os.Mkdir(filepath.Join(emptyRoot, "containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, root, want string }{
		{"no data root", "/nonexistent/docker", "level=INFO msg=\"not measuring containers' filesystem use (container_fs_usage_bytes): the daemon's data root is not visible"},
		{"no layer", emptyRoot, "level=WARN msg=\"cannot measure a container's filesystem use"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			scope := "fsunread-" + strings.ReplaceAll(c.name, " ", "")
			name := uniq(t, scope)
			id := harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t), "sleep")...)
			skipWithoutWritableLayer(t, id)
			a := startAgent(t, agentOpts{scope: scope, stats: "  filesystem:\n    interval: 10s\n    docker_root: " + c.root + "\n"})
			sampled, sampledLabels := sampledSeries()
			a.waitValue(t, 20*time.Second, sampled, name, sampledLabels, func(float64) bool { return true })
			time.Sleep(25 * time.Second) // three intervals
			if _, ok := a.value(t, "container_fs_usage_bytes", name, nil); ok {
				t.Error("container_fs_usage_bytes exported for a container whose layer the agent cannot read")
			}
			out := a.proc.Output()
			if n := strings.Count(out, c.want); n != 1 {
				t.Errorf("%q logged %d times over three intervals, want once:\n%s", c.want, n, out)
			}
		})
	}
}

// TestFilesystemUsageOTLP checks the semantic conventions'
// container.filesystem.{usage,capacity,available} as an OTel Collector
// receives them.
func TestFilesystemUsageOTLP(t *testing.T) {
	t.Parallel()
	scope := "fsotlp"
	name := uniq(t, "fsotlp")
	id := harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t), "sleep")...)
	upper := skipWithoutWritableLayer(t, id)
	harness.Docker(t, "exec", id, "/workload", "fill", "-file", "/tmp/big", "-mb", "20")
	col := harness.Otelcol(t)
	startAgent(t, agentOpts{scope: scope, stats: "  filesystem:\n    interval: 10s\n",
		extra: fmt.Sprintf("exporters:\n  otlp:\n    endpoint: %s\n    protocol: http/protobuf\n    interval: 1s\n", col.HTTPEndpoint)})
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(upper, &sfs); err != nil {
		t.Fatal(err)
	}
	capacity := float64(sfs.Blocks) * float64(sfs.Bsize)
	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		for _, rm := range col.ResourceMetrics(t) {
			if rm.Resource.Str("container.name") != name {
				continue
			}
			got := map[string]float64{}
			for _, metric := range []string{"container.filesystem.usage", "container.filesystem.capacity", "container.filesystem.available"} {
				m, ok := rm.Metric(metric)
				if !ok {
					continue
				}
				if m.Type != "sum" || m.Monotonic || m.Unit != "By" || len(m.Points) != 1 {
					return false, fmt.Sprintf("%s: type %s monotonic %v unit %q, %d points; want one non-monotonic sum in By", metric, m.Type, m.Monotonic, m.Unit, len(m.Points))
				}
				got[metric] = m.Points[0].Value
			}
			if len(got) < 3 {
				continue // an export before the first walk ended
			}
			const mib = 1 << 20
			ok := got["container.filesystem.usage"] >= 20*mib && got["container.filesystem.usage"] < 22*mib &&
				got["container.filesystem.capacity"] == capacity &&
				got["container.filesystem.available"] > 0 && got["container.filesystem.available"] < capacity
			return ok, fmt.Sprintf("%v (capacity by statfs %v)", got, capacity)
		}
		return false, "no export with container.filesystem.* for " + name
	})
}

// TestFilesystemUsageAgentInContainer runs the agent the way it is deployed
// to measure layers: its image, the host's Docker data root mounted
// read-only at /host/var/lib/docker (stats.filesystem.docker_root), as root
// with every capability dropped but CAP_DAC_READ_SEARCH. The paths the
// Engine reports (/var/lib/docker/...) are mapped below the mount.
func TestFilesystemUsageAgentInContainer(t *testing.T) {
	t.Parallel()
	scope := "fsincontainer"
	name := uniq(t, scope)
	id := harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t), "sleep")...)
	skipWithoutWritableLayer(t, id)
	dataRoot := strings.TrimSpace(harness.Docker(t, "info", "-f", "{{.DockerRootDir}}"))

	root := harness.RepoRoot(t)
	tag := "dockscope:fsusage-test"
	build := exec.Command("bash", filepath.Join(root, "scripts", "build-image.sh"), tag)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent image: %v\n%s", err, out)
	}
	t.Cleanup(func() { harness.TryDocker("image", "rm", tag) })
	dir, err := os.MkdirTemp("", "dockscope-fsusage-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cfg := filepath.Join(dir, "dockscope.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`stats:
  interval: 1s
  filesystem:
    interval: 10s
    docker_root: /host/var/lib/docker
discovery:
  resync_interval: 5s
  include:
    labels: ["dockscope.scope=%s"]
`, scope)), 0o644); err != nil {
		t.Fatal(err)
	}
	port := harness.FreePort(t)
	agent := harness.RunContainer(t, "--name", uniq(t, "fs-agent"), "--network", "host",
		"--user", "0:0", "--cap-drop", "ALL", "--cap-add", "DAC_READ_SEARCH",
		"-v", "/var/run/docker.sock:/var/run/docker.sock",
		"-v", dataRoot+":/host/var/lib/docker:ro",
		"-v", cfg+":/etc/dockscope.yml:ro",
		tag, "--config.file", "/etc/dockscope.yml", "--web.listen-address", fmt.Sprintf("127.0.0.1:%d", port), "--log.level", "debug")
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)

	var before float64
	harness.WaitFor(t, 60*time.Second, 500*time.Millisecond, func() (bool, string) {
		m, err := harness.TryScrapeMetrics(url)
		if err != nil {
			return false, err.Error()
		}
		s, ok := m.Find("container_fs_usage_bytes", map[string]string{"name": name})
		before = s.Value
		if !ok {
			out, _ := harness.TryDocker("logs", agent)
			return false, "no container_fs_usage_bytes yet; agent log:\n" + out
		}
		return s.Value > 0 && strings.HasPrefix(s.Labels["device"], "/dev/"), fmt.Sprintf("%v", s)
	})
	harness.Docker(t, "exec", id, "/workload", "fill", "-file", "/tmp/big", "-mb", "30")
	const mib = 1 << 20
	harness.WaitFor(t, 40*time.Second, 500*time.Millisecond, func() (bool, string) {
		m, err := harness.TryScrapeMetrics(url)
		if err != nil {
			return false, err.Error()
		}
		s, _ := m.Find("container_fs_usage_bytes", map[string]string{"name": name})
		return s.Value >= before+29*mib && s.Value <= before+31*mib, fmt.Sprintf("usage %v, before %v", s.Value, before)
	})
}
