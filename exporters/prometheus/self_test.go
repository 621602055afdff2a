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
