//go:build integration

package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// TestCadvisorSpecAndMemorySeries runs a container with --memory,
// --memory-reservation and --memory-swap and reads cAdvisor's spec, memory
// detail and machine series from two agents, one on the Engine API and one
// on the cgroup files, and through a real Prometheus.
func TestCadvisorSpecAndMemorySeries(t *testing.T) {
	harness.SkipWithoutCgroups(t)
	harness.SkipOnPodman(t, "the memory.stat keys Podman's stats API passes through differ from Docker's")
	t.Parallel()
	scope, name := "cadv", uniq(t, "cadv")
	v2 := harness.Docker(t, "info", "--format", "{{.CgroupVersion}}") == "2"
	ncpu, err := strconv.Atoi(harness.Docker(t, "info", "--format", "{{.NCPU}}"))
	if err != nil {
		t.Fatal(err)
	}
	engineVersion := harness.Docker(t, "version", "--format", "{{.Server.Version}}")
	before := time.Now().Add(-time.Second)
	harness.RunContainer(t, append(scopeArgs(scope, name), "--memory", "64m", "--memory-reservation", "32m", "--memory-swap", "128m",
		"--cpus", "0.5", harness.WorkloadImage(t), "alloc", "-mb", "24")...)

	versionInfo := "exporters:\n  prometheus:\n    cadvisor_version_info: true\n"
	api := startAgent(t, agentOpts{scope: scope, stats: "  source: api\n", extra: versionInfo})
	cg := startAgent(t, agentOpts{scope: scope, stats: "  source: cgroup\n"})

	// cAdvisor's swap limit is the cgroup's: memory+swap on v1, swap alone on v2.
	wantSwap := float64(128 << 20)
	if v2 {
		wantSwap = 64 << 20
	}
	for src, a := range map[string]*agent{"api": api, "cgroup": cg} {
		a.waitValue(t, 20*time.Second, "container_memory_working_set_bytes", name, nil, func(v float64) bool { return v >= 24<<20 })
		m := a.scrape(t)
		find := func(metric string, labels map[string]string) (float64, bool) {
			want := map[string]string{"name": name}
			for k, v := range labels {
				want[k] = v
			}
			s, ok := m.Find(metric, want)
			return s.Value, ok
		}
		expect := func(metric string, labels map[string]string, cond func(float64) bool, what string) {
			t.Helper()
			if v, ok := find(metric, labels); !ok || !cond(v) {
				t.Errorf("%s: %s%v = %v (present %v), want %s", src, metric, labels, v, ok, what)
			}
		}
		absent := func(metric string) {
			t.Helper()
			if v, ok := find(metric, nil); ok {
				t.Errorf("%s: %s = %v exported, the source has no such value", src, metric, v)
			}
		}
		expect("container_spec_memory_swap_limit_bytes", nil, func(v float64) bool { return v == wantSwap }, fmt.Sprint(wantSwap))
		expect("container_spec_memory_reservation_limit_bytes", nil, func(v float64) bool { return v == 32<<20 }, "32 MiB")
		expect("container_creation_time_seconds", nil, func(v float64) bool {
			return v >= float64(before.Unix()) && v <= float64(time.Now().Unix())
		}, "the container's creation")
		expect("container_memory_total_inactive_file_bytes", nil, func(v float64) bool { return v >= 0 }, "present")
		expect("container_memory_mapped_file", nil, func(v float64) bool { return v >= 0 }, "present")
		// The workload's 24 MiB were touched page by page: many minor faults.
		expect("container_memory_failures_total", map[string]string{"failure_type": "pgfault", "scope": "hierarchy"},
			func(v float64) bool { return v >= 24<<20/4096 }, "a fault per page at least")
		expect("container_memory_failures_total", map[string]string{"failure_type": "pgmajfault", "scope": "container"},
			func(v float64) bool { return v >= 0 }, "present")
		if !v2 || src == "cgroup" {
			expect("container_memory_max_usage_bytes", nil, func(v float64) bool { return v >= 24<<20 && v <= 64<<20 }, "24 to 64 MiB")
		} else {
			absent("container_memory_max_usage_bytes") // the v2 API has no max_usage
		}
		if v2 && src == "cgroup" {
			expect("container_pressure_memory_waiting_seconds_total", nil, func(v float64) bool { return v >= 0 }, "present")
			expect("container_memory_events_max_total", nil, func(v float64) bool { return v >= 0 }, "present")
		} else {
			absent("container_pressure_memory_waiting_seconds_total")
			absent("container_memory_events_max_total")
		}
		if s, ok := m.Find("machine_cpu_cores", nil); !ok || s.Value != float64(ncpu) {
			t.Errorf("%s: machine_cpu_cores = %v (present %v), want the Engine's NCPU %d", src, s.Value, ok, ncpu)
		}
		if s, ok := m.Find("machine_memory_bytes", nil); !ok || s.Value < 1<<28 {
			t.Errorf("%s: machine_memory_bytes = %v (present %v)", src, s.Value, ok)
		}
	}
	if s, ok := api.scrape(t).Find("cadvisor_version_info", map[string]string{"dockerVersion": engineVersion}); !ok || s.Value != 1 {
		t.Errorf("cadvisor_version_info{dockerVersion=%q} = %v (present %v)", engineVersion, s.Value, ok)
	}
	if _, ok := cg.scrape(t).Find("cadvisor_version_info", nil); ok {
		t.Error("cadvisor_version_info exported without prometheus.cadvisor_version_info")
	}

	// promtool's lint finds nothing in the default output but cAdvisor's
	// own names; with cadvisor_version_info on, also that series'
	// camelCase label names, which dashboards read as cAdvisor spells them.
	_, body := cg.get("/metrics")
	harness.CheckMetrics(t, body)
	_, body = api.get("/metrics")
	harness.CheckMetrics(t, body, "cadvisor_version_info label names should be written in 'snake_case'")

	// What a dashboard queries, through a real Prometheus.
	p := harness.Prometheus(t, strings.TrimPrefix(cg.url, "http://"), time.Second)
	for query, want := range map[string]float64{
		fmt.Sprintf(`container_spec_memory_swap_limit_bytes{name=%q}`, name):        wantSwap,
		fmt.Sprintf(`container_spec_memory_reservation_limit_bytes{name=%q}`, name): 32 << 20,
		`machine_cpu_cores`: float64(ncpu),
	} {
		harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
			res, err := p.TryQuery(query)
			if err != nil {
				return false, err.Error()
			}
			return len(res) == 1 && res[0].Value == want, fmt.Sprintf("%s = %v, want %v", query, res, want)
		})
	}
}

