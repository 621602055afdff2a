package logtail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/collector/internal/backoff"
	"github.com/dockscope/dockscope/collector/logparse"
	"github.com/dockscope/dockscope/pipeline"
)

// tailResult is how a tailer ended.
type tailResult int

const (
	tailStopped    tailResult = iota // ctx ended, or the queue refused (shutdown)
	tailFinished                     // the run stopped and its log was read to the end
	tailUnreadable                   // the log driver cannot be read: retried with the next run
	tailGone                         // the container was removed
)

// tailer follows one container's log stream.
type tailer struct {
	m    *Manager
	id   string
	tty  bool
	log  *slog.Logger
	meta atomic.Pointer[pipeline.ContainerMeta]
	// run0 is the StartedAt (unix ns, daemon clock) of the run followed.
	run0 atomic.Int64
	// read is the container's read position in this run; only this
	// tailer touches it while it runs.
	read *pipeline.LogCursor
	// reopen: the first logs request of this tailer is a reopen too.
	reopen bool
	// stopped: the container was stopped when the tailer began.
	stopped bool
	// recent remembers the records read last, on Podman (see recheck.go).
	recent *recentPrints
	// endStream ends the open follow stream (nil: none open); streamEnded
	// says it was ended so, which is a clean end, not a failure.
	endStream   atomic.Pointer[context.CancelFunc]
	streamEnded atomic.Bool
	// unterminated holds the lines a cleanly ended stream stopped inside.
	unterminated []pipeline.LogRecord
	// pending holds the records read and not queued yet: they are queued
	// together before the stream is read again (see batchingReader).
	pending []pipeline.LogRecord
	dropped []int     // indices in pending the queue's drop policy discarded
	onDrop  func(int) // appends to dropped
	// slab is carved into record bodies: one allocation per slabBytes of
	// log instead of one per line. Released when the stream goes idle, so
	// an idle container holds none.
	slab     []byte
	slabSize atomic.Int64 // cap(slab), for tests and memory accounting
	// holds are the first-piece timestamps of the lines pending in the
	// reader, per stream (0: none), as last given to the cursors.
	holds [2]int64
	lines *logparse.Reader

	warn *warnings // the container's, across its tailers

	done chan struct{} // closed when run returns
}

// slabHeld is the size of the slab the tailer holds now.
func (t *tailer) slabHeld() int64 { return t.slabSize.Load() }

func (t *tailer) runStarted() time.Time { return fromNanos(t.run0.Load()) }

// nanos is t in unix ns, 0 for the zero time (whose UnixNano overflows).
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// maxPending bounds the records queued together: what one read of a fast
// stream returns (a few hundred lines) fits many times.
const maxPending = 1024

// Reopen backoff: a stream that ended while its container still runs
// (restart backoff, an "Error grabbing logs" on a damaged log file, a
// daemon ending streams) is reopened after reopenInitial, doubling up to
// Options.MaxBackoff, ±20 % jitter; reset by a stream that delivered new
// records. Without it a tailer reopened such a stream in a loop: 4,392
// logs requests in 2 s, 42 CPU-seconds of dockerd a minute.
const reopenInitial = 500 * time.Millisecond

// warnInterval spaces a repeated warning about one container.
const warnInterval = time.Minute

// state is what an inspect says of the run followed.
type state struct {
	running    bool // running (paused included), not restarting
	restarting bool
	gone       bool
	startedAt  time.Time
}

