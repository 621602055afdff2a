//go:build integration

package integration

import (
	"fmt"
	"os"
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
	for _, parent := range []string{"/dockscope-test-parent", "dockscope-test-relative-parent"} {
		name := uniq(t, "cgparent")
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
		// cAdvisor's id is the cgroup's path: on cgroup v1 the cpu hierarchy's.
		want := paths[""]
		if p, ok := paths["cpu"]; ok {
			want = p
		}
		if !strings.Contains(want, id) {
			t.Fatalf("/proc/%d/cgroup does not name the container: %v", pid, paths)
		}
		t.Logf("--cgroup-parent %s: /proc says %v", parent, paths)

		a.waitValue(t, 20*time.Second, "container_memory_working_set_bytes", name, map[string]string{"id": want}, func(v float64) bool { return v >= 16<<20 })
		// The kernel's own count, from the directory /proc names for the
		// memory controller (on this host, with a relative parent, not the
		// cpu hierarchy's path).
		memDir := filepath.Join("/sys/fs/cgroup", want)
		if p, ok := paths["memory"]; ok {
			memDir = filepath.Join("/sys/fs/cgroup/memory", p)
		}
		usageFile := filepath.Join(memDir, "memory.usage_in_bytes")
		if _, err := os.Stat(usageFile); err != nil {
			usageFile = filepath.Join(memDir, "memory.current")
		}
		harness.WaitFor(t, 10*time.Second, 500*time.Millisecond, func() (bool, string) {
			b, err := os.ReadFile(usageFile)
			if err != nil {
				return false, err.Error()
			}
			kernel, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
			got, _ := a.value(t, "container_memory_usage_bytes", name, nil)
			// The container is idle after allocating: within a sample's drift.
			d := got - kernel
			return d < 1<<20 && d > -(1<<20), fmt.Sprintf("container_memory_usage_bytes %v, %s says %v", got, usageFile, kernel)
		})
	}
	m := a.scrape(t)
	if v, ok := m.Find("dockscope_stats_samples_total", map[string]string{"source": "cgroup"}); !ok || v.Value == 0 {
		t.Errorf("no sample read from cgroup files: %v", v)
	}
	if v, _ := m.Find("dockscope_stats_samples_total", map[string]string{"source": "api"}); v.Value != 0 {
		t.Errorf("%v samples fell back to the Engine API:\n%s", v.Value, a.proc.Output())
	}
	if out := a.proc.Output(); strings.Contains(out, "cgroup not found from /proc") {
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
