//go:build integration

package integration

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// shippedEvents returns the lifecycle event records the collector received
// for a container, by event name.
func shippedEvents(t *testing.T, col *harness.Collector, container string) map[string]harness.LogRecord {
	t.Helper()
	out := map[string]harness.LogRecord{}
	for _, r := range col.LogRecords(t) {
		if r.Resource.Str("container.name") == container && r.EventName != "" {
			out[r.EventName] = r.LogRecord
		}
	}
	return out
}

func TestEventsShippedAsLogRecordsAndOOMKillsCounted(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "events"
	a := startLogAgent(t, col, scope, "", 64)

	// A container that exits 3, then is removed: create, start, die with
	// its exit code and destroy reach the backend as records of its
	// Resource, apart from its (here no) log lines.
	name := uniq(t, "ev")
	harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t), "exit", "-code", "3", "-after", "300ms")...)
	a.waitValue(t, 30*time.Second, "container_last_exit_code", name, nil, func(v float64) bool { return v == 3 })
	harness.Docker(t, "rm", name)

	var evs map[string]harness.LogRecord
	want := []string{"container.create", "container.start", "container.die", "container.destroy"}
	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		evs = shippedEvents(t, col, name)
		for _, w := range want {
			if _, ok := evs[w]; !ok {
				return false, fmt.Sprintf("events of %s so far: %v", name, slices.Sorted(maps.Keys(evs)))
			}
		}
		return true, ""
	})
	die := evs["container.die"]
	if die.Attrs.Str("event.name") != "container.die" || fmt.Sprint(die.Attrs["process.exit.code"]) != "3" || die.SeverityText != "WARN" {
		t.Errorf("die record: attrs %v, severity %q", die.Attrs, die.SeverityText)
	}
	if die.Time.IsZero() || time.Since(die.Time) > 5*time.Minute {
		t.Errorf("die record has no event time: %v", die.Time)
	}
	if lines := shipped(t, col, name); len(lines) != 0 {
		t.Errorf("events counted as log lines: %v", lines)
	}

	if harness.EngineHasNoCgroups() {
		t.Logf("OOM kills not tested: %s gives containers no cgroups (rootless Docker on cgroup v1), so --memory applies no limit", harness.EngineDescription())
		return
	}
	// A process killed by the kernel's OOM killer: counted once in
	// container_memory_oom_kills_total (the oom event and the OOMKilled flag
	// of one death are one kill), and shipped as container.oom. It allocates
	// after a second: Engine 28.5 with containerd 2.1 misses about one OOM
	// kill in four that comes at once (no oom event, OOMKilled false:
	// containerd/containerd#8180).
	if harness.IsPodman() {
		t.Skip("the OOM part is skipped on Podman: 4.3 (conmon, runc, cgroup v1) reports neither an oom event nor State.OOMKilled for a container the OOM killer ended, only exit code 137")
	}
	oom := uniq(t, "oom")
	harness.RunContainer(t, append(scopeArgs(scope, oom), "--memory", "32m", "--memory-swap", "32m",
		harness.WorkloadImage(t), "alloc", "-mb", "200", "-after", "1s")...)
	a.waitValue(t, 30*time.Second, "container_state", oom, map[string]string{"state": "exited"}, func(v float64) bool { return v == 1 })
	a.waitValue(t, 30*time.Second, "container_memory_oom_kills_total", oom, nil, func(v float64) bool { return v >= 1 })
	time.Sleep(2 * time.Second) // let any late event count, to catch double counting
	// Each oom event counts, the OOMKilled flag of the same death does
	// not. The Engine passes on every OOM the kernel signals for the
	// cgroup: under memory pressure (a busy machine) the kernel may signal
	// a second one while its victim is still dying, and that reads as a
	// second kill.
	v, _ := a.value(t, "container_memory_oom_kills_total", oom, nil)
	ooms, _ := a.value(t, "container_oom_events_total", oom, nil)
	if v != max(ooms, 1) {
		t.Errorf("container_memory_oom_kills_total = %v for one OOM death with %v oom events, want %v", v, ooms, max(ooms, 1))
	}
	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		evs := shippedEvents(t, col, oom)
		_, ok := evs["container.oom"]
		return ok, fmt.Sprintf("events of %s so far: %v", oom, slices.Sorted(maps.Keys(evs)))
	})
}
