package otlp

import (
	"strings"
	"testing"
	"time"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/dockscope/dockscope/pipeline"
)

func TestFilesystemMetrics(t *testing.T) {
	snap := testSnapshot()
	snap.Filesystem = &pipeline.FilesystemStats{
		Device: "/dev/vda", UsageBytes: 52_490_240, Inodes: 12,
		CapacityBytes: 270_000_000_000, AvailableBytes: 84_000_000_000,
		InodesTotal: 16_777_216, InodesFree: 16_000_000,
	}
	rm := encodeSnapshot(t, &snap, snap.State.StartedAt.Add(time.Minute))
	byName := map[string]*metricspb.Metric{}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		byName[m.Name] = m
	}
	for name, want := range map[string]float64{
		"container.filesystem.usage":     52_490_240,
		"container.filesystem.capacity":  270_000_000_000,
		"container.filesystem.available": 84_000_000_000,
	} {
		m := byName[name]
		if m == nil {
			t.Errorf("%s missing", name)
			continue
		}
		sum := m.GetSum()
		// The conventions' instrument is an UpDownCounter.
		if sum == nil || sum.IsMonotonic || sum.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
			t.Errorf("%s = %v, want a cumulative non-monotonic sum", name, m)
			continue
		}
		if m.Unit != "By" {
			t.Errorf("%s unit = %q, want By", name, m.Unit)
		}
		if len(sum.DataPoints) != 1 || sum.DataPoints[0].GetAsDouble() != want || len(sum.DataPoints[0].Attributes) != 0 {
			t.Errorf("%s points = %v, want one of %v without attributes", name, sum.DataPoints, want)
		}
	}

	// Not measured yet, or stopped: none of them.
	for _, mod := range []func(*pipeline.Snapshot){
		func(s *pipeline.Snapshot) { s.Filesystem = nil },
		func(s *pipeline.Snapshot) { s.State.Status = "exited"; s.Stats = nil },
	} {
		s := snap
		mod(&s)
		rm := encodeSnapshot(t, &s, s.State.StartedAt.Add(time.Minute))
		for _, m := range rm.ScopeMetrics[0].Metrics {
			if strings.HasPrefix(m.Name, "container.filesystem.") {
				t.Errorf("%s exported for a container with status %s, filesystem %v", m.Name, s.State.Status, s.Filesystem)
			}
		}
	}
}
