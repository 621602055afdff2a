package pipeline

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// logLine builds a record at base+ms milliseconds.
func logLine(ms int, stream Stream, body string) LogRecord {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	return LogRecord{ContainerID: "c", Time: base.Add(time.Duration(ms) * time.Millisecond), Stream: stream, Body: []byte(body)}
}

// engineRead simulates the logs endpoint reading a file (in order) from a
// since timestamp, with either filtering behaviour.
func engineRead(file []LogRecord, since int64, engine24 bool) []LogRecord {
	var out []LogRecord
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

func bodies(rs []LogRecord) string {
	var b []string
	for _, r := range rs {
		b = append(b, string(r.Body))
	}
	return strings.Join(b, ",")
}

func TestCursorWindowStaysBounded(t *testing.T) {
	var cur LogCursor
	for i := range 100000 {
		r := logLine(i, Stdout, "x") // 1000 lines per second
		cur.Advance(PrintOf(&r))
	}
	if n := len(cur.window) - cur.head; n > 1001 {
		t.Fatalf("window holds %d records, want about one second's worth", n)
	}
	if cap(cur.window) > 4096 {
		t.Fatalf("window array grew to %d", cap(cur.window))
	}
	cp := cur.Checkpoint()
	if cp.Since != 1795428098_999000000 || cp.SkipAtOrAfter != 1001 {
		t.Fatalf("checkpoint %+v", cp)
	}
}

func TestCheckpointerPersistsAndSeeds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	c, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !c.SavedAt().IsZero() {
		t.Fatal("a new state dir has a save time")
	}
	recs := []LogRecord{logLine(0, Stdout, "a"), logLine(1, Stderr, "b")}
	recs[1].ContainerID = "d"
	if err := c.Ack(recs); err != nil {
		t.Fatal(err)
	}
	c2, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	cp, ok := c2.Get("c")
	if !ok || cp.First != PrintOf(&recs[0]) || cp.SkipAtOrAfter != 1 {
		t.Fatalf("reloaded checkpoint %+v, %v", cp, ok)
	}
	if c2.SavedAt().IsZero() || len(c2.IDs()) != 2 {
		t.Fatalf("saved at %v, ids %v", c2.SavedAt(), c2.IDs())
	}
	// Records found already delivered while resuming count as acknowledged.
	more := logLine(2, Stdout, "c")
	c2.Seed("c", PrintOf(&recs[0]))
	c2.Ack([]LogRecord{more})
	if cp, _ := c2.Get("c"); cp.SkipAtOrAfter != 2 || cp.Last != PrintOf(&more) {
		t.Fatalf("after seed and ack: %+v", cp)
	}
	c2.Forget("d")
	c2.Ack([]LogRecord{{ContainerID: "d", Time: time.Now(), Body: []byte("late")}})
	if _, ok := c2.Get("d"); ok {
		t.Fatal("a forgotten container came back from a late acknowledgement")
	}
	// A lifecycle event shipped through the log path is no log position.
	c2.Ack([]LogRecord{{ContainerID: "c", Time: more.Time.Add(time.Hour), Body: []byte("container c stop"), Event: &Event{Name: "container.stop"}}})
	if cp, _ := c2.Get("c"); cp.Last != PrintOf(&more) {
		t.Fatalf("an event moved the checkpoint: %+v", cp)
	}
}

func TestCheckpointerFailedWriteKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	c, _ := OpenCheckpointer(dir)
	c.Ack([]LogRecord{logLine(0, Stdout, "a")})
	before, _ := os.ReadFile(filepath.Join(dir, stateFileName))
	c.writeFile = func(string, []byte) error { return errors.New("disk full") }
	c.appendFile = c.writeFile
	if err := c.Ack([]LogRecord{logLine(1, Stdout, "b")}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Ack with a failing write: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, stateFileName))
	if string(before) != string(after) {
		t.Fatal("a failed save changed the file")
	}
	c.writeFile, c.appendFile = writeFileAtomic, appendFileSync
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if cp, _ := c.Get("c"); cp.SkipAtOrAfter != 2 {
		t.Fatalf("the retried save lost the record: %+v", cp)
	}
}

func TestCheckpointerMovesCorruptFileAside(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, stateFileName), []byte("{not json"), 0o600)
	c, err := OpenCheckpointer(dir)
	if err == nil || c == nil || !strings.Contains(err.Error(), "moved to") {
		t.Fatalf("corrupt file: %v", err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, stateFileName+".corrupt-*"))
	if len(matches) != 1 {
		t.Fatalf("corrupt file not kept aside: %v", matches)
	}
}

func BenchmarkCursorAdvance(b *testing.B) {
	var cur LogCursor
	r := logLine(0, Stdout, "line 123456 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Time = r.Time.Add(5 * time.Microsecond) // 200k lines/s
		cur.Advance(PrintOf(&r))
	}
}

