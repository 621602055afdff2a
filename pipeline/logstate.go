package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// The state directory holds a snapshot of every container's position and a
// journal of the positions changed since: a save appends only what changed,
// so its cost follows the batch, not the host. Measured at 5,000
// containers, rewriting the whole file after every acknowledged batch cost
// 1.3 MB and 34-49 ms (12 ms of CPU) per save, ~110 GB of writes a day at
// one save a second.
const (
	stateFileName   = "log-checkpoints.json"
	journalFileName = "log-checkpoints.journal"
)

// stateVersion 2 hashes bodies with XXH64 (HashBody); version 1 files,
// whose hashes were FNV-1a, are read with their hashes dropped. The
// journal did not change the snapshot's format: an older agent reads the
// snapshot alone, which is older than the journal, so it repeats lines but
// loses none.
const stateVersion = 2

// journalVersion is the journal's format; see appendLine.
const journalVersion = 1

// The journal is folded into a new snapshot once it outgrows
// compactFactor snapshots (and compactMin bytes): the bytes written are
// then at most 1/compactFactor more than the journal's, and a start
// replays at most that much.
const (
	compactFactor = 4
	compactMin    = 1 << 20
)

// maxKeptSaveBuffer bounds the encoding buffer kept between saves.
const maxKeptSaveBuffer = 64 << 10

type stateFile struct {
	Version int       `json:"version"`
	SavedAt time.Time `json:"saved_at"`
	// WatchingSince is when the first agent with this state started:
	// a stopped container without a position that ran after it ran while
	// an agent watched or should have. Zero in files of older agents.
	WatchingSince time.Time `json:"watching_since,omitzero"`
	// Generation names this snapshot; the journal that continues it
	// carries the same. Zero in files of agents without a journal.
	Generation uint64                   `json:"generation,omitempty,string"`
	Containers map[string]LogCheckpoint `json:"containers"`
}

// journalHeader is the journal's first line.
type journalHeader struct {
	Journal    int    `json:"journal"` // journalVersion
	Generation uint64 `json:"generation,string"`
}

// journalEntry is one container's position as of a save; a nil Checkpoint
// means the container has none any more (destroyed, pruned).
type journalEntry struct {
	ID         string         `json:"id"`
	Checkpoint *LogCheckpoint `json:"cp,omitempty"`
}

// Checkpointer keeps every container's acknowledged log position and saves
// it after every acknowledged batch, before Ack returns: a SIGKILL
// therefore repeats at most the batch that was in flight, and a position
// is never saved before its records were acknowledged. A save appends the
// changed positions to the journal and fsyncs it; now and then the journal
// is folded into a new snapshot (temp file, fsync, rename).
type Checkpointer struct {
	path, journalPath string
	saveMu            sync.Mutex // one write at a time, so an older state never lands last

	mu      sync.Mutex
	loaded  map[string]LogCheckpoint // as read at start, until superseded
	cursors map[string]*LogCursor    // acknowledged positions this run
	// forgot holds destroyed containers for a while, so that acks of their
	// records still in flight do not bring their positions back; pruned
	// after forgetHorizon so that a host churning containers does not grow it.
	forgot  map[string]time.Time
	savedAt time.Time
	// watchingSince: stateFile.WatchingSince, now for a new state.
	watchingSince time.Time
	// changed holds the containers whose position changed since the last
	// save; spare is the set being saved, reused so saves allocate none.
	changed, spare map[string]struct{}
	// dirty makes the next save write a whole snapshot and a new journal:
	// there is none for this snapshot yet, or an append failed and may
	// have left a torn line that later entries must not follow.
	dirty         bool
	snapshotBytes int64
	journalBytes  int64
	compactMin    int64     // compactMin, smaller in tests
	lost          time.Time // last write of a state moved aside as unreadable

	// Written by saves only (saveMu held).
	entries []journalEntry
	buf     []byte

	report *saveReport // nil: Ack returns save errors

	// writeFile and appendFile are replaceable so tests can make writes fail.
	writeFile  func(path string, data []byte) error
	appendFile func(path string, data []byte) error
}

// ErrNewerState is returned by OpenCheckpointer for a state written by a
// newer dockscope: it is left alone rather than moved aside or overwritten.
var ErrNewerState = errors.New("log state written by a newer dockscope")

