package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// stateFileName is the checkpoint file inside the state directory.
const stateFileName = "log-checkpoints.json"

// stateVersion 2 hashes bodies with XXH64 (HashBody); version 1 files,
// whose hashes were FNV-1a, are read with their hashes dropped.
const stateVersion = 2

type stateFile struct {
	Version    int                      `json:"version"`
	SavedAt    time.Time                `json:"saved_at"`
	Containers map[string]LogCheckpoint `json:"containers"`
}

// Checkpointer keeps every container's acknowledged log position and saves
// it to one small file, atomically, after every acknowledged batch: a
// SIGKILL therefore repeats at most the batch that was in flight.
type Checkpointer struct {
	path   string
	saveMu sync.Mutex // one write at a time, so an older state never lands last

	mu      sync.Mutex
	loaded  map[string]LogCheckpoint // as read at start, until superseded
	cursors map[string]*LogCursor    // acknowledged positions this run
	// forgot holds destroyed containers for a while, so that acks of their
	// records still in flight do not bring their positions back; pruned
	// after forgetHorizon so that a host churning containers does not grow it.
	forgot  map[string]time.Time
	savedAt time.Time
	dirty   bool

	// writeFile is replaceable so tests can make the write fail.
	writeFile func(path string, data []byte) error
}

// OpenCheckpointer loads dir's checkpoint file, creating dir if needed. A
// file that cannot be parsed is moved aside (named in the error, which is
// returned together with a usable, empty Checkpointer) rather than silently
// overwritten.
func OpenCheckpointer(dir string) (*Checkpointer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	c := &Checkpointer{
		path:      filepath.Join(dir, stateFileName),
		loaded:    map[string]LogCheckpoint{},
		cursors:   map[string]*LogCursor{},
		forgot:    map[string]time.Time{},
		writeFile: writeFileAtomic,
	}
	data, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading log checkpoints: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil || f.Version < 1 || f.Version > stateVersion {
		if err == nil {
			err = fmt.Errorf("unknown version %d", f.Version)
		}
		aside := fmt.Sprintf("%s.corrupt-%d", c.path, time.Now().Unix())
		if rerr := os.Rename(c.path, aside); rerr != nil {
			return nil, fmt.Errorf("log checkpoints %s unreadable (%v) and could not be moved aside: %w", c.path, err, rerr)
		}
		return c, fmt.Errorf("log checkpoints %s unreadable, moved to %s; logs are read from the start: %w", c.path, aside, err)
	}
	if f.Version == 1 {
		// Their hashes are another function's: resuming matches the
		// records at a checkpoint by timestamp and stream (samePrint).
		for id, cp := range f.Containers {
			cp.First.Hash, cp.Last.Hash = 0, 0
			f.Containers[id] = cp
		}
	}
	if f.Containers != nil {
		c.loaded = f.Containers
	}
	c.savedAt = f.SavedAt
	return c, nil
}

// SavedAt is when the file was last written, zero if never: it tells
// whether an agent ran on this host before.
func (c *Checkpointer) SavedAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.savedAt
}

// Get returns the position to resume a container's log from.
func (c *Checkpointer) Get(id string) (LogCheckpoint, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getLocked(id)
}

func (c *Checkpointer) getLocked(id string) (LogCheckpoint, bool) {
	if cur, ok := c.cursors[id]; ok && !cur.Empty() {
		return cur.Checkpoint(), true
	}
	cp, ok := c.loaded[id]
	return cp, ok
}

// Seed records that a record was found already delivered while resuming,
// so that this run's position includes it.
func (c *Checkpointer) Seed(id string, p RecordPrint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cursor(id).Advance(p)
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

// Ack advances the positions past delivered records and saves the file.
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
			}
		}
		if cur == nil {
			continue // destroyed while its records were in flight
		}
		cur.Advance(PrintOf(r))
	}
	c.dirty = c.dirty || len(records) > 0
	c.mu.Unlock()
	return c.Save()
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
	c.dirty = true
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
			c.dirty = true
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

// Save writes the file if anything changed: temp file, fsync, rename, so a
// crash leaves either the old or the new file (writeFileAtomic).
func (c *Checkpointer) Save() error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return nil
	}
	f := stateFile{Version: stateVersion, SavedAt: time.Now().UTC(), Containers: maps.Clone(c.loaded)}
	for id := range c.cursors {
		if cp, ok := c.getLocked(id); ok {
			f.Containers[id] = cp
		}
	}
	c.dirty = false
	c.mu.Unlock()

	data, err := json.Marshal(&f)
	if err != nil {
		return fmt.Errorf("encoding log checkpoints: %w", err)
	}
	if err := c.writeFile(c.path, data); err != nil {
		c.mu.Lock()
		c.dirty = true
		c.mu.Unlock()
		return fmt.Errorf("saving log checkpoints to %s: %w", c.path, err)
	}
	c.mu.Lock()
	c.savedAt = f.SavedAt
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
	// before (a batch or two repeated), never a torn one. Its fsync was a
	// quarter of a save's cost, and saves follow every acknowledged batch.
	return os.Rename(tmp.Name(), path)
}
