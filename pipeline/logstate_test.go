package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckpointerForgetsDestroyedContainersForAWhile: a destroyed
// container is remembered long enough to ignore its late acks, and then
// dropped, so that churning containers do not grow the agent.
func TestCheckpointerForgetsDestroyedContainersForAWhile(t *testing.T) {
	c, err := OpenCheckpointer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c.Forget("old")
	c.mu.Lock()
	c.forgot["old"] = time.Now().Add(-forgetHorizon - time.Minute)
	c.mu.Unlock()
	for i := range 2 * pruneEvery {
		id := fmt.Sprintf("c%d", i)
		c.Ack([]LogRecord{{ContainerID: id, Time: time.Now(), Body: []byte("x")}})
		c.Forget(id)
		// A late acknowledgement of a destroyed container's record
		// brings no position back.
		c.Ack([]LogRecord{{ContainerID: id, Time: time.Now(), Body: []byte("late")}})
		if _, ok := c.Get(id); ok {
			t.Fatalf("%s came back from a late acknowledgement", id)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.forgot["old"]; ok {
		t.Error("a container forgotten over the horizon ago is still remembered")
	}
	if len(c.cursors) != 0 {
		t.Errorf("%d positions of destroyed containers kept", len(c.cursors))
	}
}

// TestCheckpointerPrune drops positions loaded from the file for containers
// that are gone, and keeps the others and this run's own.
func TestCheckpointerPrune(t *testing.T) {
	dir := t.TempDir()
	c, _ := OpenCheckpointer(dir)
	for _, id := range []string{"alive", "gone", "gone-but-acked"} {
		c.Ack([]LogRecord{{ContainerID: id, Time: time.Now(), Body: []byte("x")}})
	}
	c2, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Created after the caller listed the containers, and acked already.
	c2.Ack([]LogRecord{{ContainerID: "gone-but-acked", Time: time.Now().Add(time.Second), Body: []byte("y")}})
	c2.Prune(func(id string) bool { return id == "alive" })
	if _, ok := c2.Get("alive"); !ok {
		t.Error("a live container's position was pruned")
	}
	if _, ok := c2.Get("gone"); ok {
		t.Error("a destroyed container's position survived Prune")
	}
	if _, ok := c2.Get("gone-but-acked"); !ok {
		t.Error("a position acknowledged in this run was pruned")
	}
	if err := c2.Save(); err != nil {
		t.Fatal(err)
	}
	c3, _ := OpenCheckpointer(dir)
	if ids := c3.IDs(); len(ids) != 2 {
		t.Errorf("saved positions after Prune: %v", ids)
	}
}

// ackLine acknowledges one more line of container id, ms milliseconds
// after a fixed base.
func ackLine(t testing.TB, c *Checkpointer, id string, ms int) {
	t.Helper()
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r := LogRecord{ContainerID: id, Time: base.Add(time.Duration(ms) * time.Millisecond), Stream: Stdout, Body: []byte(fmt.Sprintf("line %d", ms))}
	if err := c.Ack([]LogRecord{r}); err != nil {
		t.Fatal(err)
	}
}

// sameState fails unless a Checkpointer opened on dir now (as after a
// SIGKILL: nothing flushed on the way out) holds exactly c's positions.
func sameState(t *testing.T, c *Checkpointer, dir string) {
	t.Helper()
	after, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := c.IDs()
	if got := after.IDs(); len(got) != len(ids) {
		t.Fatalf("reopened state holds %d positions, want %d", len(got), len(ids))
	}
	for _, id := range ids {
		want, _ := c.Get(id)
		if got, ok := after.Get(id); !ok || got != want {
			t.Fatalf("%s reopened at %+v (%v), acknowledged %+v", id, got, ok, want)
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCheckpointerSaveWritesOnlyWhatChanged: with 1,000 containers known,
// an acknowledged line of one of them appends one short journal entry
// and leaves the snapshot alone; a restart finds every position.
func TestCheckpointerSaveWritesOnlyWhatChanged(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		ackLine(t, c, fmt.Sprintf("%064x", i), i)
	}
	snapshot, _ := os.ReadFile(filepath.Join(dir, stateFileName))
	before := fileSize(t, filepath.Join(dir, journalFileName))
	ackLine(t, c, fmt.Sprintf("%064x", 7), 5000)
	grew := fileSize(t, filepath.Join(dir, journalFileName)) - before
	if grew <= 0 || grew > 512 {
		t.Errorf("one changed position grew the journal by %d bytes", grew)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, stateFileName)); string(now) != string(snapshot) {
		t.Error("a save of one position rewrote the snapshot")
	}
	c.Forget(fmt.Sprintf("%064x", 8))
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	sameState(t, c, dir)
}

// TestCheckpointerJournalIsCompacted: the journal is folded into the
// snapshot once it outgrows it, and every acknowledged position survives
// a restart after every save, across compactions.
func TestCheckpointerJournalIsCompacted(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	c.compactMin = 4 << 10
	snapshots := 0
	last := ""
	for i := range 400 {
		if i%7 == 0 { // short-lived containers, destroyed a while later
			c.Forget(fmt.Sprintf("job%d", i-7)) // saved with the next Ack
			ackLine(t, c, fmt.Sprintf("job%d", i), i)
		}
		ackLine(t, c, fmt.Sprintf("c%d", i%5), i)
		data, _ := os.ReadFile(filepath.Join(dir, stateFileName))
		if string(data) != last {
			snapshots++
			last = string(data)
		}
		// Due once past the bound, so at most one save's entries over it.
		due := max(compactFactor*c.snapshotBytes, c.compactMin)
		if j := fileSize(t, filepath.Join(dir, journalFileName)); j > due+1024 {
			t.Fatalf("journal of %d bytes, compaction due at %d", j, due)
		}
		if i%10 == 0 {
			sameState(t, c, dir)
		}
	}
	if snapshots < 3 {
		t.Errorf("%d snapshots written in 400 saves with a 4 KiB journal bound", snapshots)
	}
	sameState(t, c, dir)
}

// TestCheckpointerIgnoresTornJournalTail: a crash during an append leaves a
// partial or garbled last line; it is ignored, the entries before it are
// kept, and the next save starts a new journal so that later entries are
// not hidden behind it.
func TestCheckpointerIgnoresTornJournalTail(t *testing.T) {
	for name, tail := range map[string]string{
		"partial line":  `1234abcd {"id":"c","cp":{"since":`,
		"bad checksum":  "00000000 {\"id\":\"c\"}\n",
		"zeroed blocks": string(make([]byte, 4096)),
		"garbage":       "\xff\xfe not a line at all\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c, _ := OpenCheckpointer(dir)
			ackLine(t, c, "c", 1)
			ackLine(t, c, "c", 2)
			ackLine(t, c, "d", 3)
			f, err := os.OpenFile(filepath.Join(dir, journalFileName), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(tail)
			f.Close()
			sameState(t, c, dir) // the torn tail changes nothing

			c2, err := OpenCheckpointer(dir)
			if err != nil {
				t.Fatalf("a torn journal tail is fatal: %v", err)
			}
			ackLine(t, c2, "c", 4)
			sameState(t, c2, dir)
		})
	}
}

// TestCheckpointerIgnoresStaleJournal: a journal left by a crash between a
// new snapshot and its journal (or beside a file an older agent rewrote)
// belongs to another generation and is not applied over the snapshot.
func TestCheckpointerIgnoresStaleJournal(t *testing.T) {
	dir := t.TempDir()
	c, _ := OpenCheckpointer(dir)
	ackLine(t, c, "c", 1)
	ackLine(t, c, "c", 2)
	stale, _ := os.ReadFile(filepath.Join(dir, journalFileName))
	want, _ := c.Get("c")
	// An older agent rewrites the snapshot without a generation.
	var f stateFile
	data, _ := os.ReadFile(filepath.Join(dir, stateFileName))
	json.Unmarshal(data, &f)
	f.Generation = 0
	f.Containers = map[string]LogCheckpoint{"c": {Latest: 1}}
	data, _ = json.Marshal(f)
	os.WriteFile(filepath.Join(dir, stateFileName), data, 0o600)
	c2, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c2.Get("c"); got != (LogCheckpoint{Latest: 1}) {
		t.Fatalf("stale journal applied: %+v (journal had %+v)", got, want)
	}
	// Saving again writes a new generation; the stale journal is gone.
	ackLine(t, c2, "c", 3)
	if now, _ := os.ReadFile(filepath.Join(dir, journalFileName)); string(now) == string(stale) {
		t.Fatal("the stale journal was kept")
	}
	sameState(t, c2, dir)
}

// TestCheckpointerLeavesNewerStateAlone: a state written by a newer
// version is neither moved aside nor overwritten; opening fails with an
// error naming the file and the version.
func TestCheckpointerLeavesNewerStateAlone(t *testing.T) {
	t.Run("snapshot", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, stateFileName)
		newer := `{"version":3,"saved_at":"2026-12-01T00:00:00Z","containers":{}}`
		os.WriteFile(path, []byte(newer), 0o600)
		c, err := OpenCheckpointer(dir)
		if c != nil || !errors.Is(err, ErrNewerState) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "version 3") {
			t.Fatalf("newer state file: %v, %v", c, err)
		}
		if data, _ := os.ReadFile(path); string(data) != newer {
			t.Fatal("the newer file was changed")
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "*.corrupt-*")); len(m) != 0 {
			t.Fatalf("the newer file was moved aside: %v", m)
		}
	})
	t.Run("journal", func(t *testing.T) {
		dir := t.TempDir()
		c, _ := OpenCheckpointer(dir)
		ackLine(t, c, "c", 1)
		var f stateFile
		data, _ := os.ReadFile(filepath.Join(dir, stateFileName))
		json.Unmarshal(data, &f)
		header, _ := appendLine(nil, journalHeader{Journal: journalVersion + 1, Generation: f.Generation})
		os.WriteFile(filepath.Join(dir, journalFileName), header, 0o600)
		if c, err := OpenCheckpointer(dir); c != nil || !errors.Is(err, ErrNewerState) || !strings.Contains(err.Error(), journalFileName) {
			t.Fatalf("newer journal: %v, %v", c, err)
		}
	})
}

