package prometheus

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dockscope/dockscope/pipeline"
)

func TestSelfCollectorExportsCheckpointSaves(t *testing.T) {
	tel := pipeline.NewTelemetry()
	tel.SetOTLP(false, true)
	tel.CheckpointSaves.Add(7)
	tel.CheckpointBytesWritten.Add(2002)
	tel.CheckpointSaveFailures.Add(3)
	c := NewSelfCollector(tel, pipeline.NewStore(), BuildInfo{Version: "test"})
	want := `
# HELP dockscope_log_checkpoint_bytes_written_total Bytes written to the log checkpoint journal and snapshots.
# TYPE dockscope_log_checkpoint_bytes_written_total counter
dockscope_log_checkpoint_bytes_written_total 2002
# HELP dockscope_log_checkpoint_save_failures_total Log checkpoint saves that failed; positions are kept in memory and saved again.
# TYPE dockscope_log_checkpoint_save_failures_total counter
dockscope_log_checkpoint_save_failures_total 3
# HELP dockscope_log_checkpoint_saves_total Saves of the log checkpoint state (one per acknowledged batch).
# TYPE dockscope_log_checkpoint_saves_total counter
dockscope_log_checkpoint_saves_total 7
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"dockscope_log_checkpoint_saves_total", "dockscope_log_checkpoint_bytes_written_total", "dockscope_log_checkpoint_save_failures_total"); err != nil {
		t.Error(err)
	}
}

func TestSelfCollectorExportsLogStreamReopens(t *testing.T) {
	tel := pipeline.NewTelemetry()
	tel.SetOTLP(false, true)
	tel.LogStreamReopens.Add(12)
	c := NewSelfCollector(tel, pipeline.NewStore(), BuildInfo{Version: "test"})
	want := `
# HELP dockscope_log_stream_reopens_total Container log streams requested again after a container's first in this run, for any reason (an error, a stream that ended while the container ran, a new run): what following logs costs the Docker daemon.
# TYPE dockscope_log_stream_reopens_total counter
dockscope_log_stream_reopens_total 12
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "dockscope_log_stream_reopens_total"); err != nil {
		t.Error(err)
	}
}

// TestSelfMetricsOfOTLPOnlyWhenOn: the series of the OTLP metrics path
// and of the log path (logs leave only over OTLP) are served while that
// path runs, and the rest whatever runs; a path turned off and on again by
// reloads resumes its counters.
func TestSelfMetricsOfOTLPOnlyWhenOn(t *testing.T) {
	always := []string{
		`dockscope_build_info{goversion="go",revision="r",version="v"}`, `dockscope_docker_up`, `dockscope_containers`,
		`dockscope_records_received_total{stage="events"}`, `dockscope_records_sent_total{stage="stats"}`,
		`dockscope_records_dropped_total{stage="stats"}`, `dockscope_event_stream_reconnects_total`,
		`dockscope_stats_samples_total{source="api"}`, `dockscope_config_last_reload_successful`,
	}
	metricsPath := []string{
		`dockscope_records_received_total{stage="otlp_metrics"}`, `dockscope_records_sent_total{stage="otlp_metrics"}`,
		`dockscope_records_dropped_total{stage="otlp_metrics"}`,
	}
	either := []string{`dockscope_export_failures_total{exporter="otlp"}`}
	logsPath := []string{
		`dockscope_records_received_total{stage="logs"}`, `dockscope_records_sent_total{stage="logs"}`,
		`dockscope_records_dropped_total{stage="logs"}`, `dockscope_log_stream_reconnects_total`,
		`dockscope_log_stream_reopens_total`, `dockscope_log_gaps_total`, `dockscope_log_resume_mismatches_total`,
		`dockscope_logs_unreadable_total`, `dockscope_log_queue_bytes`, `dockscope_log_checkpoint_saves_total`,
		`dockscope_log_checkpoint_bytes_written_total`, `dockscope_log_checkpoint_save_failures_total`,
	}
	tel := pipeline.NewTelemetry()
	tel.ExportFailures.Add(3)
	c := NewSelfCollector(tel, pipeline.NewStore(), BuildInfo{Version: "v", Revision: "r", GoVersion: "go"})
	for _, tc := range []struct {
		name          string
		metrics, logs bool
	}{
		{"no OTLP endpoint", false, false},
		{"metrics only (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)", true, false},
		{"logs only (OTEL_EXPORTER_OTLP_LOGS_ENDPOINT)", false, true},
		{"both", true, true},
		{"off again after a reload", false, false},
	} {
		tel.SetOTLP(tc.metrics, tc.logs)
		series := map[string]bool{}
		for _, line := range strings.Split(gather(t, c), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				series[line[:strings.LastIndexByte(line, ' ')]] = true
			}
		}
		check := func(names []string, want bool) {
			for _, n := range names {
				if series[n] != want {
					t.Errorf("%s: %s served = %v, want %v", tc.name, n, series[n], want)
				}
			}
		}
		check(always, true)
		check(metricsPath, tc.metrics)
		check(logsPath, tc.logs)
		check(either, tc.metrics || tc.logs)
		if tc.metrics || tc.logs {
			if !strings.Contains(gather(t, c), `dockscope_export_failures_total{exporter="otlp"} 3`+"\n") {
				t.Errorf("%s: export failures did not resume at 3", tc.name)
			}
		}
		for n := range series {
			if !tc.metrics && !tc.logs && (strings.Contains(n, "otlp") || strings.HasPrefix(n, "dockscope_log")) {
				t.Errorf("%s: %s is served without OTLP", tc.name, n)
			}
		}
	}
}
