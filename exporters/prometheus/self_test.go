package prometheus

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dockscope/dockscope/pipeline"
)

func TestSelfCollectorExportsCheckpointSaves(t *testing.T) {
	tel := pipeline.NewTelemetry()
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
