package otlp

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// encodeSnapshot encodes one container's metrics as a round does and
// decodes them with the protobuf library, which must find the same bytes
// it would have written.
func encodeSnapshot(t *testing.T, snap *pipeline.Snapshot, now time.Time) *metricspb.ResourceMetrics {
	t.Helper()
	var cm containerMetrics
	var enc metricEncoder
	buildMetrics(&cm, snap, now)
	enc.add(&snap.Meta, marshalScope("1.2.3"), &cm)
	var req colmetricspb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(enc.buf, &req); err != nil || len(req.ResourceMetrics) != 1 {
		t.Fatalf("the encoded request does not parse: %v (%d resources)", err, len(req.ResourceMetrics))
	}
	if again, _ := (proto.MarshalOptions{Deterministic: true}).Marshal(&req); !bytes.Equal(again, enc.buf) {
		t.Fatalf("the encoded request (%d bytes) differs from the protobuf library's (%d bytes)", len(enc.buf), len(again))
	}
	return req.ResourceMetrics[0]
}

// attrValue is the value of key among a data point's attributes.
func attrValue(dp *metricspb.NumberDataPoint, key string) string {
	for _, kv := range dp.Attributes {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

func testSnapshot() pipeline.Snapshot {
	start := time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)
	return pipeline.Snapshot{
		Meta: pipeline.ContainerMeta{
			ID: "abc", Name: "web", Image: "nginx:1.27", ImageName: "nginx", ImageTag: "1.27", ImageID: "sha256:1",
			Hostname: "node-1", ComposeProject: "shop", SwarmService: "shop_web", K8sPod: "web-0",
			Labels: map[string]string{"team": "shop"},
		},
		State: pipeline.ContainerState{Status: "running", Health: "healthy", RestartCount: 1, StartedAt: start},
		Spec:  pipeline.ContainerSpec{MemoryLimit: 1000},
		Stats: &pipeline.Stats{
			Read: start.Add(time.Minute), CPUUser: time.Second, CPUSystem: 2 * time.Second,
			CPUUsageCores: 0.25, HasCPUUsage: true, MemoryUsage: 900, MemoryWorkingSet: 600, MemoryRSS: 500,
			Networks: []pipeline.NetworkStats{{Interface: "eth0", RxBytes: 10, TxBytes: 20}},
			Disks:    []pipeline.DiskStats{{Device: "8:0", ReadBytes: 1, WriteBytes: 2}},
		},
	}
}

func TestResourceMetrics(t *testing.T) {
	snap := testSnapshot()
	now := snap.State.StartedAt.Add(90 * time.Second)
	rm := encodeSnapshot(t, &snap, now)

	attrs := map[string]string{}
	for _, kv := range rm.Resource.Attributes {
		attrs[kv.Key] = kv.Value.GetStringValue()
		if a := kv.Value.GetArrayValue(); a != nil {
			attrs[kv.Key] = fmt.Sprintf("%q", []string{a.Values[0].GetStringValue()})
		}
	}
	for k, want := range map[string]string{
		"container.id": "abc", "container.name": "web", "container.image.name": "nginx",
		"container.image.tags": `["1.27"]`, "container.runtime.name": "docker", "host.name": "node-1",
		"docker.compose.project": "shop", "docker.swarm.service.name": "shop_web", "k8s.pod.name": "web-0",
		"container.label.team": "shop",
	} {
		if attrs[k] != want {
			t.Errorf("resource %s = %q, want %q", k, attrs[k], want)
		}
	}
	if _, ok := attrs["docker.compose.service"]; ok {
		t.Error("empty identity attributes must be left out")
	}

	byName := map[string]*metricspb.Metric{}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if _, dup := byName[m.Name]; dup {
			t.Errorf("metric %s emitted twice", m.Name)
		}
		byName[m.Name] = m
	}
	for _, name := range []string{
		"container.uptime", "container.cpu.time", "container.cpu.usage", "container.memory.usage",
		"container.memory.working_set", "container.memory.rss", "container.memory.available",
		"container.network.io", "container.disk.io", "container.restarts", "container.state",
		"container.health.status",
	} {
		if _, ok := byName[name]; !ok {
			t.Errorf("metric %s missing", name)
		}
	}
	if u := byName["container.cpu.usage"]; u.Unit != "{cpu}" {
		t.Errorf("container.cpu.usage unit = %q, want cores ({cpu})", u.Unit)
	}
	cpu := byName["container.cpu.time"].GetSum()
	if !cpu.IsMonotonic || cpu.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE || len(cpu.DataPoints) != 2 {
		t.Fatalf("container.cpu.time = %+v", cpu)
	}
	for _, dp := range cpu.DataPoints {
		mode := attrValue(dp, "cpu.mode")
		want := map[string]float64{"user": 1, "system": 2}[mode]
		if dp.GetAsDouble() != want || dp.StartTimeUnixNano != uint64(snap.State.StartedAt.UnixNano()) {
			t.Errorf("cpu.time{%s} = %v from %v, want %v from the container start", mode, dp.GetAsDouble(), dp.StartTimeUnixNano, want)
		}
	}
	if mem := byName["container.memory.usage"].GetSum(); mem == nil || mem.IsMonotonic {
		t.Errorf("container.memory.usage = %v, want a non-monotonic sum", mem)
	}
	avail := byName["container.memory.available"].GetSum().DataPoints[0].GetAsDouble()
	if avail != 400 {
		t.Errorf("memory.available = %v, want limit 1000 - working set 600", avail)
	}
	uptime := byName["container.uptime"].GetGauge().DataPoints[0].GetAsDouble()
	if uptime != 90 {
		t.Errorf("uptime = %v, want 90", uptime)
	}
	var healthy float64 = -1
	for _, dp := range byName["container.health.status"].GetGauge().DataPoints {
		if attrValue(dp, "container.health.status") == "healthy" {
			healthy = dp.GetAsDouble()
		}
	}
	if healthy != 1 {
		t.Errorf("health.status{healthy} = %v, want 1", healthy)
	}
}

