package prometheus

import (
	"bytes"
	"context"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dockscope/dockscope/pipeline"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testStore holds a running container with stats and allow-listed labels,
// and an exited one without, as the collector would leave them.
func testStore(t *testing.T) *pipeline.Store {
	t.Helper()
	s := pipeline.NewStore()
	started := time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)
	s.Upsert(pipeline.ContainerMeta{
		ID: "aaa", CgroupPath: "/docker/aaa", Name: "web", Image: "ghcr.io/acme/web:1.2",
		ImageName: "ghcr.io/acme/web", ImageTag: "1.2", ImageID: "sha256:1", Hostname: "node-1",
		ComposeProject: "shop", ComposeService: "web",
		Labels: map[string]string{"team": "shop", "com.acme/tier": "front"},
	}, pipeline.ContainerState{Status: "running", Health: "unhealthy", RestartCount: 2, StartedAt: started},
		pipeline.ContainerSpec{MemoryLimit: 64 << 20, CPUQuota: 50000, CPUPeriod: 100000, CPUShares: 1024})
	s.SetStats("aaa", pipeline.Stats{
		Read: started.Add(time.Minute), CPUTotal: 1500 * time.Millisecond, CPUUser: time.Second, CPUSystem: 500 * time.Millisecond,
		CPUPeriods: 10, CPUThrottledPeriods: 3, CPUThrottledTime: 250 * time.Millisecond,
		MemoryUsage: 3000, MemoryWorkingSet: 2000, MemoryRSS: 1500, MemoryCache: 1000, MemoryFailcnt: 4,
		Pids:     7,
		Networks: []pipeline.NetworkStats{{Interface: "eth0", RxBytes: 10, RxPackets: 1, TxBytes: 20, TxPackets: 2}},
		Disks:    []pipeline.DiskStats{{Device: "8:0", ReadBytes: 4096, WriteBytes: 8192, Reads: 1, Writes: 2, HasOps: true}},
	})
	logs := s.LogCounters("aaa")
	logs.LinesRead.Add(10)
	logs.BytesRead.Add(700)
	logs.LinesShipped.Add(8)
	logs.BytesShipped.Add(560)
	logs.LastRead.Store(started.Add(3 * time.Second).UnixNano())
	logs.LastShipped.Store(started.Add(time.Second).UnixNano())
	s.RecordEvent("aaa", "start", time.Now())
	s.RecordEvent("aaa", "oom", time.Now())
	s.Upsert(pipeline.ContainerMeta{
		ID: "bbb", CgroupPath: "/docker/bbb", Name: "job", Image: "busybox", ImageName: "busybox", ImageTag: "latest", Hostname: "node-1",
		Labels: map[string]string{"team": "data"},
	}, pipeline.ContainerState{Status: "exited", ExitCode: 3, StartedAt: started, FinishedAt: started.Add(time.Second)},
		pipeline.ContainerSpec{CPUShares: 1024})
	// A Swarm task whose identity label is also allow-listed: it must
	// appear once. And a Kubernetes container (cri-dockerd).
	s.Upsert(pipeline.ContainerMeta{
		ID: "ccc", CgroupPath: "/docker/ccc", Name: "shop_api.1.x7", Image: "api:2", ImageName: "api", ImageTag: "2", Hostname: "node-1",
		SwarmStack: "shop", SwarmService: "shop_api", SwarmTask: "shop_api.1.x7", SwarmNodeID: "n0de",
		Labels: map[string]string{"com.docker.swarm.service.name": "shop_api"},
	}, pipeline.ContainerState{Status: "running", StartedAt: started}, pipeline.ContainerSpec{CPUShares: 1024})
	s.Upsert(pipeline.ContainerMeta{
		ID: "ddd", CgroupPath: "/kubepods/ddd", Name: "k8s_app_web-0_prod_uid_0", Image: "app:1", ImageName: "app", ImageTag: "1", Hostname: "node-1",
		K8sPod: "web-0", K8sNamespace: "prod", K8sContainer: "app",
	}, pipeline.ContainerState{Status: "running", StartedAt: started}, pipeline.ContainerSpec{CPUShares: 1024})
	s.SetServices([]pipeline.ServiceReplicas{
		{ID: "s1", Name: "shop_api", Stack: "shop", Mode: "replicated", Desired: 3, Running: 2},
		{ID: "s2", Name: "agent", Mode: "global", Desired: 1, Running: 1},
	})
	return s
}

