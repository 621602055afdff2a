package pipeline

import (
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

// SamePrint reports whether a record read again is the one a checkpoint
// holds. A zero hash in the checkpoint is unknown (a file of version 1,
// whose hashes were FNV-1a): the timestamp and stream must do.
func SamePrint(read, held RecordPrint) bool {
	if held.Hash == 0 {
		read.Hash = 0
	}
	return read == held
}

// StepBack is how far a record may be stamped before the newest one
// handled before the cursor takes it for a step back of the daemon's
// clock (NTP, a VM restored from a snapshot) rather than stdout/stderr
// skew, which is milliseconds: the cursor then re-bases on it, or a stream
// reopened from the window before the step would filter out every line
// written after it until the clock caught up.
const StepBack = 2 * ResumeSlack

// shrinkBelow: a window array larger than this, four times what it holds,
// is reallocated, so that a burst's capacity is not kept for good.
const shrinkBelow = 1024

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
	// steppedFrom is the newest timestamp handled before the daemon's
	// clock stepped back (0: no step within the window).
	steppedFrom int64
	// holds are, per stream, the first-piece timestamp of a line the
	// reader has begun but not finished (0: none): the window keeps every
	// record from there on, so `since` never passes the line's start.
	holds [2]int64
}

func streamIndex(s Stream) int {
	if s == Stderr {
		return 1
	}
	return 0
}

// Hold keeps the cursor's `since` at or before ts until a record of stream
// s stamped ts (the line begun there) or later is handled.
func (c *LogCursor) Hold(s Stream, ts int64) { c.holds[streamIndex(s)] = ts }

// Advance records one more handled record.
func (c *LogCursor) Advance(p RecordPrint) {
	held := false
	if h := &c.holds[streamIndex(p.Stream)]; *h != 0 && p.TimeNanos >= *h {
		// The held line itself (as old as its first piece, not a clock
		// step), or a later line of its stream: the held one was handled
		// or dropped before it.
		held = p.TimeNanos == *h
		*h = 0
	}
	if !held && c.latest != 0 && p.TimeNanos < c.latest-int64(StepBack) {
		// The daemon's clock stepped back: re-base on this record. What
		// was handled before the step is newer-looking than anything
		// after it, and the checkpoint says so (SteppedFrom).
		c.steppedFrom = max(c.steppedFrom, c.latest)
		clear(c.window)
		c.window, c.head, c.skewed, c.latest = c.window[:0], 0, c.skewed[:0], p.TimeNanos
	}
	if p.TimeNanos < c.latest {
		c.skewed = append(c.skewed, len(c.window))
	} else {
		c.latest = p.TimeNanos
	}
	c.window = append(c.window, p)
	limit := c.latest - int64(ResumeSlack)
	if c.steppedFrom != 0 && limit > c.steppedFrom {
		// The window has moved past every pre-step timestamp: a stream
		// from its start no longer returns pre-step lines.
		c.steppedFrom = 0
	}
	for _, h := range c.holds {
		if h != 0 && h < limit {
			limit = h
		}
	}
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
	// Reuse the array once the consumed prefix dominates it; give back
	// a burst's capacity once it is mostly unused.
	if c.head > 1024 && c.head > len(c.window)/2 || c.head > 0 && cap(c.window) > shrinkBelow && cap(c.window) > 4*(len(c.window)-c.head) {
		live := c.window[c.head:]
		if cap(c.window) > shrinkBelow && cap(c.window) > 4*len(live) {
			c.window = append(make([]RecordPrint, 0, max(2*len(live), 64)), live...)
		} else {
			c.window = c.window[:copy(c.window, live)]
		}
		sk := c.skewed
		if cap(sk) > shrinkBelow && cap(sk) > 4*len(sk) {
			sk = append([]int(nil), sk...)
		}
		for i := range sk {
			sk[i] -= c.head
		}
		c.skewed = sk
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
	for _, h := range c.holds {
		if h != 0 && h < since {
			since = h
		}
	}
	cp := LogCheckpoint{
		Since:       since,
		Latest:      c.latest,
		First:       w[0],
		Last:        w[len(w)-1],
		SkipFromOn:  len(w),
		SteppedFrom: c.steppedFrom,
	}
	// Every record but a skewed one is at least as new as since.
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
	// SteppedFrom is set when the daemon's clock stepped back within the
	// window: the newest timestamp handled before the step. A stream
	// reopened at Since then first returns the records stamped before
	// the step (after Latest, up to SteppedFrom), all handled.
	SteppedFrom int64 `json:"stepped_from,omitempty"`
}
