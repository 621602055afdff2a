package harness

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	const text = `# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{cpu="total",id="/docker/abc",image="img:1",name="web"} 1.5
container_cpu_usage_seconds_total{cpu="total",id="/docker/def",image="img:1",name="db"} 2e+06 1700000000000
# TYPE req_seconds histogram
req_seconds_bucket{le="0.1"} 1
req_seconds_bucket{le="+Inf"} 3
req_seconds_sum 0.5
req_seconds_count 3
# TYPE weird gauge
weird{path="a\\b\"c\nd" , other="x"} NaN
weird{path="inf"} -Inf
{"utf8.metric", "label.with.dots"="v"} 7
no_type_at_all 4
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	s, ok := m.Find("container_cpu_usage_seconds_total", map[string]string{"name": "db"})
	if !ok || s.Value != 2e6 || s.Timestamp != 1700000000000 || s.Type != "counter" || s.Labels["id"] != "/docker/def" ||
		s.Help != "Cumulative cpu time consumed in seconds." {
		t.Errorf("db sample = %+v, %v", s, ok)
	}
	if n := len(m.FindAll("container_cpu_usage_seconds_total", map[string]string{"image": "img:1"})); n != 2 {
		t.Errorf("FindAll image=img:1: %d samples", n)
	}
	if _, ok := FindSample(m, "container_cpu_usage_seconds_total", map[string]string{"name": "nope"}); ok {
		t.Error("found a sample with a wrong label")
	}
	if s, _ := m.Find("req_seconds_bucket", map[string]string{"le": "+Inf"}); s.Value != 3 || s.Type != "histogram" {
		t.Errorf("bucket = %+v", s)
	}
	if s, _ := m.Find("req_seconds_count", nil); s.Type != "histogram" {
		t.Errorf("count = %+v", s)
	}
	if s, ok := m.Find("weird", map[string]string{"path": "a\\b\"c\nd"}); !ok || !math.IsNaN(s.Value) || s.Labels["other"] != "x" {
		t.Errorf("escaped labels: %+v, %v", s, ok)
	}
	if s, _ := m.Find("weird", map[string]string{"path": "inf"}); !math.IsInf(s.Value, -1) {
		t.Errorf("-Inf: %+v", s)
	}
	if s, ok := m.Find("utf8.metric", map[string]string{"label.with.dots": "v"}); !ok || s.Value != 7 {
		t.Errorf("quoted names: %+v, %v", s, ok)
	}
	if s, _ := m.Find("no_type_at_all", nil); s.Type != "untyped" {
		t.Errorf("untyped: %+v", s)
	}
	for _, bad := range []string{
		"a 1\na 2\n",       // duplicate series
		`a{b="1",b="2"} 1`, // duplicate label
		`a{b=1} 1`,         // unquoted value
		`a{b="1"}`,         // no value
		`a{b="1"} one`,     // bad value
		`a{b="1} 1`,        // unterminated
		"# TYPE a countr\n",
	} {
		if _, err := ParseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseMetrics(%q) succeeded", bad)
		}
	}
}

func TestParseOTLPJSON(t *testing.T) {
	const metrics = `{"resourceMetrics":[{"resource":{"attributes":[{"key":"container.id","value":{"stringValue":"abc"}},{"key":"n","value":{"intValue":"3"}},{"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"a"},{"stringValue":"b"}]}}}]},"scopeMetrics":[{"scope":{"name":"dockscope","version":"1"},"metrics":[{"name":"container.cpu.time","unit":"s","sum":{"dataPoints":[{"attributes":[{"key":"cpu.mode","value":{"stringValue":"user"}}],"startTimeUnixNano":"1","timeUnixNano":"2000000000","asDouble":1.25}],"aggregationTemporality":2,"isMonotonic":true}},{"name":"h","histogram":{"dataPoints":[{"count":"3","sum":0.5,"bucketCounts":["1","2"],"explicitBounds":[0.1]}],"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA"}}]}]}]}`
	rms, rls, err := ParseOTLPJSON([]byte(metrics))
	if err != nil || len(rms) != 1 || len(rls) != 0 {
		t.Fatalf("%v %d %d", err, len(rms), len(rls))
	}
	rm := rms[0]
	if rm.Resource.Str("container.id") != "abc" || rm.Resource["n"] != int64(3) || rm.Resource.Str("tags") != "a,b" {
		t.Errorf("resource = %#v", rm.Resource)
	}
	cpu, ok := rm.Metric("container.cpu.time")
	if !ok || cpu.Type != "sum" || !cpu.Monotonic || cpu.Temporality != "cumulative" || cpu.Scope != "dockscope" || cpu.ScopeVersion != "1" {
		t.Errorf("cpu = %+v", cpu)
	}
	if p, ok := cpu.Point(map[string]string{"cpu.mode": "user"}); !ok || p.Value != 1.25 || p.IsInt || p.Time.Unix() != 2 {
		t.Errorf("cpu point = %+v", p)
	}
	h, _ := rm.Metric("h")
	if h.Type != "histogram" || h.Temporality != "delta" || h.Points[0].Count != 3 || h.Points[0].Value != 0.5 ||
		len(h.Points[0].Buckets) != 2 || h.Points[0].Bounds[0] != 0.1 {
		t.Errorf("h = %+v", h)
	}

	const logs = `{"resourceLogs":[{"resource":{"attributes":[{"key":"container.name","value":{"stringValue":"web"}}]},"scopeLogs":[{"scope":{"name":"dockscope"},"logRecords":[{"timeUnixNano":"5","observedTimeUnixNano":"6","severityNumber":17,"severityText":"ERROR","body":{"stringValue":"boom"},"attributes":[{"key":"log.iostream","value":{"stringValue":"stderr"}}]}]}]}]}`
	_, rls, err = ParseOTLPJSON([]byte(logs))
	if err != nil || len(rls) != 1 || len(rls[0].Records) != 1 {
		t.Fatalf("%v %+v", err, rls)
	}
	r := rls[0].Records[0]
	if r.BodyString() != "boom" || r.SeverityNumber != 17 || r.Attrs.Str("log.iostream") != "stderr" || r.Time.UnixNano() != 5 ||
		rls[0].Resource.Str("container.name") != "web" {
		t.Errorf("record = %+v", r)
	}
}

func TestDockerHostFromEnvironment(t *testing.T) {
	t.Setenv(DockerHostEnv, "")
	if h, s := DockerHost(), DockerSocketPath(); h != DefaultDockerHost || s != "/var/run/docker.sock" || !IsDefaultEngine() {
		t.Errorf("unset: host %q socket %q default %v", h, s, IsDefaultEngine())
	}
	t.Setenv(DockerHostEnv, "unix:///run/dockscope-engine28/docker.sock")
	if h, s := DockerHost(), DockerSocket(t); h != "unix:///run/dockscope-engine28/docker.sock" || s != "/run/dockscope-engine28/docker.sock" || IsDefaultEngine() {
		t.Errorf("engine28: host %q socket %q default %v", h, s, IsDefaultEngine())
	}
	t.Setenv(DockerCLIEnv, "/opt/engine28/docker")
	if args := DockerCommand(t.Context(), "ps").Args; !slices.Equal(args, []string{"/opt/engine28/docker", "-H", "unix:///run/dockscope-engine28/docker.sock", "ps"}) {
		t.Errorf("docker command = %q", args)
	}
}