// TestPerCPUUsageOption: with stats.per_cpu on a cgroup v1 host,
// container_cpu_usage_seconds_total comes per CPU (cpu="cpu00", ...) instead
// of cpu="total", as cAdvisor's; off (the default) it is cpu="total" only.
func TestPerCPUUsageOption(t *testing.T) {
	harness.SkipWithoutCgroups(t)
	if harness.Docker(t, "info", "--format", "{{.CgroupVersion}}") == "2" {
		t.Skip("cgroup v2 has no per-CPU usage")
	}
	t.Parallel()
	scope, name := "percpu", uniq(t, "percpu")
	harness.RunContainer(t, append(scopeArgs(scope, name), "--cpus", "0.2", harness.WorkloadImage(t), "burn", "-cores", "1")...)
	for _, source := range []string{"api", "cgroup"} {
		a := startAgent(t, agentOpts{scope: scope, stats: "  source: " + source + "\n  per_cpu: true\n"})
		a.waitValue(t, 20*time.Second, "container_memory_usage_bytes", name, nil, func(float64) bool { return true })
		harness.WaitFor(t, 20*time.Second, 300*time.Millisecond, func() (bool, string) {
			all := a.scrape(t).FindAll("container_cpu_usage_seconds_total", map[string]string{"name": name})
			var cpus []string
			sum := 0.0
			for _, s := range all {
				cpus = append(cpus, s.Labels["cpu"])
				sum += s.Value
			}
			for _, c := range cpus {
				if len(c) != 5 || !strings.HasPrefix(c, "cpu") {
					return false, fmt.Sprintf("%s: cpu labels %v, want cpuNN only", source, cpus)
				}
			}
			return len(cpus) > 0 && sum > 0, fmt.Sprintf("%s: cpu labels %v, sum %v", source, cpus, sum)
		})
	}
	off := startAgent(t, agentOpts{scope: scope})
	v := off.waitValue(t, 20*time.Second, "container_cpu_usage_seconds_total", name, map[string]string{"cpu": "total"}, func(v float64) bool { return v > 0 })
	if n := len(off.scrape(t).FindAll("container_cpu_usage_seconds_total", map[string]string{"name": name})); n != 1 {
		t.Errorf("per_cpu off: %d series, want cpu=\"total\" only (%v)", n, v)
	}
}