// The hash is persisted in checkpoint files: it is XXH64 with seed 0, as
// published (test vectors of the xxHash reference), inverted when the
// record was truncated.
func TestHashBodyIsXXH64(t *testing.T) {
	for body, want := range map[string]uint64{"": 0xef46db3751d8e999, "a": 0xd24ec4f1a98c6e5b, "abc": 0x44bc2cf5ad770999} {
		if got := HashBody([]byte(body), false); got != want {
			t.Errorf("HashBody(%q) = %#x, want %#x", body, got, want)
		}
		if got := HashBody([]byte(body), true); got != ^want {
			t.Errorf("HashBody(%q, truncated) = %#x, want %#x", body, got, ^want)
		}
	}
	r := LogRecord{Body: []byte("abc")}
	if got := PrintOf(&r).Hash; got != 0x44bc2cf5ad770999 {
		t.Errorf("PrintOf hashed %q to %#x", r.Body, got)
	}
	r.Hash = 42
	if p := PrintOf(&r); p.Hash != 42 {
		t.Errorf("PrintOf ignored the stored hash: %x", p.Hash)
	}
}

// A version 1 file (FNV-1a hashes) still resumes without loss or
// duplicates: its records are recognised by timestamp and stream. A body
// that differs at the same timestamp is still a mismatch in version 2.
func TestCheckpointerReadsVersion1Files(t *testing.T) {
	file := []LogRecord{logLine(0, Stdout, "a"), logLine(10, Stderr, "b"), logLine(20, Stdout, "c"), logLine(30, Stdout, "d")}
	fnv1a := func(r *LogRecord) RecordPrint {
		h := fnv.New64a()
		h.Write(r.Body)
		return RecordPrint{TimeNanos: r.Time.UnixNano(), Stream: r.Stream, Hash: h.Sum64()}
	}
	dir := t.TempDir()
	v1 := fmt.Sprintf(`{"version":1,"saved_at":"2026-11-23T10:00:00Z","containers":{"c":{"since":%d,"latest":%d,
		"first":{"t":%d,"s":%d,"h":"%d"},"last":{"t":%d,"s":%d,"h":"%d"},"skip_at_or_after":2,"skip_from_on":2}}}`,
		file[0].Time.UnixNano(), file[1].Time.UnixNano(),
		fnv1a(&file[0]).TimeNanos, fnv1a(&file[0]).Stream, fnv1a(&file[0]).Hash,
		fnv1a(&file[1]).TimeNanos, fnv1a(&file[1]).Stream, fnv1a(&file[1]).Hash)
	if err := os.WriteFile(filepath.Join(dir, stateFileName), []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	cp, ok := c.Get("c")
	if !ok {
		t.Fatal("the version 1 checkpoint was not loaded")
	}
	// Its hashes were FNV-1a: the records are matched by timestamp and
	// stream alone.
	if cp.First.Hash != 0 || cp.Last.Hash != 0 || !SamePrint(PrintOf(&file[0]), cp.First) || !SamePrint(PrintOf(&file[1]), cp.Last) {
		t.Errorf("version 1 checkpoint %+v does not match its records by timestamp and stream", cp)
	}

	// Saved again, it is a version 2 file that still resumes.
	c.dirty = true
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, stateFileName))
	if !strings.Contains(string(data), `"version":2`) {
		t.Errorf("saved as %s", data)
	}

	other := file[0]
	other.Body = []byte("not a")
	if SamePrint(PrintOf(&other), PrintOf(&file[0])) {
		t.Errorf("a different body at the same timestamp matched")
	}
}

// Checkpoint's count of the records at or after the first one, kept
// from the skewed records only, matches a count over the whole window,
// whatever the skew, the trimming and the array reuse.
func TestCheckpointCountsSkewedRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for iter := range 20 {
		var cur LogCursor
		ts := int64(1_800_000_000_000_000_000)
		for i := range 60000 {
			ts += int64(rng.IntN(100_000)) // up to 100 µs apart: the window is capped, not timed out
			if iter%2 == 1 && i%5000 == 0 {
				ts += int64(2 * ResumeSlack) // a pause: the window times out
			}
			t0 := ts
			if rng.IntN(8) == 0 {
				t0 -= int64(rng.IntN(3_000_000)) // stamped up to 3 ms early
			}
			cur.Advance(RecordPrint{TimeNanos: t0, Stream: Stream(1 + i%2), Hash: uint64(i)})
			if i%997 != 0 {
				continue
			}
			cp := cur.Checkpoint()
			want := 0
			for _, p := range cur.window[cur.head:] {
				if p.TimeNanos >= cp.Since {
					want++
				}
			}
			if cp.SkipAtOrAfter != want {
				t.Fatalf("iteration %d, record %d: SkipAtOrAfter %d, want %d", iter, i, cp.SkipAtOrAfter, want)
			}
		}
	}
}

