package prometheus

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dockscope/dockscope/pipeline"
)

// fsStore holds a running container with a filesystem measurement, a
// running one not measured yet, and a stopped one whose last measurement
// is still in the store.
func fsStore(t *testing.T) *pipeline.Store {
	t.Helper()
	s := pipeline.NewStore()
	started := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	fs := &pipeline.FilesystemStats{
		Device: "/dev/vda", UsageBytes: 52_490_240, Inodes: 12,
		CapacityBytes: 270_000_000_000, AvailableBytes: 84_000_000_000,
		InodesTotal: 16_777_216, InodesFree: 16_000_000, Measured: started.Add(time.Minute),
	}
	for _, c := range []struct {
		id, status string
		fs         *pipeline.FilesystemStats
	}{{"aaa", "running", fs}, {"bbb", "running", nil}, {"ccc", "exited", fs}} {
		s.Upsert(pipeline.ContainerMeta{ID: c.id, CgroupPath: "/docker/" + c.id, Name: c.id, Image: "app:1"},
			pipeline.ContainerState{Status: c.status, StartedAt: started}, pipeline.ContainerSpec{})
		if c.fs != nil && !s.SetFilesystem(c.id, c.fs) {
			t.Fatalf("SetFilesystem(%s) found no container", c.id)
		}
	}
	if s.SetFilesystem("zzz", fs) {
		t.Error("SetFilesystem of an unknown container reported true")
	}
	return s
}

func TestFilesystemSeries(t *testing.T) {
	var buf bytes.Buffer
	if err := NewContainerCollector(fsStore(t)).WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("text output does not parse: %v", err)
	}
	want := map[string]float64{
		"container_fs_usage_bytes":  52_490_240,
		"container_fs_limit_bytes":  270_000_000_000,
		"container_fs_inodes_total": 16_777_216,
		"container_fs_inodes_free":  16_000_000,
	}
	for name, v := range want {
		mf := mfs[name]
		if mf == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if mf.GetType().String() != "GAUGE" {
			t.Errorf("%s is a %s, want a gauge as in cAdvisor", name, mf.GetType())
		}
		// Only the running, measured container: not the one without a
		// measurement, nor the stopped one.
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%s has %d series, want 1:\n%s", name, len(mf.GetMetric()), buf.String())
		}
		m := mf.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["id"] != "/docker/aaa" || labels["device"] != "/dev/vda" || labels["name"] != "aaa" || labels["image"] != "app:1" {
			t.Errorf("%s labels = %v", name, labels)
		}
		if got := m.GetGauge().GetValue(); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
		if m.TimestampMs != nil {
			t.Errorf("%s carries a timestamp; only container_last_seen does", name)
		}
	}
	// The exact cAdvisor lines dashboards match on.
	for _, line := range []string{
		"# HELP container_fs_usage_bytes Number of bytes that are consumed by the container on this filesystem.\n# TYPE container_fs_usage_bytes gauge\n",
		`container_fs_usage_bytes{id="/docker/aaa",name="aaa",image="app:1",device="/dev/vda"} 5.249024e+07` + "\n",
	} {
		if !strings.Contains(buf.String(), line) {
			t.Errorf("output lacks %q:\n%s", line, buf.String())
		}
	}
	problems, err := promlint.New(bytes.NewReader(buf.Bytes())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if p.Metric == "container_fs_inodes_total" && strings.Contains(p.Text, `"_total"`) {
			continue // cAdvisor's name, which queries depend on
		}
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