// TestOTLPDockerStatsParity: the docker_stats receiver's metrics people
// migrate from have their dockscope equivalent at a real OTel Collector,
// with the container's limits as values.
func TestOTLPDockerStatsParity(t *testing.T) {
	harness.SkipWithoutCgroups(t)
	t.Parallel()
	col := harness.Otelcol(t)
	scope, name := "otlp-parity", uniq(t, "parity")
	startAgent(t, agentOpts{scope: scope, extra: fmt.Sprintf("exporters:\n  otlp:\n    endpoint: %s\n    protocol: http/protobuf\n    interval: 1s\n", col.HTTPEndpoint)})
	harness.RunContainer(t, append(scopeArgs(scope, name), "--memory", "64m", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "50",
		harness.WorkloadImage(t), "alloc", "-mb", "16")...)

	type check struct {
		unit  string
		kind  string // gauge, sum, counter (monotonic sum)
		attrs map[string]string
		ok    func(float64) bool
	}
	checks := map[string]check{
		"container.cpu.shares":             {"1", "gauge", nil, func(v float64) bool { return v == 512 }},
		"container.cpu.limit":              {"{cpu}", "gauge", nil, func(v float64) bool { return v == 0.5 }},
		"container.cpu.periods":            {"{period}", "counter", nil, func(v float64) bool { return v >= 0 }},
		"container.pids.limit":             {"{process}", "sum", nil, func(v float64) bool { return v == 50 }},
		"container.memory.file":            {"By", "sum", nil, func(v float64) bool { return v >= 0 }},
		"container.memory.utilization":     {"1", "gauge", nil, func(v float64) bool { return v >= 0.25 && v <= 1 }},
		"container.memory.paging.faults":   {"{fault}", "counter", map[string]string{"system.paging.fault.type": "minor"}, func(v float64) bool { return v >= 16<<20/4096 }},
		"container.network.packet.count":   {"{packet}", "counter", map[string]string{"network.io.direction": "receive", "network.interface.name": "eth0"}, func(v float64) bool { return v >= 0 }},
		"container.network.packet.dropped": {"{packet}", "counter", map[string]string{"network.io.direction": "transmit"}, func(v float64) bool { return v >= 0 }},
		"container.network.errors":         {"{error}", "counter", map[string]string{"network.io.direction": "receive"}, func(v float64) bool { return v >= 0 }},
	}
	if harness.Docker(t, "info", "--format", "{{.CgroupVersion}}") != "2" {
		// v1's high-water mark and failcnt, whichever stats source.
		checks["container.memory.peak"] = check{"By", "sum", nil, func(v float64) bool { return v >= 16<<20 }}
		checks["container.memory.fails"] = check{"{fail}", "counter", nil, func(v float64) bool { return v >= 0 }}
	}
	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		var problems []string
		for _, rm := range col.ResourceMetrics(t) {
			if rm.Resource.Str("container.name") != name {
				continue
			}
			if _, sampled := rm.Metric("container.memory.usage"); !sampled {
				continue // exported before the first stats sample
			}
			problems = problems[:0]
			for metric, c := range checks {
				m, ok := rm.Metric(metric)
				if !ok {
					problems = append(problems, "missing "+metric)
					continue
				}
				kind := m.Type
				if m.Type == "sum" && m.Monotonic {
					kind = "counter"
				}
				p, ok := m.Point(c.attrs)
				if m.Unit != c.unit || kind != c.kind || !ok || !c.ok(p.Value) || (m.Type == "sum" && m.Temporality != "cumulative") {
					problems = append(problems, fmt.Sprintf("%s: unit %q kind %s temporality %q point%v %v (%v)", metric, m.Unit, kind, m.Temporality, c.attrs, p.Value, ok))
				}
			}
			if len(problems) == 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no complete resource for %s yet: %v", name, problems)
	})
}