// One op is one record acknowledged, in batches of 8192 from four
// containers, the file write itself left out.
func BenchmarkCheckpointerAck(b *testing.B) {
	c, err := OpenCheckpointer(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	c.writeFile = func(string, []byte) error { return nil }
	c.appendFile = c.writeFile
	batch := make([]LogRecord, 8192)
	for i := range batch {
		batch[i] = logLine(0, Stdout, "a line")
		batch[i].ContainerID = strings.Repeat(string(rune('a'+i/256%4)), 64)
		batch[i].Hash = uint64(i + 1)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%len(batch) == 0 {
			for j := range batch {
				batch[j].Time = batch[j].Time.Add(5 * time.Millisecond) // 200k lines/s over four containers
			}
			if err := c.Ack(batch); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// A burst's capacity is given back once the container is quiet again: a
// cursor is kept per container for as long as it exists.
func TestCursorShrinksAfterBurst(t *testing.T) {
	var cur LogCursor
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range MaxResumeWindow {
		cur.Advance(RecordPrint{TimeNanos: base.Add(time.Duration(i) * 30 * time.Microsecond).UnixNano(), Stream: Stdout, Hash: uint64(i)})
	}
	for i := range 100 { // then one line a second
		cur.Advance(RecordPrint{TimeNanos: base.Add(time.Second + time.Duration(i)*time.Second).UnixNano(), Stream: Stdout, Hash: uint64(i)})
	}
	if c := cap(cur.window); c > shrinkBelow {
		t.Errorf("after the burst and 100 quiet lines the window keeps a capacity of %d prints (%d live)", c, len(cur.window)-cur.head)
	}
}

// A step back of the daemon's clock re-bases the cursor, and the
// checkpoint says from where, until the window has moved past it.
func TestCursorRebasesAfterClockStepBack(t *testing.T) {
	var cur LogCursor
	base := int64(1_800_000_000_000_000_000)
	for i := range 10 {
		cur.Advance(RecordPrint{TimeNanos: base + int64(i)*int64(time.Second), Stream: Stdout, Hash: uint64(i)})
	}
	pre := base + 9*int64(time.Second)
	stepped := base - int64(time.Hour)
	cur.Advance(RecordPrint{TimeNanos: stepped, Stream: Stdout, Hash: 100})
	cp := cur.Checkpoint()
	if cp.Since != stepped || cp.Latest != stepped || cp.SteppedFrom != pre || cp.SkipAtOrAfter != 1 {
		t.Fatalf("after the step: %+v", cp)
	}
	// The clock catches up: past the pre-step records, the step is forgotten.
	cur.Advance(RecordPrint{TimeNanos: pre + 2*int64(time.Second), Stream: Stdout, Hash: 101})
	if cp := cur.Checkpoint(); cp.SteppedFrom != 0 || cp.SkipAtOrAfter != 1 {
		t.Fatalf("after the clock caught up: %+v", cp)
	}
}

// Begin saves a position for a container nobody acknowledged anything of,
// so that the next start reads it (from its start) whatever was saved
// since; it never overwrites a position.
func TestCheckpointerBeginIsSavedAtOnce(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Begin("new", 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Begin("lost", 1_800_000_000_000_000_000); err != nil {
		t.Fatal(err)
	}
	r := logLine(0, Stdout, "a")
	r.ContainerID = "acked"
	if err := c.Ack([]LogRecord{r}); err != nil {
		t.Fatal(err)
	}
	if err := c.Begin("acked", 0); err != nil {
		t.Fatal(err)
	}
	c2, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cp, ok := c2.Get("new"); !ok || cp != (LogCheckpoint{}) {
		t.Errorf("begun container: %+v, %v; want an empty position", cp, ok)
	}
	if cp, ok := c2.Get("lost"); !ok || cp.Latest != 1_800_000_000_000_000_000-1 || cp.Since != 0 {
		t.Errorf("begun from a time: %+v, %v", cp, ok)
	}
	if cp, ok := c2.Get("acked"); !ok || cp.First != PrintOf(&r) {
		t.Errorf("Begin overwrote an acknowledged position: %+v", cp)
	}
}

// A hold on the acknowledged position keeps its since at a pending line's
// first piece, across a save, until that line is acknowledged.
func TestCheckpointerHoldKeepsSinceUntilTheLineIsAcknowledged(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	long := logLine(0, Stdout, "long line")
	c.Hold("c", Stdout, long.Time.UnixNano())
	var later []LogRecord
	for i := range 5 {
		later = append(later, logLine(500+i*1000, Stderr, fmt.Sprint("e", i)))
	}
	if err := c.Ack(later); err != nil {
		t.Fatal(err)
	}
	c2, _ := OpenCheckpointer(dir)
	if cp, _ := c2.Get("c"); cp.Since != long.Time.UnixNano() {
		t.Fatalf("saved since %d, want the held line's %d", cp.Since, long.Time.UnixNano())
	}
	if err := c.Ack([]LogRecord{long}); err != nil {
		t.Fatal(err)
	}
	if cp, _ := c.Get("c"); cp.Since == long.Time.UnixNano() {
		t.Fatalf("the hold outlived its line: %+v", cp)
	}
}
