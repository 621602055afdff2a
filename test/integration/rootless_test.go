//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// rootlessUIDEnv names the user that runs the rootless Docker under test;
// `make integration-rootless` sets it (scripts/rootless.sh env).
const rootlessUIDEnv = "DOCKSCOPE_TEST_ROOTLESS_UID"

// TestRootlessDockerAgentAsItsUser runs the agent as a rootless Docker is
// deployed: as the daemon's own user, on its socket
// (unix:///run/user/<uid>/docker.sock), with nothing but that user's rights.
// On this cgroup v1 host rootless Docker gives containers no cgroups (docker
// info: Cgroup Driver none): the Engine's stats of CPU, memory, pids and
// block I/O are the daemon's whole cgroup's (2 cores and ~290 MiB for an
// idle container) and --memory is not applied. So the agent says so once,
// exports the container's network counters (its own namespace, behind
// slirp4netns) and no resource series, and no limit; discovery and logs are
// as with any Engine.
func TestRootlessDockerAgentAsItsUser(t *testing.T) {
	uidStr := os.Getenv(rootlessUIDEnv)
	if uidStr == "" {
		t.Skipf("%s is not set: no rootless Docker under test (make integration-rootless)", rootlessUIDEnv)
	}
	if os.Geteuid() != 0 {
		t.Skip("running the agent as the rootless user needs root")
	}
	u, err := user.LookupId(uidStr)
	if err != nil {
		t.Fatalf("rootless user %s: %v", uidStr, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	info := harness.Docker(t, "info", "--format", "{{json .SecurityOptions}} {{.CgroupDriver}} {{.CgroupVersion}}")
	if !strings.Contains(info, "name=rootless") {
		t.Fatalf("%s is not rootless Docker: docker info says %s", harness.EngineDescription(), info)
	}
	noCgroups := strings.HasSuffix(info, " none 1")

	col := harness.Otelcol(t)
	scope := "rootless"
	a := startAgent(t, agentOpts{scope: scope, extra: logsConfig(col, 100),
		user: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}})

	name := uniq(t, "rootless")
	const lines = 300
	id := harness.RunContainer(t, append(scopeArgs(scope, name), "--memory", "64m",
		harness.WorkloadImage(t), "log", "-lines", strconv.Itoa(lines), "-stderr-every", "3", "-then", "sleep")...)

	// Discovery, and the network counters of its own namespace.
	a.waitValue(t, 20*time.Second, "container_network_receive_bytes_total", name, map[string]string{"interface": "eth0"},
		func(float64) bool { return true })
	m := a.scrape(t)
	s, ok := m.Find("container_start_time_seconds", map[string]string{"name": name})
	if !ok {
		t.Fatalf("no container_start_time_seconds for %s", name)
	}
	if noCgroups {
		// No cgroup to name: the id is the one cgroupfs would give.
		if s.Labels["id"] != "/docker/"+id {
			t.Errorf("id label %q, want /docker/%s", s.Labels["id"], id)
		}
		for _, absent := range []string{"container_cpu_usage_seconds_total", "container_memory_usage_bytes",
			"container_memory_working_set_bytes", "container_pids", "container_fs_reads_bytes_total"} {
			if got := m.FindAll(absent, map[string]string{"name": name}); len(got) > 0 {
				t.Errorf("%s exported for a container without a cgroup (the daemon's cgroup's numbers): %v", absent, got)
			}
		}
		if v, ok := m.Find("container_spec_memory_limit_bytes", map[string]string{"name": name}); !ok || v.Value != 0 {
			t.Errorf("container_spec_memory_limit_bytes = %v (%v), want 0: --memory is not applied without a cgroup", v.Value, ok)
		}
		if n := strings.Count(a.proc.Output(), "without cgroups of their own"); n != 1 {
			t.Errorf("the agent said %d times that the Engine gives containers no cgroups, want once:\n%s", n, a.proc.Output())
		}
	} else {
		a.waitValue(t, 20*time.Second, "container_cpu_usage_seconds_total", name, nil, func(v float64) bool { return v > 0 })
	}

	// Logs: every line once, on its stream.
	checkNumbered(t, name, waitShipped(t, col, name, lines, 30*time.Second), lines, 3, 0)

	// The container going away takes its series with it.
	harness.Docker(t, "rm", "-f", id)
	harness.WaitFor(t, 20*time.Second, 200*time.Millisecond, func() (bool, string) {
		_, ok := a.value(t, "container_start_time_seconds", name, nil)
		return !ok, fmt.Sprintf("%s still exported after docker rm", name)
	})
}
