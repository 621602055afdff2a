package logtail

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// A reload restarts every reader on the same Checkpointer. The restarted
// reader resumes from this run's acknowledged cursor, which already holds
// the records it finds delivered: seeding them again counted them twice,
// and a second reload within a second then skipped as many new lines.
func TestReloadsInQuickSuccessionLoseAndRepeatNothing(t *testing.T) {
	f := newFakeDocker("running")
	cps, err := pipeline.OpenCheckpointer(t.TempDir())
	if cps == nil {
		t.Fatal(err)
	}
	line := 0
	for round := range 4 {
		// Written while the agent reloads: the fake's follow stream
		// carries what was there when it opened.
		var want []string
		for range 100 {
			line++
			f.addLine(fmt.Sprintf("line %d", line))
			want = append(want, fmt.Sprintf("line %d", line))
		}
		tt := startTailOn(t, f, cps, true)
		tt.observe(f, false)
		got := tt.waitLines(t, len(want), 5*time.Second)
		// Let a duplicate, if any, arrive before judging.
		time.Sleep(100 * time.Millisecond)
		got = tt.lines()
		tt.stop()
		if !slices.Equal(got, want) {
			t.Fatalf("reload %d: got %d lines, want the %d new ones (%s … %s); first got: %q",
				round, len(got), len(want), want[0], want[len(want)-1], head(got, 3))
		}
		if n := tt.tel.LogResumeMismatches.Load(); n != 0 {
			t.Fatalf("reload %d: %d resume mismatches, want none", round, n)
		}
	}
}

func head(s []string, n int) []string { return s[:min(n, len(s))] }