// TestCheckpointerTellsWhenStateWasLost: an unreadable state is moved aside
// and Lost tells when it was last written, so that the reader need not
// ship every container's history again.
func TestCheckpointerTellsWhenStateWasLost(t *testing.T) {
	dir := t.TempDir()
	if c, _ := OpenCheckpointer(dir); c != nil {
		if _, lost := c.Lost(); lost {
			t.Fatal("a new state dir reports a lost state")
		}
	}
	path := filepath.Join(dir, stateFileName)
	os.WriteFile(path, []byte(`{"version":2,"containers":{"c":`), 0o600)
	written := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	os.Chtimes(path, written, written)
	c, err := OpenCheckpointer(dir)
	if c == nil || err == nil {
		t.Fatalf("corrupt state: %v, %v", c, err)
	}
	if at, lost := c.Lost(); !lost || !at.Equal(written) {
		t.Fatalf("Lost() = %v, %v; want %v, true", at, lost, written)
	}
}

// TestCheckpointerReportsSaveFailuresOncePerInterval: while saves fail,
// Ack returns nil, every failure is counted, one ERROR is logged per
// interval, and the recovery once; the positions are saved when the disk
// comes back.
func TestCheckpointerReportsSaveFailuresOncePerInterval(t *testing.T) {
	dir := t.TempDir()
	c, _ := OpenCheckpointer(dir)
	var logs bytes.Buffer
	tel := NewTelemetry()
	c.ReportTo(slog.New(slog.NewTextHandler(&logs, nil)), tel)
	ackLine(t, c, "c", 0)
	full := func(string, []byte) error { return errors.New("no space left on device") }
	c.writeFile, c.appendFile = full, full
	for i := range 50 {
		ackLine(t, c, "c", i+1)
	}
	if n := tel.CheckpointSaveFailures.Load(); n != 50 {
		t.Errorf("%d failures counted, want 50", n)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERRORs logged for 50 failed saves in a second, want 1:\n%s", n, logs.String())
	}
	c.writeFile, c.appendFile = writeFileAtomic, appendFileSync
	ackLine(t, c, "c", 100)
	ackLine(t, c, "c", 101)
	if n := strings.Count(logs.String(), "recovered"); n != 1 {
		t.Errorf("recovery logged %d times:\n%s", n, logs.String())
	}
	if tel.CheckpointSaves.Load() == 0 || tel.CheckpointBytesWritten.Load() == 0 {
		t.Error("successful saves not counted")
	}
	sameState(t, c, dir)
}

