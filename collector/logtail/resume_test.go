package logtail

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/collector/logparse"
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
	res := NewResume(cp, rulesFor(engine24))
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
	res := NewResume(cur.Checkpoint(), EachLine)
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
		res := NewResume(cp, rulesFor(engine24))
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

// The daemon's clock steps back (NTP, a VM restored from a snapshot): a
// stream reopened from the cursor returns the pre-step lines first (they
// look newer), then the handled post-step ones, then the new ones. Every
// new line is kept once, on both engine behaviours, even when the
// post-step lines outgrew the window.
func TestResumeAfterDaemonClockStepBack(t *testing.T) {
	for _, handled := range []int{5, pipeline.MaxResumeWindow + 10} {
		for _, engine24 := range []bool{false, true} {
			var file []pipeline.LogRecord
			for i := range 10 {
				file = append(file, logLine(i*1000, pipeline.Stdout, fmt.Sprint("pre-", i)))
			}
			for k := range handled + 100 {
				file = append(file, logLine(10_000-3600_000+k, pipeline.Stdout, fmt.Sprint("post-", k)))
			}
			var cur pipeline.LogCursor
			for i := range 10 + handled {
				cur.Advance(pipeline.PrintOf(&file[i]))
			}
			cp := cur.Checkpoint()
			if cp.SteppedFrom == 0 {
				t.Fatalf("the step was not noted: %+v", cp)
			}
			res := NewResume(cp, rulesFor(engine24))
			var kept []string
			for _, r := range engineRead(file, cp.Since, engine24) {
				if res.Keep(pipeline.PrintOf(&r)) {
					kept = append(kept, string(r.Body))
				}
			}
			if len(kept) != 100 || kept[0] != fmt.Sprint("post-", handled) || res.Gap || res.Mismatch {
				t.Errorf("handled %d, engine24=%v: kept %d lines from %q (gap %v, mismatch %v), want the 100 new ones",
					handled, engine24, len(kept), kept[:min(1, len(kept))], res.Gap, res.Mismatch)
			}
		}
	}
}

// A line over 16 KiB is pending on stdout (its first piece read, its last
// not) while stderr lines go on for longer than ResumeSlack; the stream
// breaks. The reader's hold keeps `since` at the line's first piece, so
// the reopened stream returns the whole line, once, with its head.
func TestPendingLongLineSurvivesAReopen(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	head := strings.Repeat("A", logparse.PieceContentBytes)
	type piece struct {
		stream  pipeline.Stream
		ts      time.Time
		content string
	}
	file := []piece{
		{pipeline.Stdout, t0, head}, // first piece, no newline
		{pipeline.Stderr, t0.Add(500 * time.Millisecond), "e1\n"},
		{pipeline.Stderr, t0.Add(1000 * time.Millisecond), "e2\n"},
		{pipeline.Stderr, t0.Add(2000 * time.Millisecond), "e3\n"},
		{pipeline.Stderr, t0.Add(2500 * time.Millisecond), "e4\n"},
		{pipeline.Stdout, t0, "TAIL\n"}, // last piece: Docker repeats t0
	}
	payload := func(p piece) []byte {
		return []byte(p.ts.Format("2006-01-02T15:04:05.000000000Z") + " " + p.content)
	}
	// First read, as the tailer does it: holds follow the assembler's
	// pending lines, records advance the cursors; the stream breaks
	// before the last piece.
	asm := logparse.NewAssembler(1<<20, false)
	var read, acked pipeline.LogCursor
	for _, p := range file[:5] {
		l, ok := asm.Add(p.stream, payload(p))
		out, errs := asm.PendingSince()
		for s, ts := range map[pipeline.Stream]time.Time{pipeline.Stdout: out, pipeline.Stderr: errs} {
			if !ts.IsZero() {
				read.Hold(s, ts.UnixNano())
				acked.Hold(s, ts.UnixNano())
			}
		}
		if ok {
			r := pipeline.LogRecord{Time: l.Time, Stream: l.Stream, Body: l.Body}
			read.Advance(pipeline.PrintOf(&r))
			acked.Advance(pipeline.PrintOf(&r))
		}
	}
	for name, cp := range map[string]pipeline.LogCheckpoint{"read": read.Checkpoint(), "acknowledged": acked.Checkpoint()} {
		if cp.Since > t0.UnixNano() {
			t.Fatalf("%s position's since %v passes the pending line's first piece", name, time.Unix(0, cp.Since).Sub(t0))
		}
		for _, engine24 := range []bool{false, true} {
			res := NewResume(cp, rulesFor(engine24))
			asm := logparse.NewAssembler(1<<20, false)
			var shipped []string
			started := false
			for _, p := range file {
				ts := p.ts.UnixNano()
				if engine24 {
					started = started || ts >= cp.Since
					if !started {
						continue
					}
				} else if ts < cp.Since {
					continue
				}
				if l, ok := asm.Add(p.stream, payload(p)); ok {
					r := pipeline.LogRecord{Time: l.Time, Stream: l.Stream, Body: l.Body}
					if res.Keep(pipeline.PrintOf(&r)) {
						shipped = append(shipped, string(l.Body))
					}
				}
			}
			if len(shipped) != 1 || shipped[0] != head+"TAIL" {
				t.Errorf("%s, engine24=%v: shipped %d records after the reopen, want the whole long line once", name, engine24, len(shipped))
			}
		}
	}
	// Once the line is handled, the hold is gone.
	r := pipeline.LogRecord{Time: t0, Stream: pipeline.Stdout, Body: []byte(head + "TAIL")}
	read.Advance(pipeline.PrintOf(&r))
	late := pipeline.LogRecord{Time: t0.Add(5 * time.Second), Stream: pipeline.Stderr, Body: []byte("e5")}
	read.Advance(pipeline.PrintOf(&late))
	if cp := read.Checkpoint(); cp.Since <= t0.UnixNano() {
		t.Errorf("the hold outlived its line: since %v", time.Unix(0, cp.Since).Sub(t0))
	}
}

// rulesFor is Docker's `since` rules before (false) or from (true) Engine 24.
func rulesFor(engine24 bool) SinceRules {
	if engine24 {
		return UntilFirst
	}
	return EachLine
}