// OpenCheckpointer loads dir's snapshot and journal, creating dir if
// needed. A snapshot that cannot be parsed is moved aside (named in the
// error, which is returned together with a usable, empty Checkpointer; Lost
// tells when it was last written) rather than silently overwritten. A
// state written by a newer version is an error wrapping ErrNewerState,
// with no Checkpointer: it is not touched. A journal's torn tail (a crash
// during an append) is ignored: those positions were not yet promised.
func OpenCheckpointer(dir string) (*Checkpointer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	c := &Checkpointer{
		path:        filepath.Join(dir, stateFileName),
		journalPath: filepath.Join(dir, journalFileName),
		loaded:      map[string]LogCheckpoint{},
		cursors:     map[string]*LogCursor{},
		forgot:      map[string]time.Time{},
		changed:     map[string]struct{}{},
		spare:       map[string]struct{}{},
		dirty:       true,
		compactMin:  compactMin,
		writeFile:   writeFileAtomic,
		appendFile:  appendFileSync,
	}
	data, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		c.watchingSince = time.Now().UTC()
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading log checkpoints: %w", err)
	}
	var f stateFile
	err = json.Unmarshal(data, &f)
	if err == nil && f.Version > stateVersion {
		return nil, fmt.Errorf("log checkpoints %s: state version %d, this dockscope reads up to %d; left untouched (run the newer version, or move the file away to read every container's log from the start): %w",
			c.path, f.Version, stateVersion, ErrNewerState)
	}
	if err != nil || f.Version < 1 {
		if err == nil {
			err = fmt.Errorf("unknown version %d", f.Version)
		}
		if fi, serr := os.Stat(c.path); serr == nil {
			c.lost = fi.ModTime()
		}
		aside := fmt.Sprintf("%s.corrupt-%d", c.path, time.Now().Unix())
		if rerr := os.Rename(c.path, aside); rerr != nil {
			return nil, fmt.Errorf("log checkpoints %s unreadable (%v) and could not be moved aside: %w", c.path, err, rerr)
		}
		return c, fmt.Errorf("log checkpoints %s unreadable, moved to %s; logs are read from the start: %w", c.path, aside, err)
	}
	if f.Version == 1 {
		// Their hashes are another function's: resuming matches the
		// records at a checkpoint by timestamp and stream (SamePrint).
		for id, cp := range f.Containers {
			cp.First.Hash, cp.Last.Hash = 0, 0
			f.Containers[id] = cp
		}
	}
	if f.Containers != nil {
		c.loaded = f.Containers
	}
	c.savedAt = f.SavedAt
	c.watchingSince = f.WatchingSince
	if c.watchingSince.IsZero() {
		// An older agent's state: it was watching when it saved.
		c.watchingSince = f.SavedAt
	}
	c.snapshotBytes = int64(len(data))
	if f.Generation != 0 {
		if err := c.replayJournal(f.Generation); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// replayJournal applies the journal that continues snapshot generation gen.
// A journal of another generation is stale (the snapshot was written after
// it, or by an agent without a journal) and is ignored, as is everything
// from its first damaged line on.
func (c *Checkpointer) replayJournal(gen uint64) error {
	data, err := os.ReadFile(c.journalPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading log checkpoint journal: %w", err)
	}
	line, rest, ok := nextLine(data)
	var h journalHeader
	if !ok || json.Unmarshal(line, &h) != nil {
		return nil // torn at its header: nothing was appended to it
	}
	if h.Journal > journalVersion {
		return fmt.Errorf("log checkpoint journal %s: version %d, this dockscope reads up to %d; left untouched (run the newer version, or move it away): %w",
			c.journalPath, h.Journal, journalVersion, ErrNewerState)
	}
	if h.Generation != gen {
		return nil
	}
	entries := 0
	for {
		line, rest, ok = nextLine(rest)
		if !ok {
			break
		}
		var e journalEntry
		if json.Unmarshal(line, &e) != nil {
			break
		}
		if e.Checkpoint == nil {
			delete(c.loaded, e.ID)
		} else {
			c.loaded[e.ID] = *e.Checkpoint
		}
		entries++
	}
	if len(rest) > 0 {
		// A torn tail: appending after it would hide the new entries
		// behind it, so the next save writes a new snapshot and journal.
		return nil
	}
	c.journalBytes, c.dirty = int64(len(data)), false
	if entries > 0 {
		if fi, err := os.Stat(c.journalPath); err == nil && fi.ModTime().After(c.savedAt) {
			c.savedAt = fi.ModTime()
		}
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendLine appends one journal line: the CRC-32C of the JSON in eight hex
// digits, a space, the JSON, a newline. The checksum tells a torn or
// garbled tail (a crash during the append) from an entry.
func appendLine(buf []byte, v any) ([]byte, error) {
	start := len(buf)
	buf = append(buf, "00000000 "...)
	var err error
	if buf, err = appendJSON(buf, v); err != nil {
		return buf[:start], err
	}
	var sum [8]byte
	hex := strconv.AppendUint(sum[:0], uint64(crc32.Checksum(buf[start+9:], castagnoli)), 16)
	copy(buf[start+8-len(hex):start+8], hex)
	return append(buf, '\n'), nil
}

func appendJSON(buf []byte, v any) ([]byte, error) {
	b := bytes.NewBuffer(buf)
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return buf, err
	}
	out := b.Bytes()
	return out[:len(out)-1], nil // Encode's newline
}

// nextLine returns the JSON of the first line of data if the line is whole
// and its checksum matches, and what follows it.
func nextLine(data []byte) (line, rest []byte, ok bool) {
	nl := bytes.IndexByte(data, '\n')
	if nl < 9 || data[8] != ' ' {
		return nil, data, false
	}
	sum, err := strconv.ParseUint(string(data[:8]), 16, 32)
	if err != nil || uint32(sum) != crc32.Checksum(data[9:nl], castagnoli) {
		return nil, data, false
	}
	return data[9:nl], data[nl+1:], true
}

// SavedAt is when the state was last written, zero if never: it tells
// whether an agent ran on this host before.
func (c *Checkpointer) SavedAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.savedAt
}

// WatchingSince is when the first agent with this state started (now, for
// a new state; the last save, for a state of an agent that did not record
// it). Unlike SavedAt, it does not move when another container's position is
// saved: a container that stopped before its reader began, and after that
// save, has no position and must still be read.
func (c *Checkpointer) WatchingSince() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watchingSince
}

