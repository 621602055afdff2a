package otlp

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/dockscope/dockscope/pipeline"
)

// describeMetric renders a metric as "name unit kind: point[attrs]=value ..."
// with its points sorted, for exact comparison.
func describeMetric(m *metricspb.Metric) string {
	var kind string
	var dps []*metricspb.NumberDataPoint
	switch d := m.Data.(type) {
	case *metricspb.Metric_Gauge:
		kind, dps = "gauge", d.Gauge.DataPoints
	case *metricspb.Metric_Sum:
		kind, dps = "updowncounter", d.Sum.DataPoints
		if d.Sum.IsMonotonic {
			kind = "counter"
		}
		if d.Sum.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
			kind += "(not cumulative)"
		}
	}
	var points []string
	for _, dp := range dps {
		var attrs []string
		for _, kv := range dp.Attributes {
			attrs = append(attrs, kv.Key+"="+kv.Value.GetStringValue())
		}
		points = append(points, fmt.Sprintf("{%s}=%v", strings.Join(attrs, ","), dp.GetAsDouble()))
	}
	sort.Strings(points)
	return fmt.Sprintf("%s %s %s: %s", m.Name, m.Unit, kind, strings.Join(points, " "))
}

func parityMetrics(t *testing.T, snap *pipeline.Snapshot) map[string]string {
	t.Helper()
	rm := encodeSnapshot(t, snap, snap.State.StartedAt.Add(time.Minute))
	out := map[string]string{}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		out[m.Name] = describeMetric(m)
	}
	return out
}

func TestDockerStatsParityMetrics(t *testing.T) {
	snap := testSnapshot()
	snap.Spec = pipeline.ContainerSpec{MemoryLimit: 1000, CPUQuota: 50000, CPUPeriod: 100000, CPUShares: 512, PidsLimit: 100}
	st := *snap.Stats
	st.MemoryCache = 300
	st.CPUPeriods, st.CPUThrottledPeriods, st.CPUThrottledTime = 40, 7, time.Second
	st.MemoryFailcnt = 3
	st.Present = pipeline.MemMaxUsage | pipeline.MemFailcnt | pipeline.MemFaults
	st.Memory = pipeline.MemoryDetail{MaxUsage: 950, Pgfault: 90, Pgmajfault: 4, TotalPgfault: 100, TotalPgmajfault: 5}
	st.Networks = []pipeline.NetworkStats{{Interface: "eth0", RxBytes: 10, RxPackets: 1, RxDropped: 2, RxErrors: 3, TxBytes: 20, TxPackets: 4, TxDropped: 5, TxErrors: 6}}
	snap.Stats = &st
	got := parityMetrics(t, &snap)
	for _, want := range []string{
		"container.cpu.shares 1 gauge: {}=512",
		"container.cpu.limit {cpu} gauge: {}=0.5",
		"container.cpu.periods {period} counter: {}=40",
		"container.cpu.throttled_periods {period} counter: {}=7",
		"container.pids.limit {process} updowncounter: {}=100",
		"container.memory.file By updowncounter: {}=300",
		"container.memory.peak By updowncounter: {}=950",
		"container.memory.fails {fail} counter: {}=3",
		"container.memory.utilization 1 gauge: {}=0.6",
		"container.memory.limit By updowncounter: {}=1000",
		"container.memory.paging.faults {fault} counter: {system.paging.fault.type=major}=5 {system.paging.fault.type=minor}=95",
		"container.network.packet.count {packet} counter: {network.interface.name=eth0,network.io.direction=receive}=1 {network.interface.name=eth0,network.io.direction=transmit}=4",
		"container.network.packet.dropped {packet} counter: {network.interface.name=eth0,network.io.direction=receive}=2 {network.interface.name=eth0,network.io.direction=transmit}=5",
		"container.network.errors {error} counter: {network.interface.name=eth0,network.io.direction=receive}=3 {network.interface.name=eth0,network.io.direction=transmit}=6",
	} {
		name, _, _ := strings.Cut(want, " ")
		if got[name] != want {
			t.Errorf("%s:\n got %q\nwant %q", name, got[name], want)
		}
	}
}

// What the source or the spec lacks is left out: no limits, a v2 sample
// through the API (no peak, no failcnt, no memory.events), no quota.
func TestDockerStatsParityOmitsAbsent(t *testing.T) {
	snap := testSnapshot()
	snap.Spec = pipeline.ContainerSpec{CPUShares: 1024}
	got := parityMetrics(t, &snap)
	for _, name := range []string{"container.cpu.limit", "container.cpu.periods", "container.pids.limit", "container.memory.peak",
		"container.memory.fails", "container.memory.utilization", "container.memory.paging.faults"} {
		if d, ok := got[name]; ok {
			t.Errorf("%s exported without a source value: %s", name, d)
		}
	}
	if want := "container.cpu.shares 1 gauge: {}=1024"; got["container.cpu.shares"] != want {
		t.Errorf("container.cpu.shares: got %q, want %q", got["container.cpu.shares"], want)
	}
	// cgroup v2 through its files: memory.events max is the fails counter.
	st := *snap.Stats
	st.Present = pipeline.MemEvents
	st.Memory.EventsMax = 9
	snap.Stats = &st
	if want := "container.memory.fails {fail} counter: {}=9"; parityMetrics(t, &snap)["container.memory.fails"] != want {
		t.Errorf("v2 fails: got %q, want %q", parityMetrics(t, &snap)["container.memory.fails"], want)
	}
}