// run reads the container's log until its run stopped and the log is read
// to the end, the container is gone, or ctx ends. Stream errors reopen the
// stream from the last record read, never from the start.
func (t *tailer) run(ctx context.Context) tailResult {
	defer close(t.done)
	defer func() { t.slab, t.lines = nil, nil; t.slabSize.Store(0) }()
	m := t.m
	read := t.read
	var resume *Resume
	since := ""
	seeding := false
	// fromRead: the resume comes from the read position itself, which
	// must not count the records it skips a second time (it did: a second
	// reopen then skipped as many new records).
	fromRead := false
	cps := m.opts.Checkpoints
	if !read.Empty() {
		// Read earlier in this run: continue after the last record read.
		cp := read.Checkpoint()
		resume, since = NewResume(cp, m.sinceRules()), sinceFor(cp, m.sinceRules())
		fromRead = true
	} else if cp, seed, ok := cps.Resume(t.id); ok {
		// First read by this reader: continue after the last record
		// delivered, and count the re-read ones as delivered unless the
		// position already counts them (a reader restarted by a reload).
		resume, since = NewResume(cp, m.sinceRules()), sinceFor(cp, m.sinceRules())
		seeding = seed
	} else {
		var from int64
		if at, lost := m.lostStart(); lost {
			from = at.UnixNano()
			since = sinceNanos(from)
		}
		// The container is owed its log from here: saved before a line
		// is read, so that an agent killed before the first
		// acknowledgement reads it again on its next start, stopped or
		// not, whatever was saved since.
		if err := cps.Begin(t.id, from); err != nil {
			t.log.Warn("saving the start of a container's log position failed; if the agent stops before its lines are delivered they may not be read again", "err", err)
		}
	}
	bo := backoff.New(reopenInitial, m.opts.MaxBackoff)
	finalPass := false
	// Podman 4.3's follow stream is incomplete near a container's end: a
	// follow read of a stopped container returned 2,055 of its 10,052
	// lines, and one that exited while followed lost 1,771 of its last
	// 1,788; a plain read (follow=0) returned all of them, every time. So
	// on Podman a stopped container is read without follow, and a stream
	// that ended because its container stopped is finished by a plain read
	// from the last record read (the final pass below).
	follow := !m.podman.Load() || !t.stopped
	recheck := false // the next read is a recheck (recheck.go)
	if m.podman.Load() {
		t.recent = &recentPrints{}
	}
	for {
		t.unterminated = t.unterminated[:0]
		if t.reopen {
			m.tel.LogStreamReopens.Add(1)
		}
		t.reopen = true
		delivered, err := t.follow(ctx, since, follow, resume, read, seeding, fromRead)
		if ctx.Err() != nil {
			return tailStopped
		}
		if recheck && resume.Recovered > 0 {
			t.log.Info("read lines Podman's follow stream had skipped before it ended", "lines", resume.Recovered)
		}
		recheck = false
		seeding = false
		if delivered {
			bo.Reset()
		}
		switch {
		case err == nil:
			// The stream ended: the run stopped, or the daemon ended it
			// (restart backoff, a log entry it cannot decode, a daemon
			// restart). Only an inspect tells which.
			st, ok := t.inspect(ctx, bo)
			if !ok {
				return tailStopped
			}
			plain := !follow
			follow = !m.podman.Load() || st.running || st.restarting
			switch {
			case st.gone:
				return t.finish(ctx, read, tailGone)
			case st.running && !st.startedAt.Equal(t.runStarted()):
				// A new run began since: its log follows in the file.
				t.run0.Store(nanos(st.startedAt))
				finalPass = false
			case st.running && plain:
				// Read without follow while stopped, and started again
				// since (an event not handled yet): follow it now.
			case st.running:
				// The same run, and the stream ended: wait before
				// reopening, or this loops against the daemon.
				if !delivered {
					if ok, n := t.warn.ended.ok(m.clock.Now()); ok {
						t.log.Warn("log stream of a running container keeps ending without new lines; reopening with backoff",
							"reopens_since_last_warning", n)
					}
				}
				if !t.sleep(ctx, bo.Next()) {
					return tailStopped
				}
			case !finalPass && !plain:
				// Stopped, or restarting (its next run comes with a
				// start event or shows in a later inspect). Docker can
				// end a follow stream before the copier has written the
				// run's last output; one more read of the stopped log,
				// from the last record read, picks it up (design §4 rule 3).
				finalPass = true
				t.run0.Store(nanos(st.startedAt))
				recheck = t.recent != nil && len(t.recent.live()) > 0
			default:
				// Read to the end: a final pass, or a plain read of a
				// stopped container (complete: Podman's conmon has
				// written the log before it reports the exit).
				return t.finish(ctx, read, tailFinished)
			}
		case errors.Is(err, errUnreadable):
			m.tel.LogsUnreadable.Add(1)
			t.log.Warn("container's logs cannot be read through the Engine API; not retrying until it restarts", "err", err)
			return tailUnreadable
		default:
			m.tel.LogReconnects.Add(1)
			t.log.Debug("log stream failed; reopening from the last record read", "err", err)
			if !errors.Is(err, errStalled) { // the daemon is fine: reopen at once
				st, ok := t.inspect(ctx, bo)
				if !ok {
					return tailStopped
				} else if st.gone {
					// Removed (404, or 409 while being removed): its log
					// went with it, and retrying would never end.
					return t.finish(ctx, read, tailGone)
				}
				follow = !m.podman.Load() || st.running || st.restarting
				if !t.sleep(ctx, bo.Next()) {
					return tailStopped
				}
			}
		}
		switch {
		case recheck:
			since, resume, fromRead = t.recent.since(), newRecheck(t.recent), true
		case !read.Empty():
			cp := read.Checkpoint()
			since = sinceFor(cp, m.sinceRules())
			resume = NewResume(cp, m.sinceRules())
			fromRead = true
		}
	}
}