// Lost reports whether OpenCheckpointer found the state unreadable and
// moved it aside, and when that state was last written (its file's
// modification time, zero if unknown). Records acknowledged before then
// were delivered, so a reader may resume from about that time instead of
// re-shipping every container's whole log.
func (c *Checkpointer) Lost() (lastWritten time.Time, lost bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost, !c.lost.IsZero()
}

// Get returns the position to resume a container's log from.
func (c *Checkpointer) Get(id string) (LogCheckpoint, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getLocked(id)
}

// Resume returns the position to resume a container's log from, and
// whether the records found already delivered while resuming are to be
// Seeded. They are not when the position is this run's own acknowledged
// cursor: it holds them already, and counting them again made the next
// reader skip as many new records (a second reload within a second lost
// lines).
func (c *Checkpointer) Resume(id string) (cp LogCheckpoint, seed, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, live := c.cursors[id]; live && !cur.Empty() {
		return cur.Checkpoint(), false, true
	}
	cp, ok = c.loaded[id]
	return cp, ok, ok
}

func (c *Checkpointer) getLocked(id string) (LogCheckpoint, bool) {
	if cur, ok := c.cursors[id]; ok && !cur.Empty() {
		return cur.Checkpoint(), true
	}
	cp, ok := c.loaded[id]
	return cp, ok
}

// Begin records that a container's log is owed from from (unix ns; 0 for
// its start) when it has no position yet, and saves it before returning:
// an agent killed before the first of its records is acknowledged then
// reads it again on the next start, whether the container still runs or
// not and whatever was saved since. Concurrent Begins share their saves.
func (c *Checkpointer) Begin(id string, from int64) error {
	c.mu.Lock()
	if _, ok := c.getLocked(id); ok {
		c.mu.Unlock()
		return nil
	}
	cp := LogCheckpoint{}
	if from > 0 {
		cp.Latest = from - 1 // resumed just after: from on
	}
	c.loaded[id] = cp
	delete(c.forgot, id)
	c.changed[id] = struct{}{}
	c.mu.Unlock()
	return c.Save()
}

// Hold keeps the acknowledged position of a container at or before ts
// until a record of stream s stamped ts (or later) is acknowledged: the
// reader has begun a line there (a long one, in pieces) and queues
// records read after its first piece, which must not carry the position
// past the line's start.
func (c *Checkpointer) Hold(id string, s Stream, ts int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, gone := c.forgot[id]; gone {
		return
	}
	c.cursor(id).Hold(s, ts)
}

// Seed records that a record was found already delivered while resuming,
// so that this run's position includes it. It is saved with the next save.
func (c *Checkpointer) Seed(id string, p RecordPrint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cursor(id).Advance(p)
	c.changed[id] = struct{}{}
}

func (c *Checkpointer) cursor(id string) *LogCursor {
	cur, ok := c.cursors[id]
	if !ok {
		cur = &LogCursor{}
		c.cursors[id] = cur
	}
	delete(c.forgot, id)
	return cur
}