// WatchingSince is set when a state is new, kept across saves and
// restarts (a save of another container does not move it), and taken from
// the last save for a state of an agent that did not record it.
func TestCheckpointerWatchingSinceIsKeptAcrossSavesAndRestarts(t *testing.T) {
	dir := t.TempDir()
	before := time.Now().UTC()
	c, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := c.WatchingSince()
	if first.Before(before) || first.After(time.Now()) {
		t.Fatalf("new state watching since %v, want about now (%v)", first, before)
	}
	time.Sleep(10 * time.Millisecond)
	if err := c.Begin("a", 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Begin("b", 0); err != nil {
		t.Fatal(err)
	}
	c2, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := c2.WatchingSince(); !got.Equal(first) {
		t.Errorf("after saves and a restart, watching since %v, want %v", got, first)
	}
	if !c2.SavedAt().After(first) {
		t.Errorf("saved at %v, want after %v", c2.SavedAt(), first)
	}

	old := t.TempDir()
	saved := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	if err := os.WriteFile(filepath.Join(old, stateFileName), []byte(`{"version":2,"saved_at":"2026-11-01T12:00:00Z","containers":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c3, err := OpenCheckpointer(old)
	if err != nil {
		t.Fatal(err)
	}
	if got := c3.WatchingSince(); !got.Equal(saved) {
		t.Errorf("older state: watching since %v, want its last save %v", got, saved)
	}
}

// Resume asks for the skipped records to be seeded only when the position
// comes from an earlier run: this run's cursor holds them already.
func TestCheckpointerResumeSeedsOnlyPositionsOfEarlierRuns(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := c.Resume("c"); ok {
		t.Fatal("a container never read has a position")
	}
	at := time.Now()
	if err := c.Ack([]LogRecord{{ContainerID: "c", Time: at, Body: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	cp, seed, ok := c.Resume("c")
	if !ok || seed || cp.Latest != at.UnixNano() {
		t.Fatalf("this run's position: %+v seed=%v ok=%v, want Latest %d, no seeding", cp, seed, ok, at.UnixNano())
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c2, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	cp, seed, ok = c2.Resume("c")
	if !ok || !seed || cp.Latest != at.UnixNano() {
		t.Fatalf("an earlier run's position: %+v seed=%v ok=%v, want Latest %d, seeding", cp, seed, ok, at.UnixNano())
	}
}