var errUnreadable = errors.New("log driver does not support reading")

// stopFollowing ends the open follow stream as if the daemon had: on
// Podman once its container stopped, before the stream reaches what
// Podman sends after it noticed the exit, where it skipped a stretch of
// lines (recheck.go). The rest is read without follow.
func (t *tailer) stopFollowing() {
	if stop := t.endStream.Load(); stop != nil {
		t.streamEnded.Store(true)
		(*stop)()
	}
}

func (t *tailer) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-t.m.clock.After(d):
		return true
	}
}

// finish ends the reading of a stopped or removed container: a last line
// without newline is complete. A queue that refused it (shutdown) makes
// the result tailStopped.
func (t *tailer) finish(ctx context.Context, read *pipeline.LogCursor, res tailResult) tailResult {
	t.pending = append(t.pending, t.unterminated...)
	if t.flush(ctx, read, t.m.opts.Counters(t.id)) != nil {
		return tailStopped
	}
	return res
}

// inspect asks the daemon about the container. A failed inspect says
// nothing about it (a busy or restarting daemon): it is retried with
// backoff, never taken for a stopped container. ok is false when ctx ended.
func (t *tailer) inspect(ctx context.Context, bo *backoff.Backoff) (state, bool) {
	for {
		st, err := t.inspectOnce(ctx)
		if err == nil {
			return st, true
		}
		if ctx.Err() != nil {
			return state{}, false
		}
		if ok, n := t.warn.inspect.ok(t.m.clock.Now()); ok {
			t.log.Warn("inspecting a followed container failed; retrying with backoff", "err", err, "failures_since_last_warning", n)
		}
		if !t.sleep(ctx, bo.Next()) {
			return state{}, false
		}
	}
}

func (t *tailer) inspectOnce(ctx context.Context) (state, error) {
	ctx, cancel := context.WithTimeout(ctx, t.m.opts.Timeout)
	defer cancel()
	res, err := t.m.opts.Docker.ContainerInspect(ctx, t.id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) || cerrdefs.IsConflict(err) {
			return state{gone: true}, nil
		}
		t.m.tel.InspectErrors.Add(1)
		return state{}, fmt.Errorf("inspecting container %s: %w", shortID(t.id), err)
	}
	s := res.Container.State
	if s == nil {
		return state{}, fmt.Errorf("inspecting container %s: no state in the answer", shortID(t.id))
	}
	st := state{restarting: s.Restarting, running: s.Running && !s.Restarting}
	st.startedAt, _ = time.Parse(time.RFC3339Nano, s.StartedAt)
	return st, nil
}

// reportResume says, as soon as a resume is decided, whether it found the
// records it expected.
func (t *tailer) reportResume(r *Resume) {
	if r.Gap {
		t.m.tel.LogGaps.Add(1)
		t.log.Warn("log gap: the records after the last checkpoint are no longer in Docker's log (rotated away while nobody read them); lines were lost")
	}
	if r.Mismatch {
		t.m.tel.LogResumeMismatches.Add(1)
		t.log.Warn("log resume did not find the records it expected; some lines may be shipped twice")
	}
}

// syncHolds tells both cursors where the lines pending in the reader
// began, before any record read after them is queued: `since` must never
// pass the first piece of a line not read to its end, or a reopened
// stream would lose it (Engine < 24) or return it headless (≥ 24).
func (t *tailer) syncHolds(read *pipeline.LogCursor) {
	if t.lines == nil {
		return
	}
	out, errs := t.lines.PendingSince()
	for i, ts := range [2]time.Time{out, errs} {
		var ns int64
		if !ts.IsZero() {
			ns = ts.UnixNano()
		}
		if ns == t.holds[i] {
			continue
		}
		t.holds[i] = ns
		if ns == 0 {
			continue // released when the line's record is handled
		}
		s := pipeline.Stdout
		if i == 1 {
			s = pipeline.Stderr
		}
		read.Hold(s, ns)
		t.m.opts.Checkpoints.Hold(t.id, s, ns)
	}
}

