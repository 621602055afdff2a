package pipeline

import (
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"
)

// ResumeSlack is how far before the newest record a resumed log stream
// starts. stdout and stderr are stamped by two goroutines in dockerd, so a
// line can carry a timestamp slightly older than one written before it; a
// stream reopened at exactly the newest timestamp would skip such a line on
// engines that filter `since` line by line.
const ResumeSlack = time.Second

// MaxResumeWindow caps the records a cursor remembers. A container logging
// faster than this many lines per second gets a slack shorter than
// ResumeSlack (about 170 ms at the Engine's ~190k lines/s ceiling), still
// far more than the stdout/stderr stamping skew; without the cap, each of
// its two cursors (read and acknowledged) held megabytes.
const MaxResumeWindow = 32 << 10

// RecordPrint identifies a record well enough to recognise it when a stream
// is read again: its timestamp, stream and a hash of its body.
type RecordPrint struct {
	TimeNanos int64  `json:"t"`
	Stream    Stream `json:"s"`
	Hash      uint64 `json:"h,string"`
}

// PrintOf fingerprints a record, with the hash stored in it if any.
func PrintOf(r *LogRecord) RecordPrint {
	h := r.Hash
	if h == 0 {
		h = HashBody(r.Body, r.Truncated)
	}
	return RecordPrint{TimeNanos: r.Time.UnixNano(), Stream: r.Stream, Hash: h}
}

// HashBody is the hash of a record's fingerprint: XXH64 (seed 0) of the
// body, inverted for a truncated record. It is persisted in checkpoints, so
// it changes only with stateVersion. XXH64 reads eight bytes at a time:
// FNV-1a, which version 1 files hold, took a multiplication per byte,
// ~120 ns of the ~1.3 µs a 70-byte line costs the agent.
func HashBody(body []byte, truncated bool) uint64 {
	sum := xxhash.Sum64(body)
	if truncated {
		sum = ^sum
	}
	return sum
}

// samePrint reports whether a record read again is the one a checkpoint
// holds. A zero hash in the checkpoint is unknown (a file of version 1,
// whose hashes were FNV-1a): the timestamp and stream must do.
func samePrint(read, held RecordPrint) bool {
	if held.Hash == 0 {
		read.Hash = 0
	}
	return read == held
}

// LogCursor is a position in one container's log, advanced record by record
// in stream order: by the reader as it reads, by the checkpointer as the
// backend acknowledges.
//
// Resuming works by re-reading, not by fingerprint lookup: a stream
// reopened with since=S returns the same records in the same order as
// before (Docker reads its own file), so the records to skip are a count —
// the records already handled from S on — checked against the first and
// last of them. The cursor therefore keeps, in memory, the timestamps and
// prints of the records of the last ResumeSlack; what it persists is a
// handful of numbers, cheap enough to save after every acknowledged batch.
type LogCursor struct {
	// window holds the records handled whose timestamp is within
	// ResumeSlack of latest, in stream order: window[head:].
	window []RecordPrint
	head   int
	latest int64 // newest timestamp handled, ns
	// skewed holds, in order, the indices in window of the records stamped
	// earlier than a record handled before them (stdout/stderr skew). Only
	// they can be older than the window's first record, so Checkpoint
	// need not look at the others: it runs after every acknowledged batch,
	// and the window holds up to MaxResumeWindow records.
	skewed []int
}

// Advance records one more handled record.
func (c *LogCursor) Advance(p RecordPrint) {
	if p.TimeNanos < c.latest {
		c.skewed = append(c.skewed, len(c.window))
	} else {
		c.latest = p.TimeNanos
	}
	c.window = append(c.window, p)
	limit := c.latest - int64(ResumeSlack)
	for c.head < len(c.window) && c.window[c.head].TimeNanos < limit {
		c.head++
	}
	if n := len(c.window) - c.head; n > MaxResumeWindow {
		c.head += n - MaxResumeWindow
	}
	k := 0
	for k < len(c.skewed) && c.skewed[k] < c.head {
		k++
	}
	c.skewed = c.skewed[k:]
	// Reuse the array once the consumed prefix dominates it.
	if c.head > 1024 && c.head > len(c.window)/2 {
		n := copy(c.window, c.window[c.head:])
		c.window = c.window[:n]
		for i := range c.skewed {
			c.skewed[i] -= c.head
		}
		c.head = 0
	}
}