// Ack advances the positions past delivered records and saves them. After
// ReportTo, a failed save is reported there and Ack returns nil; the
// positions stay in memory and the next save retries them.
func (c *Checkpointer) Ack(records []LogRecord) error {
	c.mu.Lock()
	// Batches hold runs of one container's records: look its cursor up
	// once per run, not once per record.
	var cur *LogCursor // nil: the container was destroyed
	id, looked := "", false
	for i := range records {
		r := &records[i]
		if r.Event != nil {
			continue // an event has no position in the container's log
		}
		if !looked || r.ContainerID != id {
			id, looked, cur = r.ContainerID, true, nil
			if _, gone := c.forgot[id]; !gone {
				cur = c.cursor(id)
				c.changed[id] = struct{}{}
			}
		}
		if cur == nil {
			continue // destroyed while its records were in flight
		}
		cur.Advance(PrintOf(r))
	}
	report := c.report
	c.mu.Unlock()
	err := c.Save()
	if report != nil {
		report.saved(err)
		return nil
	}
	return err
}

// Forget drops a container's position: it was destroyed.
func (c *Checkpointer) Forget(id string) {
	c.mu.Lock()
	delete(c.cursors, id)
	delete(c.loaded, id)
	now := time.Now()
	c.forgot[id] = now
	if len(c.forgot)%pruneEvery == 0 {
		for id, at := range c.forgot {
			if now.Sub(at) > forgetHorizon {
				delete(c.forgot, id)
			}
		}
	}
	c.changed[id] = struct{}{}
	c.mu.Unlock()
}

// A destroyed container's records are normally acknowledged within seconds;
// an hour covers a backend that was down meanwhile. Should one arrive later
// still, the position it brings back is dropped by Prune at the next start.
const (
	forgetHorizon = time.Hour
	pruneEvery    = 256 // forgotten containers between prunes
)

// Prune drops the positions read from the file for containers that no
// longer exist: those destroyed while no agent ran (or while the agent was
// cut off from the daemon). exists reports whether a container does. This
// run's own positions are left to Forget: a container created after the
// caller listed them may already have one.
func (c *Checkpointer) Prune(exists func(id string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.loaded {
		if _, ours := c.cursors[id]; !ours && !exists(id) {
			delete(c.loaded, id)
			c.changed[id] = struct{}{}
		}
	}
}

// IDs lists the containers with a position.
func (c *Checkpointer) IDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.loaded)+len(c.cursors))
	for id := range c.loaded {
		ids = append(ids, id)
	}
	for id := range c.cursors {
		if _, ok := c.loaded[id]; !ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// Save writes what changed since the last save: the changed positions
// appended to the journal and fsynced, or, when the journal has outgrown
// the snapshot (or cannot be appended to), a new snapshot and journal.
// Either way a crash leaves the old or the new position of each container,
// never a torn file that is read as a position.
func (c *Checkpointer) Save() error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	if c.dirty || c.journalBytes >= max(compactFactor*c.snapshotBytes, c.compactMin) {
		return c.compactLocked()
	}
	if len(c.changed) == 0 {
		c.mu.Unlock()
		return nil
	}
	// Copy the positions out under the lock, encode them outside it: the
	// readers' Seed and the exporter's next Ack need it.
	entries := c.entries[:0]
	for id := range c.changed {
		e := journalEntry{ID: id}
		if cp, ok := c.getLocked(id); ok {
			e.Checkpoint = &cp
		}
		entries = append(entries, e)
	}
	saving := c.changed
	c.changed, c.spare = c.spare, nil
	c.mu.Unlock()

	buf := c.buf[:0]
	var err error
	for i := range entries {
		if buf, err = appendLine(buf, &entries[i]); err != nil {
			break
		}
	}
	clear(entries)
	c.entries, c.buf = entries[:0], buf[:0]
	if cap(buf) > maxKeptSaveBuffer {
		// A save of every container (Prune at start): do not keep its
		// buffers for the one-container saves that follow.
		c.entries, c.buf = nil, nil
	}
	if err == nil {
		err = c.appendFile(c.journalPath, buf)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		for id := range saving {
			c.changed[id] = struct{}{}
		}
		clear(saving)
		c.spare = saving
		c.dirty = true
		return fmt.Errorf("saving log checkpoints to %s: %w", c.journalPath, err)
	}
	clear(saving)
	c.spare = saving
	c.journalBytes += int64(len(buf))
	c.savedAt = time.Now().UTC()
	c.count(int64(len(buf)))
	return nil
}