// flush queues the pending records and advances the read position past
// those queued or dropped; records that could not be queued (shutdown)
// leave the position alone.
func (t *tailer) flush(ctx context.Context, read *pipeline.LogCursor, counts *pipeline.LogCounters) error {
	t.syncHolds(read)
	if len(t.pending) == 0 {
		return nil
	}
	t.dropped = t.dropped[:0]
	n, err := t.m.opts.Queue.PushBatch(ctx, t.pending, t.onDrop)
	var lines, size uint64
	var last int64
	d := 0
	for i := range t.pending[:n] {
		r := &t.pending[i]
		read.Advance(pipeline.PrintOf(r))
		if d < len(t.dropped) && t.dropped[d] == i {
			d++
			continue
		}
		lines++
		size += uint64(len(r.Body))
		last = r.Time.UnixNano()
	}
	if lines > 0 {
		counts.LinesRead.Add(lines)
		counts.BytesRead.Add(size)
		counts.LastRead.Store(last)
	}
	if d > 0 {
		counts.LinesDropped.Add(uint64(d))
	}
	clear(t.pending) // the bodies belong to the queue now
	t.pending = t.pending[:0]
	return err
}

// warnings are a container's repeated warnings, each logged once per
// warnInterval.
type warnings struct{ ended, inspect every }

// every limits a repeated message to one per warnInterval.
type every struct {
	last       time.Time
	suppressed int
}