// Empty reports whether nothing was handled yet.
func (c *LogCursor) Empty() bool { return c.latest == 0 && c.head == len(c.window) }

// Checkpoint condenses the cursor into what a resume needs.
func (c *LogCursor) Checkpoint() LogCheckpoint {
	w := c.window[c.head:]
	if len(w) == 0 {
		return LogCheckpoint{Latest: c.latest}
	}
	since := w[0].TimeNanos
	cp := LogCheckpoint{
		Since:      since,
		Latest:     c.latest,
		First:      w[0],
		Last:       w[len(w)-1],
		SkipFromOn: len(w),
	}
	// Every record but a skewed one is at least as new as the first.
	cp.SkipAtOrAfter = len(w)
	for _, i := range c.skewed {
		if c.window[i].TimeNanos < since {
			cp.SkipAtOrAfter--
		}
	}
	return cp
}

// LogCheckpoint is a persisted log position.
type LogCheckpoint struct {
	// Since is the timestamp to reopen the stream at (inclusive).
	Since int64 `json:"since"`
	// Latest is the newest timestamp handled.
	Latest int64 `json:"latest"`
	// First and Last are the first and last records handled from Since on,
	// in stream order.
	First RecordPrint `json:"first"`
	Last  RecordPrint `json:"last"`
	// The number of records a reopened stream returns that were already
	// handled, for the two ways engines filter `since`: SkipAtOrAfter when
	// each line is filtered on its own timestamp (Engine < 24),
	// SkipFromOn when filtering stops at the first line at or after Since
	// (Engine ≥ 24), which then also returns older, skewed lines.
	SkipAtOrAfter int `json:"skip_at_or_after"`
	SkipFromOn    int `json:"skip_from_on"`
}

// SinceParam is the logs endpoint's since value, or "" to read from the start.
func (cp LogCheckpoint) SinceParam() string {
	if cp.Since == 0 {
		if cp.Latest == 0 {
			return ""
		}
		// Nothing to skip, but the stream must still not restart from
		// the beginning: resume just after the newest record.
		n := cp.Latest + 1
		return fmt.Sprintf("%d.%09d", n/1e9, n%1e9)
	}
	return fmt.Sprintf("%d.%09d", cp.Since/1e9, cp.Since%1e9)
}

// Resume is the filter for a stream reopened at a checkpoint: it drops the
// records that were already handled and reports a gap when the checkpoint's
// records are gone (Docker rotated them away while nobody read).
type Resume struct {
	cp      LogCheckpoint
	skip    int // records still to drop
	seen    int
	decided bool

	// Gap is set when the records at the checkpoint were not found: the
	// stream began after them. Mismatch is set when the stream began where
	// expected but not with the expected record (a partial rotation): then
	// everything is shipped, and duplicates are possible.
	Gap, Mismatch bool
}

// NewResume prepares the filter; engine24 says whether the engine stops
// filtering `since` at the first matching line (Engine 24 and later).
func NewResume(cp LogCheckpoint, engine24 bool) *Resume {
	r := &Resume{cp: cp, skip: cp.SkipAtOrAfter}
	if engine24 {
		r.skip = cp.SkipFromOn
	}
	return r
}

// Keep reports whether a record read from the reopened stream is new.
func (r *Resume) Keep(p RecordPrint) bool {
	if r.skip == 0 {
		return true
	}
	if !r.decided {
		r.decided = true
		switch {
		case p.TimeNanos > r.cp.Latest:
			r.Gap = true
			r.skip = 0
			return true
		case !samePrint(p, r.cp.First):
			r.Mismatch = true
			r.skip = 0
			return true
		}
	}
	r.seen++
	r.skip--
	if r.skip == 0 && !samePrint(p, r.cp.Last) {
		// The counts disagree with what the stream holds; from here on
		// everything is new, so at worst a few lines were dropped twice.
		r.Mismatch = true
	}
	return false
}

// Pending reports whether records are still being skipped.
func (r *Resume) Pending() bool { return r.skip > 0 }