// count records a save of n bytes in the telemetry given to ReportTo.
func (c *Checkpointer) count(n int64) {
	if c.report != nil && c.report.tel != nil {
		c.report.tel.CheckpointSaves.Add(1)
		c.report.tel.CheckpointBytesWritten.Add(uint64(n))
	}
}

// compactLocked writes every position as a new snapshot, then starts its
// journal. c.mu is held on entry and released.
func (c *Checkpointer) compactLocked() error {
	f := stateFile{Version: stateVersion, SavedAt: time.Now().UTC(), WatchingSince: c.watchingSince, Generation: rand.Uint64() | 1}
	f.Containers = make(map[string]LogCheckpoint, len(c.loaded)+len(c.cursors))
	for id, cp := range c.loaded {
		f.Containers[id] = cp
	}
	for id := range c.cursors {
		if cp, ok := c.getLocked(id); ok {
			f.Containers[id] = cp
		}
	}
	saving := c.changed
	c.changed, c.spare = c.spare, nil
	c.dirty = false
	c.mu.Unlock()

	err := c.writeSnapshot(&f)

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		for id := range saving {
			c.changed[id] = struct{}{}
		}
		c.dirty = true
	} else {
		c.savedAt = f.SavedAt
		c.count(c.snapshotBytes + c.journalBytes)
	}
	clear(saving)
	c.spare = saving
	return err
}

// writeSnapshot writes the snapshot, then the new journal holding only its
// header. A crash between the two leaves the old journal, whose generation
// no longer matches: it is ignored, and the snapshot already holds it.
func (c *Checkpointer) writeSnapshot(f *stateFile) error {
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encoding log checkpoints: %w", err)
	}
	if err := c.writeFile(c.path, data); err != nil {
		return fmt.Errorf("saving log checkpoints to %s: %w", c.path, err)
	}
	header, err := appendLine(nil, journalHeader{Journal: journalVersion, Generation: f.Generation})
	if err != nil {
		return fmt.Errorf("encoding log checkpoint journal: %w", err)
	}
	if err := c.writeFile(c.journalPath, header); err != nil {
		return fmt.Errorf("starting log checkpoint journal %s: %w", c.journalPath, err)
	}
	c.mu.Lock()
	c.snapshotBytes, c.journalBytes = int64(len(data)), int64(len(header))
	c.mu.Unlock()
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// The directory is not synced after the rename: should the host lose
	// power before the filesystem commits it, the file found is the one
	// before (a batch or two repeated), never a torn one. A snapshot and
	// its journal found out of step are told apart by their generation.
	return os.Rename(tmp.Name(), path)
}

// appendFileSync appends data to an existing file and fsyncs it. The file
// is opened per save rather than held, so that a Checkpointer needs no
// Close and reloads never leak a descriptor: the open costs microseconds
// against the fsync's milliseconds.
func appendFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// saveReport reports failed saves for Ack: each one counted, logged once
// per interval with the count since, and the recovery logged once.
type saveReport struct {
	logger   *slog.Logger
	tel      *Telemetry
	interval time.Duration

	mu       sync.Mutex
	failing  bool
	lastLog  time.Time
	unlogged int
}

// saveReportInterval spaces the ERRORs of a save that keeps failing.
const saveReportInterval = time.Minute

// ReportTo makes Ack report failed saves itself instead of returning them:
// each failure counts in tel.CheckpointSaveFailures, the first and then at
// most one a minute is logged as an ERROR with the failures since, and the
// recovery is logged once. A failed save loses nothing: the positions stay
// in memory and the next save retries them; lines are repeated only if the
// agent stops before one succeeds.
func (c *Checkpointer) ReportTo(logger *slog.Logger, tel *Telemetry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report = &saveReport{logger: logger, tel: tel, interval: saveReportInterval}
}

func (r *saveReport) saved(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		if r.failing {
			r.failing = false
			r.logger.Info("saving log checkpoints recovered", "failures_unlogged", r.unlogged)
			r.unlogged = 0
		}
		return
	}
	if r.tel != nil {
		r.tel.CheckpointSaveFailures.Add(1)
	}
	now := time.Now()
	if r.failing && now.Sub(r.lastLog) < r.interval {
		r.unlogged++
		return
	}
	r.logger.Error("saving log checkpoints failed; positions are kept in memory and retried, lines may be shipped again if the agent stops first",
		"err", err, "failures_since_last_log", r.unlogged)
	r.failing, r.lastLog, r.unlogged = true, now, 0
}
