//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// TestCgroupParentFoundFromProc runs containers under a custom
// --cgroup-parent, an absolute one and a relative one (which runc joins to
// its own cgroup, per v1 controller), and checks that the agent reads their
// stats from their cgroup files — not falling back to the API — and names
// them by the path the kernel gives (cAdvisor's id).
func TestCgroupParentFoundFromProc(t *testing.T) {
	t.Parallel()
	scope := "cgparent"
	a := startAgent(t, agentOpts{scope: scope, stats: "  source: cgroup\n"})
	cases := runUnderCgroupParents(t, scope)
	checkCgroupStats(t, a.url, cases, a.proc.Output)
}

// TestAgentInCgroupNamespaceFindsCgroups runs the agent the way it is
// deployed: in its own container, with a cgroup namespace of its own (Docker's
// default on cgroup v2, asked for here on v1), the host's /sys/fs/cgroup and
// /proc mounted below /host. /proc then shows the containers' cgroups
// relative to the agent's namespace ("/../<id>"), and the host's hierarchies
// as "/../.."; the agent still finds every container's files and names it
// by its host path.
func TestAgentInCgroupNamespaceFindsCgroups(t *testing.T) {
	t.Parallel()
	root := harness.RepoRoot(t)
	tag := harness.RunImage("dockscope:cgroupns-test")
	build := exec.Command("bash", filepath.Join(root, "scripts", "build-image.sh"), tag)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent image: %v\n%s", err, out)
	}
	t.Cleanup(func() { harness.TryDocker("image", "rm", tag) })

	scope := "cgns"
	// Readable by the image's non-root user.
	dir, err := os.MkdirTemp("", "dockscope-cgns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := filepath.Join(dir, "dockscope.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`stats:
  interval: 1s
  source: cgroup
  cgroup_root: /host/sys/fs/cgroup
  proc_root: /host/proc
discovery:
  resync_interval: 5s
  include:
    labels: ["dockscope.scope=%s"]
`, scope)), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	port := harness.FreePort(t)
	agent := harness.RunContainer(t, "--name", uniq(t, "cgns-agent"), "--cgroupns", "private", "--network", "host",
		"-v", "/var/run/docker.sock:/var/run/docker.sock",
		"-v", "/sys/fs/cgroup:/host/sys/fs/cgroup:ro", "-v", "/proc:/host/proc:ro",
		"-v", cfg+":/etc/dockscope.yml:ro",
		tag, "--config.file", "/etc/dockscope.yml", "--web.listen-address", fmt.Sprintf("127.0.0.1:%d", port), "--log.level", "debug")
	logs := func() string { out, _ := harness.TryDocker("logs", agent); return out }
	// Seen from its own namespace, the agent is at its root.
	pid := harness.Docker(t, "inspect", "-f", "{{.State.Pid}}", agent)
	if b, err := exec.Command("nsenter", "-t", pid, "-C", "cat", "/proc/"+pid+"/cgroup").Output(); err != nil || !strings.HasSuffix(string(b), "0::/\n") {
		t.Fatalf("the agent is not in a cgroup namespace of its own: %s %v", b, err)
	}
	cases := runUnderCgroupParents(t, scope)
	checkCgroupStats(t, fmt.Sprintf("http://127.0.0.1:%d", port), cases, logs)
}

// cgroupCase is a container and what the kernel says of its cgroup.
type cgroupCase struct {
	name, id string
	wantID   string // cAdvisor's id: the cgroup's path (v1: the cpu hierarchy's)
	memUsage string // the kernel's memory usage file for it
}

