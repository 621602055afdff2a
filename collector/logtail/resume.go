package logtail

import (
	"fmt"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// Docker's `since` rules, from the Engine's source: `since` accepts
// `seconds.nanoseconds` and is inclusive; every piece of a split line
// carries the first piece's timestamp; stdout and stderr are stamped by two
// goroutines, so timestamps are not ordered across them; Engine < 24
// filters each line on its own timestamp, Engine ≥ 24 stops filtering at
// the first line at or after `since` (and then returns older, skewed lines
// too). A checkpoint (pipeline.LogCheckpoint) holds the counts a resume
// needs under either rule.

// SinceParam is the logs endpoint's since value for a checkpoint, or "" to
// read from the start.
func SinceParam(cp pipeline.LogCheckpoint) string {
	if cp.Since == 0 {
		if cp.Latest == 0 {
			return ""
		}
		// Nothing to skip, but the stream must still not restart from
		// the beginning: resume just after the newest record.
		return sinceNanos(cp.Latest + 1)
	}
	return sinceNanos(cp.Since)
}

// sinceNanos formats a unix-ns time as `since` wants it.
func sinceNanos(n int64) string {
	return fmt.Sprintf("%d.%09d", n/1e9, n%1e9)
}

// Resume is the filter for a stream reopened at a checkpoint: it drops the
// records that were already handled and reports a gap when the checkpoint's
// records are gone (Docker rotated them away while nobody read).
type Resume struct {
	cp      pipeline.LogCheckpoint
	skip    int // records still to drop
	decided bool
	rules   SinceRules
	seeking int // Ordered: records dropped before the window's first

	// A recheck (newRecheck): the records read, by print, how many are
	// still to find, and the oldest.
	known     map[pipeline.RecordPrint]int
	remaining int
	first     pipeline.RecordPrint
	// Recovered counts the records a recheck kept before it found every
	// record read: lines the follow stream had skipped.
	Recovered int

	// Gap is set when the records at the checkpoint were not found: the
	// stream began after them. Mismatch is set when the stream began where
	// expected but not with the expected record (a partial rotation): then
	// everything is shipped, and duplicates are possible.
	Gap, Mismatch bool
}

// SinceRules is how an engine applies `since` to a logs request.
type SinceRules int

const (
	// EachLine: each line is filtered on its own timestamp (Docker < 24).
	EachLine SinceRules = iota
	// UntilFirst: filtering stops at the first line at or after `since`
	// (Docker ≥ 24).
	UntilFirst
	// Ordered: Podman. Its log (k8s-file, written by conmon alone) is one
	// sequence in file order, stdout and stderr included, so nothing is
	// skewed; it filters `since` on each line's full timestamp but shows
	// timestamps in whole seconds. A stream from a whole second S thus
	// returns every line stamped S, also those before the cursor's
	// window when the window was cut at MaxResumeWindow inside that
	// second (more than ~16k lines a second): a count from S would be
	// short, so the re-read is matched from the window's first record.
	Ordered
)

// maxSeekFirst bounds the records an Ordered resume drops while looking
// for the window's first record: a second's lines before it, at most what
// the agent can read in a second or two.
const maxSeekFirst = 1 << 20

// orderedSinceSlack is how far before the checkpoint's Since an Ordered
// stream is reopened: Podman returns the lines stamped after `since`
// (strictly), and a line stamped on the whole second Since shows would be
// left out; a microsecond is above the precision Podman parses `since`
// with (a float64 of seconds: ~0.24 µs now).
const orderedSinceSlack = int64(time.Microsecond)

// sinceFor is the since value for a checkpoint under an engine's rules.
func sinceFor(cp pipeline.LogCheckpoint, rules SinceRules) string {
	if rules == Ordered && cp.Since > orderedSinceSlack {
		cp.Since -= orderedSinceSlack
	}
	return SinceParam(cp)
}

// beforeFirst reports whether an Ordered stream's record comes before the
// window's first record: stamped before Since (the slack), or in
// the same second when the window was cut at MaxResumeWindow inside it
// (only then does Podman return records of that second before the first).
// Should the first record be missing, records of its second are dropped
// only in that cut case, where they were all read before the window.
func (r *Resume) beforeFirst(p pipeline.RecordPrint) bool {
	if r.seeking >= maxSeekFirst {
		return false
	}
	if p.TimeNanos < r.cp.Since {
		return true // in the slack before Since (sinceFor)
	}
	return p.TimeNanos == r.cp.First.TimeNanos && r.cp.SkipFromOn >= pipeline.MaxResumeWindow && !pipeline.SamePrint(p, r.cp.First)
}

// NewResume prepares the filter for an engine's `since` rules.
func NewResume(cp pipeline.LogCheckpoint, rules SinceRules) *Resume {
	r := &Resume{cp: cp, skip: cp.SkipAtOrAfter, rules: rules}
	if rules == UntilFirst {
		r.skip = cp.SkipFromOn
	}
	return r
}

// Keep reports whether a record read from the reopened stream is new.
func (r *Resume) Keep(p pipeline.RecordPrint) bool {
	if r.skip == 0 {
		return true
	}
	if r.known != nil {
		return r.keepRechecked(p)
	}
	if !r.decided {
		if r.cp.SteppedFrom != 0 && (p.TimeNanos > r.cp.Latest && p.TimeNanos <= r.cp.SteppedFrom || p.TimeNanos < r.cp.Since) {
			// The daemon's clock stepped back within the checkpoint's
			// window: a stream from Since returns the lines stamped
			// before the step first (newer-looking, all handled), and
			// on Engine ≥ 24 the handled ones older than the window.
			// The checkpoint's first record follows them.
			return false
		}
		if r.rules == Ordered && r.beforeFirst(p) {
			// Read before the window's first record, in the one
			// ordered sequence: handled.
			r.seeking++
			return false
		}
		r.decided = true
		switch {
		case p.TimeNanos > r.cp.Latest:
			r.Gap = true
			r.skip = 0
			return true
		case !pipeline.SamePrint(p, r.cp.First):
			r.Mismatch = true
			r.skip = 0
			return true
		}
	}
	r.skip--
	if r.skip == 0 && !pipeline.SamePrint(p, r.cp.Last) {
		// The counts disagree with what the stream holds; from here on
		// everything is new, so at worst a few lines were dropped twice.
		r.Mismatch = true
	}
	return false
}

// Pending reports whether records are still being skipped.
func (r *Resume) Pending() bool { return r.skip > 0 }