// scrape renders the container series, with container_last_seen removed
// because it holds the wall clock.
func scrape(t *testing.T, c *ContainerCollector) string {
	t.Helper()
	var buf bytes.Buffer
	if err := c.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if !strings.Contains(line, "container_last_seen") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// gather renders a client_golang collector in the text format.
func gather(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if mf.GetName() == "container_last_seen" {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

func TestContainerMetricsGolden(t *testing.T) {
	got := scrape(t, NewContainerCollector(testStore(t)))
	const golden = "testdata/containers.prom"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("scrape differs from %s (run `go test ./exporters/prometheus -update` and review the diff):\n%s", golden, got)
	}
}

func TestContainerMetricsParseAndLint(t *testing.T) {
	var buf bytes.Buffer
	if err := NewContainerCollector(testStore(t)).WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	// The standard parser must accept it (one block per family, escaping).
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("text output does not parse: %v", err)
	}
	if got := len(mfs["container_state"].GetMetric()); got != 28 {
		t.Errorf("container_state has %d series, want 7 states × 4 containers", got)
	}
	// Orchestrator identity is on every series of the containers that
	// have it, once, and on no other container's.
	for _, m := range mfs["container_memory_oom_kills_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			if _, dup := labels[l.GetName()]; dup {
				t.Errorf("label %s twice on %v", l.GetName(), m)
			}
			labels[l.GetName()] = l.GetValue()
		}
		switch labels["id"] {
		case "/docker/ccc":
			if labels["container_label_com_docker_swarm_service_name"] != "shop_api" || labels["container_label_com_docker_swarm_node_id"] != "n0de" ||
				labels["container_label_com_docker_swarm_task_name"] != "shop_api.1.x7" || labels["container_label_com_docker_stack_namespace"] != "shop" {
				t.Errorf("swarm task's labels: %v", labels)
			}
		case "/kubepods/ddd":
			if labels["namespace"] != "prod" || labels["pod"] != "web-0" || labels["container"] != "app" {
				t.Errorf("kubernetes container's labels: %v", labels)
			}
		default:
			if _, ok := labels["namespace"]; ok {
				t.Errorf("a plain container has a namespace label: %v", labels)
			}
			if _, ok := labels["container_label_com_docker_swarm_service_name"]; ok {
				t.Errorf("a plain container has a swarm label: %v", labels)
			}
		}
	}
	problems, err := promlint.New(bytes.NewReader(buf.Bytes())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestOddLabelValuesAreEscaped(t *testing.T) {
	s := pipeline.NewStore()
	s.Upsert(pipeline.ContainerMeta{ID: "x", CgroupPath: "/docker/x", Name: "odd", Image: "i",
		Labels: map[string]string{"note": "a \"quoted\" \\ back\nslash \xff"}}, pipeline.ContainerState{Status: "exited"}, pipeline.ContainerSpec{})
	var buf bytes.Buffer
	NewContainerCollector(s).WriteText(&buf)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("odd label does not parse: %v", err)
	}
	for _, lp := range mfs["container_info"].GetMetric()[0].GetLabel() {
		if lp.GetName() == "container_label_note" && lp.GetValue() != "a \"quoted\" \\ back\nslash \uFFFD" {
			t.Errorf("label value round-tripped as %q", lp.GetValue())
		}
	}
}

func TestRemovedContainerSeriesVanish(t *testing.T) {
	s := testStore(t)
	c := NewContainerCollector(s)
	if !strings.Contains(scrape(t, c), `name="job"`) {
		t.Fatal("exited container missing before removal")
	}
	s.Remove("bbb")
	out := scrape(t, c)
	if strings.Contains(out, `name="job"`) {
		t.Error("removed container still has series")
	}
	// The label column only the removed container had disappears too,
	// while the surviving container keeps its own.
	if !strings.Contains(out, `container_label_team="shop"`) {
		t.Error("surviving container lost its allow-listed label")
	}
}