// ok reports whether to log now, and how many were suppressed since.
func (e *every) ok(now time.Time) (bool, int) {
	if !e.last.IsZero() && now.Sub(e.last) < warnInterval {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// batchingReader is the stream as the line reader sees it: before each
// read, which may wait for the daemon, it queues the records read so far,
// so that the queue's lock and wake-up are paid once per read rather than
// once per line; after each read it notes the time, which the records
// parsed from what it read carry as their Observed time.
//
// It also works around a daemon that stops sending: dockerd 20.10 (seen
// with json-file) leaves a follow stream silent for good when the log file
// was rotated while the stream's reader was not reading, although the new
// file grows. So once
// queueing had to wait (the queue was full), a read that then waits longer
// than stallAfter ends the stream (stop), and the tailer reopens it from
// the last record read: at worst one needless reopen when the container
// really went quiet.
type batchingReader struct {
	r      io.Reader
	flush  func() error
	readAt time.Time
	// lastRead is how many bytes the last read returned.
	lastRead int

	stop    func() // ends the stream's context
	heldUp  bool   // a flush waited for room in the queue
	stalled atomic.Bool
}

// Waits for the queue longer than heldUpAfter arm the stall check; a read
// waiting stallAfter after that ends the stream.
const (
	heldUpAfter = 500 * time.Millisecond
	stallAfter  = 2 * time.Second
)

func (b *batchingReader) Read(p []byte) (int, error) {
	began := time.Now()
	if err := b.flush(); err != nil {
		return 0, err
	}
	if time.Since(began) > heldUpAfter {
		b.heldUp = true
	}
	if !b.heldUp {
		n, err := b.r.Read(p)
		b.readAt, b.lastRead = time.Now(), n
		return n, err
	}
	watchdog := time.AfterFunc(stallAfter, func() {
		b.stalled.Store(true)
		b.stop()
	})
	n, err := b.r.Read(p)
	watchdog.Stop()
	b.readAt, b.lastRead = time.Now(), n
	if b.stalled.Load() {
		return n, errStalled
	}
	return n, err
}

// errStalled ends a stream that went silent after the tailer was held up.
var errStalled = errors.New("log stream silent after the queue was full (dockerd loses a follow stream across a rotation); reopening it")

// Slab sizes: bodies are carved from slabs of slabMin doubling to slabMax
// while a stream flows; a flush after a read of less than idleRead bytes
// (the stream has caught up) lets the slab go, so an idle container holds
// none — it was 64 KiB per followed container.
const (
	slabMin  = 4 << 10
	slabMax  = 64 << 10
	idleRead = 4 << 10
)

// follow reads one stream (without follow=1 when follow is false) until it
// ends (nil) or fails. delivered reports
// whether it read records that were not read before.
func (t *tailer) follow(ctx context.Context, since string, follow bool, resume *Resume, read *pipeline.LogCursor, seeding, fromRead bool) (delivered bool, err error) {
	m := t.m
	// The stream has a context of its own so that the stall check can end it.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	t.streamEnded.Store(false)
	if follow { // a plain read must end by itself: it is the complete one
		t.endStream.Store(&stop)
		defer t.endStream.Store(nil)
	}
	body, err := t.openLogs(sctx, since, follow)
	if err != nil {
		if strings.Contains(err.Error(), "does not support reading") {
			return false, fmt.Errorf("following logs of %s: %w: %v", shortID(t.id), errUnreadable, err)
		}
		if ok, n := m.dialFailed(); ok {
			m.log.Warn("opening a container's log stream failed; retrying with backoff (logged once a minute)",
				"container", t.meta.Load().Name, "err", err, "failures_since_last_warning", n)
		}
		return false, fmt.Errorf("following logs of %s: %w", shortID(t.id), err)
	}
	defer body.Close()

	counts := m.opts.Counters(t.id)
	var src *batchingReader
	flush := func() error {
		if src != nil && src.lastRead < idleRead && t.slab != nil {
			t.slab = nil
			t.slabSize.Store(0)
		}
		return t.flush(ctx, read, counts)
	}
	src = &batchingReader{r: body, flush: flush, stop: stop}
	t.lines = logparse.NewReader(src, t.tty, m.opts.MaxLineBytes)
	defer func() { t.lines = nil }()
	t.holds = [2]int64{}
	slabNext := slabMin
	emit := func(line logparse.Line) error {
		n := len(line.Body)
		if cap(t.slab)-len(t.slab) < n {
			if t.slab != nil {
				slabNext = min(2*slabNext, slabMax)
			} else {
				slabNext = slabMin
			}
			t.slab = make([]byte, 0, max(slabNext, n))
			t.slabSize.Store(int64(cap(t.slab)))
		}
		start := len(t.slab)
		t.slab = append(t.slab, line.Body...)
		rec := pipeline.LogRecord{
			ContainerID: t.id,
			Container:   t.meta.Load(),
			Time:        line.Time,
			Observed:    src.readAt,
			Stream:      line.Stream,
			Body:        t.slab[start:len(t.slab):len(t.slab)],
			Hash:        pipeline.HashBody(line.Body, line.Truncated),
			Truncated:   line.Truncated,
		}
		p := pipeline.PrintOf(&rec)
		if resume != nil && resume.Pending() {
			keep := resume.Keep(p)
			if !resume.Pending() {
				t.reportResume(resume)
			}
			if !keep {
				// The read position advances in stream order.
				if err := flush(); err != nil {
					return err
				}
				if !fromRead {
					read.Advance(p)
				}
				if seeding {
					m.opts.Checkpoints.Seed(t.id, p)
				}
				return nil
			}
		}
		delivered = true
		if line.Unterminated {
			// The stream ended inside this line. If the daemon closed it
			// while the container still runs, the whole line comes again
			// when the stream is reopened; only a stopped container's last
			// line really lacks its newline. run decides.
			t.unterminated = append(t.unterminated, rec)
			return nil
		}
		t.pending = append(t.pending, rec)
		if t.recent != nil {
			t.recent.add(p)
		}
		if len(t.pending) >= maxPending {
			return flush()
		}
		return nil
	}
	for {
		line, err := t.lines.Next()
		if err != nil {
			var engineErr *logparse.EngineError
			switch {
			case errors.As(err, &engineErr):
				// The daemon reported a problem inside the stream (e.g. a
				// corrupt log file entry); dockerd then ends the stream,
				// and run waits before reopening it.
				if ok, n := t.warn.ended.ok(m.clock.Now()); ok {
					t.log.Warn("docker reported an error in the log stream", "err", err, "repeats_since_last_warning", n)
				}
				continue
			case errors.Is(err, io.EOF):
				return delivered, flush()
			case t.streamEnded.Load() && ctx.Err() == nil:
				// Ended by stopFollowing: the run's end.
				return delivered, flush()
			}
			// The lines read before the failure are whole: queue them,
			// so that the reopened stream resumes after them.
			if ferr := flush(); ferr != nil {
				return delivered, ferr
			}
			return delivered, fmt.Errorf("reading logs of %s: %w", shortID(t.id), err)
		}
		if err := emit(line); err != nil {
			return delivered, err
		}
	}
}
