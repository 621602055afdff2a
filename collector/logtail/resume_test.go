package logtail

import (
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// logLine builds a record at base+ms milliseconds.
func logLine(ms int, stream pipeline.Stream, body string) pipeline.LogRecord {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	return pipeline.LogRecord{ContainerID: "c", Time: base.Add(time.Duration(ms) * time.Millisecond), Stream: stream, Body: []byte(body)}
}

// engineRead simulates the logs endpoint reading a file (in order) from a
// since timestamp, with either filtering behaviour.
func engineRead(file []pipeline.LogRecord, since int64, engine24 bool) []pipeline.LogRecord {
	var out []pipeline.LogRecord
	started := false
	for _, r := range file {
		ts := r.Time.UnixNano()
		if engine24 {
			if !started && ts >= since {
				started = true
			}
			if started {
				out = append(out, r)
			}
		} else if ts >= since {
			out = append(out, r)
		}
	}
	return out
}

// resumeAfter acknowledges the first n records of file, then reopens the
// stream at the checkpoint and returns what the filter keeps.
func resumeAfter(t *testing.T, file []pipeline.LogRecord, n int, engine24 bool) ([]pipeline.LogRecord, *Resume) {
	t.Helper()
	var cur pipeline.LogCursor
	for i := range n {
		cur.Advance(pipeline.PrintOf(&file[i]))
	}
	cp := cur.Checkpoint()
	res := NewResume(cp, engine24)
	var kept []pipeline.LogRecord
	for _, r := range engineRead(file, cp.Since, engine24) {
		if res.Keep(pipeline.PrintOf(&r)) {
			kept = append(kept, r)
		}
	}
	return kept, res
}

func bodies(rs []pipeline.LogRecord) string {
	var b []string
	for _, r := range rs {
		b = append(b, string(r.Body))
	}
	return strings.Join(b, ",")
}

func TestResumeNoLossNoDuplicates(t *testing.T) {
	// A realistic file: skewed stderr lines (earlier timestamp, later in
	// the file), identical lines sharing a timestamp, a quiet gap.
	file := []pipeline.LogRecord{
		logLine(0, pipeline.Stdout, "a"),
		logLine(500, pipeline.Stdout, "b"),
		logLine(1500, pipeline.Stdout, "c"),
		logLine(1499, pipeline.Stderr, "d"), // written after c, stamped before it
		logLine(1600, pipeline.Stdout, ""),
		logLine(1600, pipeline.Stdout, ""), // byte-identical, same nanosecond
		logLine(1600, pipeline.Stderr, "e"),
		logLine(4000, pipeline.Stdout, "f"),
		logLine(4100, pipeline.Stdout, "g"),
	}
	for _, engine24 := range []bool{false, true} {
		for n := 1; n <= len(file); n++ {
			kept, res := resumeAfter(t, file, n, engine24)
			if got, want := bodies(kept), bodies(file[n:]); got != want {
				t.Errorf("engine24=%v, %d acknowledged: resumed with %q, want %q", engine24, n, got, want)
			}
			if res.Gap || res.Mismatch {
				t.Errorf("engine24=%v, %d acknowledged: gap=%v mismatch=%v", engine24, n, res.Gap, res.Mismatch)
			}
		}
	}
}

func TestResumeDetectsRotatedAwayRecords(t *testing.T) {
	file := []pipeline.LogRecord{logLine(0, pipeline.Stdout, "a"), logLine(100, pipeline.Stdout, "b"), logLine(5000, pipeline.Stdout, "c")}
	var cur pipeline.LogCursor
	cur.Advance(pipeline.PrintOf(&file[0]))
	cur.Advance(pipeline.PrintOf(&file[1]))
	res := NewResume(cur.Checkpoint(), false)
	// Docker rotated a and b away: the stream starts at c.
	if !res.Keep(pipeline.PrintOf(&file[2])) || !res.Gap {
		t.Fatalf("keep=%v gap=%v; want c kept and a gap reported", true, res.Gap)
	}
}

func TestResumeAfterNothingNew(t *testing.T) {
	file := []pipeline.LogRecord{logLine(0, pipeline.Stdout, "a"), logLine(10, pipeline.Stdout, "b")}
	kept, res := resumeAfter(t, file, 2, false)
	if len(kept) != 0 || res.Gap || res.Pending() {
		t.Fatalf("kept %q gap=%v pending=%v", bodies(kept), res.Gap, res.Pending())
	}
}

// A container logging faster than pipeline.MaxResumeWindow lines per second keeps a
// shorter slack, and resuming from it still loses and repeats nothing.
func TestCursorWindowCappedAtHighRates(t *testing.T) {
	var cur pipeline.LogCursor
	var file []pipeline.LogRecord
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i := range 4 * pipeline.MaxResumeWindow {
		// 200,000 lines per second.
		r := pipeline.LogRecord{Time: base.Add(time.Duration(i) * 5 * time.Microsecond), Stream: pipeline.Stdout, Body: []byte{byte(i), byte(i >> 8), byte(i >> 16)}}
		file = append(file, r)
		cur.Advance(pipeline.PrintOf(&r))
	}
	cp := cur.Checkpoint()
	if cp.SkipAtOrAfter != pipeline.MaxResumeWindow {
		t.Fatalf("checkpoint %+v", cp)
	}
	more := pipeline.LogRecord{Time: base.Add(time.Second), Stream: pipeline.Stdout, Body: []byte("next")}
	file = append(file, more)
	for _, engine24 := range []bool{false, true} {
		res := NewResume(cp, engine24)
		var kept []pipeline.LogRecord
		for _, r := range engineRead(file, cp.Since, engine24) {
			if res.Keep(pipeline.PrintOf(&r)) {
				kept = append(kept, r)
			}
		}
		if len(kept) != 1 || string(kept[0].Body) != "next" {
			t.Fatalf("engine24=%v: resumed with %d records", engine24, len(kept))
		}
	}
}

func TestEmptyCheckpointReadsFromStart(t *testing.T) {
	var cur pipeline.LogCursor
	if !cur.Empty() || SinceParam(cur.Checkpoint()) != "" {
		t.Fatal("an empty cursor must read from the start")
	}
}