func TestSanitizeLabelName(t *testing.T) {
	for in, want := range map[string]string{
		"com.docker.compose.project": "com_docker_compose_project",
		"a/b-c d":                    "a_b_c_d",
		"ok_123":                     "ok_123",
		"ünïcode":                    "_n_code",
	} {
		if got := sanitizeLabelName(in); got != want {
			t.Errorf("sanitizeLabelName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSelfMetrics(t *testing.T) {
	tel := pipeline.NewTelemetry()
	tel.SetDaemon(pipeline.DaemonInfo{Version: "20.10.24", APIVersion: "1.41", OSType: "linux", CgroupVer: "1"})
	tel.SetEngineUp(true)
	tel.Stage(pipeline.StageStats).In.Add(5)
	tel.Stage(pipeline.StageStats).Dropped.Add(1)
	c := NewSelfCollector(tel, testStore(t), BuildInfo{Version: "1.0.0", Revision: "abc", GoVersion: "go1.26"})
	out := gather(t, c)
	for _, want := range []string{
		`dockscope_build_info{goversion="go1.26",revision="abc",version="1.0.0"} 1`,
		`dockscope_docker_info{api_version="1.41",cgroup_version="1",os_type="linux",version="20.10.24"} 1`,
		`dockscope_docker_up 1`,
		`dockscope_containers 4`,
		`dockscope_records_received_total{stage="stats"} 5`,
		`dockscope_records_dropped_total{stage="stats"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestLastSeenIsStampedWithTheScrapeTime: every container the agent knows,
// running or stopped, is seen at the scrape's time and carries that time
// as its sample timestamp, so `time() - container_last_seen > 60` never
// fires for it; a removed container's series is gone, and the timestamp
// keeps Prometheus from marking it stale, so its last value ages and the
// alert fires (see the comment at famLastSeen's emission).
func TestLastSeenIsStampedWithTheScrapeTime(t *testing.T) {
	s := testStore(t)
	c := NewContainerCollector(s)
	now := time.Date(2026, 12, 7, 13, 0, 0, 250e6, time.UTC)
	c.now = func() time.Time { return now }
	seen := func() map[string]*dto.Metric {
		t.Helper()
		var buf bytes.Buffer
		if err := c.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		mfs, err := parser.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
		out := map[string]*dto.Metric{}
		for _, m := range mfs["container_last_seen"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" {
					out[l.GetValue()] = m
				}
			}
		}
		// Only container_last_seen is stamped.
		for name, mf := range mfs {
			if name == "container_last_seen" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.TimestampMs != nil {
					t.Fatalf("%s carries a timestamp", name)
				}
			}
		}
		return out
	}
	got := seen()
	for _, name := range []string{"web", "job"} { // running, exited
		m, ok := got[name]
		if !ok {
			t.Fatalf("no container_last_seen for %s", name)
		}
		if m.GetGauge().GetValue() != float64(now.Unix()) || m.GetTimestampMs() != now.UnixMilli() {
			t.Errorf("%s: container_last_seen %v @%d, want %d @%d", name, m.GetGauge().GetValue(), m.GetTimestampMs(), now.Unix(), now.UnixMilli())
		}
	}
	// A stopped container hears nothing from the Engine for minutes; it is
	// still seen at every scrape.
	now = now.Add(10 * time.Minute)
	if m := seen()["job"]; m == nil || m.GetGauge().GetValue() != float64(now.Unix()) {
		t.Errorf("stopped container 10 minutes later: %v, want %d", m, now.Unix())
	}
	s.Remove("bbb")
	if _, ok := seen()["job"]; ok {
		t.Error("a removed container is still seen")
	}
}

// TestScrapeRefreshesTheStore: a scrape asks the store's refresher for
// current counters before it renders them.
func TestScrapeRefreshesTheStore(t *testing.T) {
	s := pipeline.NewStore()
	s.Upsert(pipeline.ContainerMeta{ID: "a", CgroupPath: "/docker/a", Name: "burn", Image: "i"}, pipeline.ContainerState{Status: "running"}, pipeline.ContainerSpec{})
	read := time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)
	s.SetStats("a", pipeline.Stats{Read: read, CPUTotal: time.Second})
	remove := s.SetRefresher(func(context.Context) {
		read = read.Add(5 * time.Second)
		s.SetStats("a", pipeline.Stats{Read: read, CPUTotal: 6 * time.Second})
	})
	defer remove()
	if out := scrape(t, NewContainerCollector(s)); !strings.Contains(out, `container_cpu_usage_seconds_total{id="/docker/a",name="burn",image="i",cpu="total"} 6`+"\n") {
		t.Errorf("the scrape did not serve the refreshed counter:\n%s", out)
	}
}

// A container without a cgroup of its own (rootless Docker on cgroup v1)
// has network series and none of CPU, memory, pids or block I/O: those
// numbers would be the daemon's whole cgroup's.
func TestNetworkOnlyStatsExportOnlyNetworkSeries(t *testing.T) {
	s := pipeline.NewStore()
	s.Upsert(pipeline.ContainerMeta{ID: "rrr", CgroupPath: "/docker/rrr", Name: "rootless", Image: "app:1"},
		pipeline.ContainerState{Status: "running", StartedAt: time.Now()}, pipeline.ContainerSpec{})
	s.SetStats("rrr", pipeline.Stats{Read: time.Now(), NetworkOnly: true,
		Networks: []pipeline.NetworkStats{{Interface: "eth0", RxBytes: 10, TxBytes: 20}}})
	out := scrape(t, NewContainerCollector(s))
	for _, want := range []string{`container_network_receive_bytes_total{`, `container_network_transmit_bytes_total{`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s...} series:\n%s", want, out)
		}
	}
	for _, absent := range []string{"container_cpu_usage_seconds_total", "container_cpu_user_seconds_total",
		"container_memory_usage_bytes", "container_memory_working_set_bytes", "container_memory_rss",
		"container_memory_failcnt", "container_pids", "container_fs_reads_bytes_total"} {
		for line := range strings.SplitSeq(out, "\n") {
			if strings.HasPrefix(line, absent+"{") {
				t.Errorf("series of a container without a cgroup: %s", line)
			}
		}
	}
}
