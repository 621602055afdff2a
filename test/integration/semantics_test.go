//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// TestSharedNetnsExportsNetworkOnce runs a container and a second one in its
// network namespace (`docker run --network container:X`, what Compose's
// network_mode: service: and every Kubernetes pod member do): the Engine,
// and /proc/<pid>/net/dev, report the same interfaces for both. Only the
// namespace's owner has network series, on the Prometheus endpoint (for both
// stats sources) and in OTLP, so sums over containers count its traffic
// once, as with cAdvisor.
func TestSharedNetnsExportsNetworkOnce(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "netns"
	owner, member := uniq(t, "netns-owner"), uniq(t, "netns-member")
	api := startAgent(t, agentOpts{scope: scope, stats: "  source: api\n"})
	cg := startAgent(t, agentOpts{scope: scope, stats: "  source: cgroup\n",
		extra: fmt.Sprintf("exporters:\n  otlp:\n    endpoint: %s\n    protocol: http/protobuf\n    compression: none\n    interval: 1s\n", col.HTTPEndpoint)})
	ownerID := harness.RunContainer(t, append(scopeArgs(scope, owner), harness.WorkloadImage(t), "sleep")...)
	harness.RunContainer(t, append(scopeArgs(scope, member), "--network", "container:"+ownerID, harness.WorkloadImage(t), "sleep")...)
	if mode := harness.Docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", member); mode != "container:"+ownerID {
		t.Fatalf("member's NetworkMode = %q", mode)
	}

	for _, a := range []struct {
		name string
		*agent
	}{{"api", api}, {"cgroup", cg}} {
		// Both sampled: the member's stats are there, without interfaces.
		a.waitValue(t, 20*time.Second, "container_network_receive_bytes_total", owner, map[string]string{"interface": "eth0"}, func(float64) bool { return true })
		a.waitValue(t, 20*time.Second, "container_memory_working_set_bytes", member, nil, func(v float64) bool { return v > 0 })
		m := a.scrape(t)
		for _, name := range m.Names() {
			if !strings.HasPrefix(name, "container_network_") {
				continue
			}
			if got := m.FindAll(name, map[string]string{"name": member}); len(got) > 0 {
				t.Errorf("%s source: the namespace member has %s: %v", a.name, name, got)
			}
			if got := m.FindAll(name, map[string]string{"name": owner}); len(got) == 0 {
				t.Errorf("%s source: the namespace owner lacks %s", a.name, name)
			}
		}
	}

	// OTLP: container.network.io for the owner only.
	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		var ownerHas, memberSampled bool
		for _, rm := range col.ResourceMetrics(t) {
			_, hasNet := rm.Metric("container.network.io")
			_, sampled := rm.Metric("container.memory.working_set")
			switch rm.Resource.Str("container.name") {
			case owner:
				ownerHas = ownerHas || hasNet
			case member:
				if hasNet {
					t.Fatalf("OTLP: the namespace member has container.network.io")
				}
				memberSampled = memberSampled || sampled
			}
		}
		return ownerHas && memberSampled, fmt.Sprintf("OTLP: owner has container.network.io %v, member sampled %v", ownerHas, memberSampled)
	})
}

// TestContainerLastSeenAlert runs cAdvisor's ContainerKilled alert
// expression, time() - container_last_seen > 60, on a real Prometheus that
// scrapes the agent: it must pick out the removed container a minute after
// it went, and never the running or the stopped one, although the stopped
// one hears nothing from the Engine for longer than that (the resync
// interval is longer than the alert's 60 s).
func TestContainerLastSeenAlert(t *testing.T) {
	t.Parallel()
	scope := "lastseen"
	running, stopped, gone := uniq(t, "ls-running"), uniq(t, "ls-stopped"), uniq(t, "ls-gone")
	a := startAgent(t, agentOpts{scope: scope, resync: "5m"})
	for _, n := range []string{running, stopped, gone} {
		harness.RunContainer(t, append(scopeArgs(scope, n), harness.WorkloadImage(t), "sleep")...)
	}
	p := harness.Prometheus(t, strings.TrimPrefix(a.url, "http://"), time.Second)
	names := fmt.Sprintf("%s|%s|%s", running, stopped, gone)
	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		q := fmt.Sprintf(`container_memory_usage_bytes{name=~%q}`, names)
		res, err := p.TryQuery(q)
		return err == nil && len(res) == 3, fmt.Sprintf("%s: %v %v", q, res, err)
	})

	harness.Docker(t, "stop", "-t", "0", stopped)
	harness.Docker(t, "rm", "-f", gone)
	wentAt := time.Now()

	alert := fmt.Sprintf(`time() - container_last_seen{name=~%q} > 60`, names)
	age := fmt.Sprintf(`time() - container_last_seen{name=~%q}`, names)
	checkedGoneStaysVisible := false
	for {
		res, err := p.TryQuery(age)
		if err != nil {
			t.Fatal(err)
		}
		ages := map[string]float64{}
		for _, s := range res {
			ages[s.Labels["name"]] = s.Value
		}
		since := time.Since(wentAt)
		// The running and the stopped container are seen at every scrape.
		for _, n := range []string{running, stopped} {
			if v, ok := ages[n]; !ok || v > 5 {
				t.Fatalf("%s after the removal: %s has time() - container_last_seen = %v (present %v), want at most a few seconds", since.Round(time.Second), n, v, ok)
			}
		}
		if since > 10*time.Second && !checkedGoneStaysVisible {
			// Its other series went stale at once; this one, stamped, stays.
			if r, _ := p.TryQuery(fmt.Sprintf(`container_memory_usage_bytes{name=%q}`, gone)); len(r) != 0 {
				t.Errorf("the removed container's memory series is still there: %v", r)
			}
			if v, ok := ages[gone]; !ok || v < 5 {
				t.Fatalf("%s after the removal, the removed container's container_last_seen is %v (present %v): a stale series cannot fire the alert", since.Round(time.Second), v, ok)
			}
			checkedGoneStaysVisible = true
		}
		if since > 65*time.Second {
			break
		}
		time.Sleep(2 * time.Second)
	}
	res, err := p.TryQuery(alert)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Labels["name"] != gone {
		t.Fatalf("%s = %v, want the removed container %s only", alert, res, gone)
	}
	t.Logf("%s fires for %s, %.0f s after its last sample", alert, gone, res[0].Value)
}
