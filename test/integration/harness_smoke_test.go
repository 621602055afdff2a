//go:build integration

package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// TestSmokeWorkloadContainer checks the workload image and container helpers:
// a container that logs three lines (the second to stderr) and exits.
func TestSmokeWorkloadContainer(t *testing.T) {
	img := harness.WorkloadImage(t)
	id := harness.RunContainer(t, img, "log", "-lines", "3", "-stderr-every", "2", "-then", "exit")
	harness.WaitFor(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		st := harness.Docker(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id)
		return st == "exited 0", "container state: " + st
	})
	stdout := harness.Docker(t, "logs", id) // docker logs writes the container's stderr to its stderr
	if want := "line 1\nline 3"; stdout != want {
		t.Errorf("docker logs stdout = %q, want %q", stdout, want)
	}
	both := harness.Docker(t, "logs", "--details", id)
	if !strings.Contains(both, "line 1") {
		t.Errorf("docker logs --details = %q", both)
	}
}

// TestSmokeWorkloadHealth checks the health-check image: unhealthy without the
// file, healthy after `workload touch`.
func TestSmokeWorkloadHealth(t *testing.T) {
	img := harness.WorkloadHealthImage(t)
	id := harness.RunContainer(t, img, "sleep")
	health := func(want string) {
		t.Helper()
		harness.WaitFor(t, 30*time.Second, 200*time.Millisecond, func() (bool, string) {
			st := harness.Docker(t, "inspect", "-f", "{{.State.Health.Status}}", id)
			return st == want, fmt.Sprintf("health %q, want %q", st, want)
		})
	}
	health("unhealthy")
	harness.Docker(t, "exec", id, "/workload", "touch", harness.HealthFile)
	health("healthy")
	harness.Docker(t, "exec", id, "/workload", "rm", harness.HealthFile)
	health("unhealthy")
	start := time.Now()
	// -t 10 is Docker's default; Podman's Docker API (4.3) takes a missing
	// t as 0 and kills at once (exit 137).
	harness.Docker(t, "stop", "-t", "10", id)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("docker stop took %v: SIGTERM not handled", d)
	}
	if code := harness.Docker(t, "inspect", "-f", "{{.State.ExitCode}}", id); code != "0" {
		t.Errorf("exit code after docker stop = %s, want 0", code)
	}
}

// TestSmokeOtelcol starts the collector, sends it one metric and one log
// record over OTLP/HTTP JSON, and reads them back from the file exporter.
func TestSmokeOtelcol(t *testing.T) {
	c := harness.Otelcol(t)
	post := func(path, body string) {
		t.Helper()
		resp, err := httpPostJSON(c.HTTPEndpoint+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if resp != 200 {
			t.Fatalf("POST %s: status %d", path, resp)
		}
	}
	now := time.Now().UnixNano()
	post("/v1/metrics", fmt.Sprintf(`{"resourceMetrics":[{"resource":{"attributes":[
		{"key":"container.id","value":{"stringValue":"abc"}},
		{"key":"container.image.tags","value":{"arrayValue":{"values":[{"stringValue":"1.0"},{"stringValue":"latest"}]}}}]},
		"scopeMetrics":[{"scope":{"name":"smoke"},"metrics":[
		{"name":"container.memory.usage","unit":"By","gauge":{"dataPoints":[{"asInt":"42","timeUnixNano":"%d"}]}},
		{"name":"container.cpu.time","unit":"s","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[
			{"asDouble":1.5,"timeUnixNano":"%d","attributes":[{"key":"cpu.mode","value":{"stringValue":"user"}}]}]}}]}]}]}`, now, now))
	post("/v1/logs", fmt.Sprintf(`{"resourceLogs":[{"resource":{"attributes":[{"key":"container.id","value":{"stringValue":"abc"}}]},
		"scopeLogs":[{"scope":{"name":"smoke"},"logRecords":[{"timeUnixNano":"%d","body":{"stringValue":"hello"},
		"attributes":[{"key":"log.iostream","value":{"stringValue":"stderr"}}]}]}]}]}`, now))

	harness.WaitFor(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
		rms, rls := c.ResourceMetrics(t), c.ResourceLogs(t)
		return len(rms) == 1 && len(rls) == 1, fmt.Sprintf("%d resource metrics, %d resource logs", len(rms), len(rls))
	})
	rm := c.ResourceMetrics(t)[0]
	if got := rm.Resource.Str("container.id"); got != "abc" {
		t.Errorf("container.id = %q", got)
	}
	if got := rm.Resource.Str("container.image.tags"); got != "1.0,latest" {
		t.Errorf("container.image.tags = %q", got)
	}
	mem, ok := rm.Metric("container.memory.usage")
	if !ok || mem.Type != "gauge" || mem.Unit != "By" || len(mem.Points) != 1 || mem.Points[0].Value != 42 || !mem.Points[0].IsInt {
		t.Errorf("container.memory.usage = %+v", mem)
	}
	cpu, ok := rm.Metric("container.cpu.time")
	if !ok || cpu.Type != "sum" || !cpu.Monotonic || cpu.Temporality != "cumulative" || cpu.Scope != "smoke" {
		t.Errorf("container.cpu.time = %+v", cpu)
	}
	if p, ok := cpu.Point(map[string]string{"cpu.mode": "user"}); !ok || p.Value != 1.5 || p.Time.UnixNano() != now {
		t.Errorf("container.cpu.time{cpu.mode=user} = %+v, %v", p, ok)
	}
	recs := c.LogRecords(t)
	if len(recs) != 1 || recs[0].BodyString() != "hello" || recs[0].Attrs.Str("log.iostream") != "stderr" ||
		recs[0].Resource.Str("container.id") != "abc" || recs[0].Time.UnixNano() != now {
		t.Errorf("log records = %+v", recs)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("otelcol did not exit cleanly on SIGTERM: %v", err)
	}
}

// TestSmokePrometheus runs Prometheus scraping its own /metrics and queries up.
func TestSmokePrometheus(t *testing.T) {
	port := harness.FreePort(t)
	p := harness.PrometheusOn(t, port, fmt.Sprintf("127.0.0.1:%d", port), 500*time.Millisecond)

	m := harness.ScrapeMetrics(t, p.URL+"/metrics")
	if s, ok := m.Find("prometheus_build_info", nil); !ok || s.Type != "gauge" || s.Labels["version"] == "" {
		t.Errorf("prometheus_build_info = %+v, %v", s, ok)
	}
	p.WaitUp(t, 30*time.Second)
	if r := p.Query(t, `up{job="target"}`); len(r) != 1 || r[0].Value != 1 || r[0].Labels["instance"] == "" {
		t.Errorf("up = %+v", r)
	}
	if r := p.Query(t, "1+1"); len(r) != 1 || r[0].Value != 2 {
		t.Errorf("1+1 = %+v", r)
	}
}

func httpPostJSON(url, body string) (status int, err error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