// runUnderCgroupParents starts an idle container (16 MiB allocated) under
// an absolute and one under a relative --cgroup-parent.
func runUnderCgroupParents(t *testing.T, scope string) []cgroupCase {
	t.Helper()
	var cases []cgroupCase
	for _, parent := range []string{"/dockscope-test-parent-" + scope, "dockscope-test-relative-parent-" + scope} {
		name := uniq(t, scope)
		// Registered before the container's own cleanup, so it runs after
		// the container is removed: the parents Docker made are removed too.
		t.Cleanup(func() { removeCgroupParents(t, filepath.Base(parent)) })
		id := harness.RunContainer(t, append(scopeArgs(scope, name), "--cgroup-parent", parent,
			harness.WorkloadImage(t), "alloc", "-mb", "16")...)
		pid, err := strconv.Atoi(harness.Docker(t, "inspect", "-f", "{{.State.Pid}}", id))
		if err != nil {
			t.Fatalf("the container's pid: %v", err)
		}
		paths := procCgroups(t, pid)
		c := cgroupCase{name: name, id: id, wantID: paths[""]}
		if p, ok := paths["cpu"]; ok {
			c.wantID = p
		}
		if !strings.Contains(c.wantID, id) {
			t.Fatalf("/proc/%d/cgroup does not name the container: %v", pid, paths)
		}
		t.Logf("--cgroup-parent %s: /proc says %v", parent, paths)
		// The kernel's own count, from the directory /proc names for the
		// memory controller (on this host, with a relative parent, not the
		// cpu hierarchy's path).
		memDir := filepath.Join("/sys/fs/cgroup", c.wantID)
		if p, ok := paths["memory"]; ok {
			memDir = filepath.Join("/sys/fs/cgroup/memory", p)
		}
		c.memUsage = filepath.Join(memDir, "memory.usage_in_bytes")
		if _, err := os.Stat(c.memUsage); err != nil {
			c.memUsage = filepath.Join(memDir, "memory.current")
		}
		cases = append(cases, c)
	}
	return cases
}

// checkCgroupStats waits until the agent at url exports each container
// under the kernel's path with the kernel's memory count, then checks that
// no sample came from the API and nothing fell back to the derived path.
func checkCgroupStats(t *testing.T, url string, cases []cgroupCase, output func() string) {
	t.Helper()
	for _, c := range cases {
		harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
			m, err := harness.TryScrapeMetrics(url + "/metrics")
			if err != nil {
				return false, err.Error()
			}
			got, ok := m.Find("container_memory_usage_bytes", map[string]string{"name": c.name, "id": c.wantID})
			if !ok {
				s, _ := m.Find("container_memory_usage_bytes", map[string]string{"name": c.name})
				return false, fmt.Sprintf("no container_memory_usage_bytes{id=%q} (have %v)", c.wantID, s.Labels)
			}
			b, err := os.ReadFile(c.memUsage)
			if err != nil {
				return false, err.Error()
			}
			kernel, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
			// The container is idle after allocating: within a sample's drift.
			d := got.Value - kernel
			return got.Value >= 16<<20 && d < 1<<20 && d > -(1<<20), fmt.Sprintf("container_memory_usage_bytes %v, %s says %v", got.Value, c.memUsage, kernel)
		})
	}
	m := harness.ScrapeMetrics(t, url+"/metrics")
	if v, ok := m.Find("dockscope_stats_samples_total", map[string]string{"source": "cgroup"}); !ok || v.Value == 0 {
		t.Errorf("no sample read from cgroup files: %v", v)
	}
	if v, _ := m.Find("dockscope_stats_samples_total", map[string]string{"source": "api"}); v.Value != 0 {
		t.Errorf("%v samples fell back to the Engine API:\n%s", v.Value, output())
	}
	if out := output(); strings.Contains(out, "cgroup not found from /proc") {
		t.Errorf("the agent fell back to the derived path:\n%s", out)
	}
}

// procCgroups reads /proc/<pid>/cgroup: the path per v1 controller, and
// cgroup v2's under "".
func procCgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "" {
			out[""] = f[2]
			continue
		}
		for c := range strings.SplitSeq(f[1], ",") {
			out[c] = f[2]
		}
	}
	return out
}

// removeCgroupParents removes the (by then empty) cgroups named base that
// Docker made for a --cgroup-parent, wherever runc put them.
func removeCgroupParents(t *testing.T, base string) {
	var dirs []string
	filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if d.Name() == base {
			dirs = append(dirs, p)
			return filepath.SkipDir
		}
		// Parents are made at most a few levels down (below runc's cgroup).
		if strings.Count(strings.TrimPrefix(p, "/sys/fs/cgroup"), "/") >= 4 {
			return filepath.SkipDir
		}
		return nil
	})
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			t.Logf("removing cgroup %s: %v", d, err)
		}
	}
}