func TestResourceMetricsStoppedContainer(t *testing.T) {
	snap := testSnapshot()
	snap.State.Status = "exited"
	snap.State.FinishedAt = snap.State.StartedAt.Add(time.Second)
	snap.Stats = nil
	rm := encodeSnapshot(t, &snap, time.Now())
	names := map[string]bool{}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		names[m.Name] = true
	}
	if names["container.uptime"] || names["container.cpu.time"] {
		t.Errorf("a stopped container reports uptime or usage: %v", names)
	}
	if !names["container.last_exit_code"] || !names["container.state"] {
		t.Errorf("a stopped container must report its state and exit code: %v", names)
	}
}

func TestHTTPMetricsURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://collector:4318":      "http://collector:4318/v1/metrics",
		"https://otel.example/base/": "https://otel.example/base/v1/metrics",
		"collector:4318":             "https://collector:4318/v1/metrics",
	} {
		cfg := config.OTLPConfig{Endpoint: in, Protocol: ProtocolHTTP}
		got, err := resolveTarget(cfg, func(string) string { return "" }, signalMetrics)
		if err != nil || got.endpoint != want {
			t.Errorf("metrics endpoint of %q = %q, %v; want %q", in, got.endpoint, err, want)
		}
	}
}

func TestProtocolPrecedence(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if p := protocol(config.OTLPConfig{}, getenv); p != ProtocolHTTP {
		t.Errorf("default = %q, want the specification's http/protobuf", p)
	}
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
	if p := protocol(config.OTLPConfig{}, getenv); p != ProtocolGRPC {
		t.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL ignored: %q", p)
	}
	env["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] = "http/protobuf"
	if p := protocol(config.OTLPConfig{}, getenv); p != ProtocolHTTP {
		t.Errorf("the signal-specific variable must win: %q", p)
	}
	if p := protocol(config.OTLPConfig{Protocol: "grpc"}, getenv); p != ProtocolGRPC {
		t.Errorf("the config file must win over the environment: %q", p)
	}
}

// Podman's Docker-compatible API is named as such, not as Docker.
func TestResourceRuntimeName(t *testing.T) {
	for _, tc := range []struct{ runtime, want string }{{"", "docker"}, {"docker", "docker"}, {"podman", "podman"}} {
		m := pipeline.ContainerMeta{ID: "abc", Runtime: tc.runtime}
		got := ""
		for _, kv := range containerResource(&m).Attributes {
			if kv.Key == "container.runtime.name" {
				got = kv.Value.GetStringValue()
			}
		}
		if got != tc.want {
			t.Errorf("Runtime %q: container.runtime.name = %q, want %q", tc.runtime, got, tc.want)
		}
	}
}

// A container without a cgroup of its own (rootless Docker on cgroup v1)
// exports its network I/O and nothing of CPU, memory, pids or disks.
func TestResourceMetricsNetworkOnly(t *testing.T) {
	snap := testSnapshot()
	snap.Spec = pipeline.ContainerSpec{}
	snap.Stats = &pipeline.Stats{Read: snap.State.StartedAt.Add(time.Minute), NetworkOnly: true,
		Networks: []pipeline.NetworkStats{{Interface: "eth0", RxBytes: 10, TxBytes: 20}}}
	rm := encodeSnapshot(t, &snap, snap.State.StartedAt.Add(90*time.Second))
	names := map[string]bool{}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		names[m.Name] = true
	}
	if !names["container.network.io"] || !names["container.uptime"] {
		t.Errorf("network I/O and uptime missing: %v", names)
	}
	for _, n := range []string{"container.cpu.time", "container.cpu.usage", "container.memory.usage",
		"container.memory.working_set", "container.memory.rss", "container.pids", "container.disk.io"} {
		if names[n] {
			t.Errorf("%s exported for a container without a cgroup", n)
		}
	}
}
