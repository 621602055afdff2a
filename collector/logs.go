package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/collector/logparse"
	"github.com/dockscope/dockscope/pipeline"
)

// LogOptions turn on log collection.
type LogOptions struct {
	Queue        *pipeline.LogQueue
	Checkpoints  *pipeline.Checkpointer
	MaxLineBytes int
}

// logManager runs one tailer per container whose logs are followed. It
// lives as long as Collector.Run, across daemon reconnects: each tailer
// retries its own stream.
type logManager struct {
	c       *Collector
	opts    LogOptions
	started time.Time // this run's start: containers that exit later are read in full
	socket  string    // the daemon's unix socket, read directly; "" to use the client

	mu         sync.Mutex
	ctx        context.Context
	tailers    map[string]*tailer
	done       map[string]bool // read to the end since their last start
	unreadable map[string]bool // reported once; retried on the next start
	noDriver   map[string]bool // log driver "none": reported once, for good
	// reads are this run's read positions, kept across a container's
	// stops and starts: a new tailer resumes after the last record read,
	// which may still be in the queue, not after the last one delivered.
	reads map[string]*pipeline.LogCursor
	wg    sync.WaitGroup
}

func newLogManager(c *Collector, opts LogOptions) *logManager {
	return &logManager{
		c:          c,
		opts:       opts,
		started:    time.Now(),
		socket:     rawSocketPath(c.host),
		tailers:    map[string]*tailer{},
		done:       map[string]bool{},
		unreadable: map[string]bool{},
		noDriver:   map[string]bool{},
		reads:      map[string]*pipeline.LogCursor{},
	}
}

// run owns the tailers: it returns when ctx ends and every tailer stopped.
func (m *logManager) run(ctx context.Context) {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	<-ctx.Done()
	m.wg.Wait()
}

// engine24 reports whether the daemon stops `since` filtering at the first
// matching line (Engine 24 and later), which changes how many re-read
// records a resume skips.
func (m *logManager) engine24() bool {
	d, ok := m.c.tel.Daemon()
	if !ok {
		return false
	}
	major := 0
	fmt.Sscanf(d.Version, "%d", &major)
	return major >= 24
}

// observe is called with every inspect of a followed container: it starts a
// tailer when the container has logs nobody is reading.
func (m *logManager) observe(meta pipeline.ContainerMeta, state pipeline.ContainerState, labels map[string]string, event string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		return
	}
	id := meta.ID
	if event == "start" || event == "restart" {
		// A new run of the container: whatever was finished or refused
		// before may have changed.
		delete(m.done, id)
		delete(m.unreadable, id)
	}
	if t, ok := m.tailers[id]; ok {
		t.meta.Store(&meta) // renamed, or new identity labels
		return
	}
	if !m.c.sel.LogsSelected(labels) || m.done[id] || m.unreadable[id] {
		return
	}
	if state.LogDriver == "none" {
		// A container's log driver is fixed at creation: say so once.
		if m.noDriver[id] {
			return
		}
		m.noDriver[id] = true
		m.c.tel.LogsUnreadable.Add(1)
		m.c.log.Warn("container's log driver cannot be read through the Engine API; its logs are not collected",
			"container", meta.Name, "driver", state.LogDriver)
		return
	}
	_, hasCheckpoint := m.opts.Checkpoints.Get(id)
	if !state.Running() && !hasCheckpoint {
		// A stopped container nobody read before: read it only if it ran
		// while an agent was (or should have been) watching — since the
		// last checkpoint save, or since this run started. Otherwise every
		// old container on the host would be shipped at first start.
		since := m.opts.Checkpoints.SavedAt()
		if since.IsZero() || m.started.Before(since) {
			since = m.started
		}
		if state.FinishedAt.IsZero() || state.FinishedAt.Before(since) && state.StartedAt.Before(since) {
			return
		}
	}
	read, ok := m.reads[id]
	if !ok {
		read = &pipeline.LogCursor{}
		m.reads[id] = read
	}
	t := &tailer{m: m, id: id, tty: state.Tty, log: m.c.log.With("container", meta.Name), read: read, done: make(chan struct{})}
	t.onDrop = func(i int) { t.dropped = append(t.dropped, i) }
	t.meta.Store(&meta)
	m.tailers[id] = t
	m.wg.Go(func() {
		finished := t.run(m.ctx)
		m.mu.Lock()
		delete(m.tailers, id)
		if finished {
			m.done[id] = true
		}
		m.mu.Unlock()
	})
}

// destroyed forgets a removed container's position once its tailer is done.
func (m *logManager) destroyed(id string) {
	m.mu.Lock()
	t, running := m.tailers[id]
	delete(m.done, id)
	delete(m.unreadable, id)
	delete(m.noDriver, id)
	delete(m.reads, id)
	m.mu.Unlock()
	if running {
		// The tailer still drains what Docker returns; forget the position
		// when it ends, or the checkpoint would come back on its acks.
		// Owned by the manager like the tailer it waits for.
		m.wg.Go(func() {
			<-t.done
			m.opts.Checkpoints.Forget(id)
		})
		return
	}
	m.opts.Checkpoints.Forget(id)
}

// tailer follows one container's log stream.
type tailer struct {
	m    *logManager
	id   string
	tty  bool
	log  *slog.Logger
	meta atomic.Pointer[pipeline.ContainerMeta]
	// read is the container's read position in this run; only this
	// tailer touches it while it runs.
	read *pipeline.LogCursor
	// unterminated holds the lines a cleanly ended stream stopped inside.
	unterminated []pipeline.LogRecord
	// pending holds the records read and not queued yet: they are queued
	// together before the stream is read again (see batchingReader).
	pending []pipeline.LogRecord
	dropped []int     // indices in pending the queue's drop policy discarded
	onDrop  func(int) // appends to dropped

	done chan struct{} // closed when run returns
}

// maxPending bounds the records queued together: what one read of a fast
// stream returns (a few hundred lines) fits many times.
const maxPending = 1024

// run reads until the container has stopped and its log is read to the
// end (true), or ctx ends (false). Stream errors reopen the stream from the
// last record read, never from the start.
func (t *tailer) run(ctx context.Context) bool {
	defer close(t.done)
	m := t.m
	read := t.read
	var resume *pipeline.Resume
	since := ""
	seeding := false
	if !read.Empty() {
		// Read earlier in this run: continue after the last record read.
		cp := read.Checkpoint()
		resume, since = pipeline.NewResume(cp, m.engine24()), cp.SinceParam()
	} else if cp, ok := m.opts.Checkpoints.Get(t.id); ok {
		// First read in this run: continue after the last record
		// delivered, and count the re-read ones as delivered.
		resume, since = pipeline.NewResume(cp, m.engine24()), cp.SinceParam()
		seeding = true
	}
	bo := newBackoff(500*time.Millisecond, m.c.cfg.Docker.MaxBackoff)
	finalPass := false
	for {
		t.unterminated = t.unterminated[:0]
		err := t.follow(ctx, since, resume, read, seeding)
		if ctx.Err() != nil {
			return false
		}
		seeding = false
		if err == nil {
			// The stream ended: the container stopped, or the daemon went
			// away. Only an inspect tells which.
			running, gone := t.stillRunning(ctx)
			if !gone && !running && !finalPass {
				// Docker can end a follow stream before the copier has
				// written the container's last output; one more read of
				// the stopped container's log, from the last record read,
				// picks it up (design §4 rule 3).
				finalPass = true
			} else if gone || !running {
				return t.finish(ctx, read)
			}
		} else {
			if errors.Is(err, errUnreadable) {
				m.mu.Lock()
				m.unreadable[t.id] = true
				m.mu.Unlock()
				m.c.tel.LogsUnreadable.Add(1)
				t.log.Warn("container's logs cannot be read through the Engine API; not retrying until it restarts", "err", err)
				return false
			}
			m.c.tel.LogReconnects.Add(1)
			t.log.Debug("log stream failed; reopening from the last record read", "err", err)
			if !errors.Is(err, errStalled) { // the daemon is fine: reopen at once
				if _, gone := t.stillRunning(ctx); gone {
					// Removed (404, or 409 while being removed): its log
					// went with it, and retrying would never end.
					return t.finish(ctx, read)
				}
				select {
				case <-ctx.Done():
					return false
				case <-time.After(bo.next()):
				}
			}
		}
		if !read.Empty() {
			cp := read.Checkpoint()
			since = cp.SinceParam()
			resume = pipeline.NewResume(cp, m.engine24())
		}
	}
}

var errUnreadable = errors.New("log driver does not support reading")

// finish ends the reading of a stopped or removed container: a last line
// without newline is complete. It reports false if the queue refused it
// (shutdown).
func (t *tailer) finish(ctx context.Context, read *pipeline.LogCursor) bool {
	t.pending = append(t.pending, t.unterminated...)
	return t.flush(ctx, read, t.m.c.store.LogCounters(t.id)) == nil
}

func (t *tailer) stillRunning(ctx context.Context) (running, gone bool) {
	ctx, cancel := context.WithTimeout(ctx, t.m.c.cfg.Docker.Timeout)
	defer cancel()
	res, err := t.m.c.docker.ContainerInspect(ctx, t.id, client.ContainerInspectOptions{})
	if err != nil {
		return false, cerrdefs.IsNotFound(err)
	}
	s := res.Container.State
	return s != nil && (s.Running || s.Restarting), false
}

// reportResume says, as soon as a resume is decided, whether it found the
// records it expected.
func (t *tailer) reportResume(r *pipeline.Resume) {
	if r.Gap {
		t.m.c.tel.LogGaps.Add(1)
		t.log.Warn("log gap: the records after the last checkpoint are no longer in Docker's log (rotated away while nobody read them); lines were lost")
	}
	if r.Mismatch {
		t.m.c.tel.LogResumeMismatches.Add(1)
		t.log.Warn("log resume did not find the records it expected; some lines may be shipped twice")
	}
}

// flush queues the pending records and advances the read position past
// those queued or dropped; records that could not be queued (shutdown)
// leave the position alone.
func (t *tailer) flush(ctx context.Context, read *pipeline.LogCursor, counts *pipeline.LogCounters) error {
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
		b.readAt = time.Now()
		return n, err
	}
	watchdog := time.AfterFunc(stallAfter, func() {
		b.stalled.Store(true)
		b.stop()
	})
	n, err := b.r.Read(p)
	watchdog.Stop()
	b.readAt = time.Now()
	if b.stalled.Load() {
		return n, errStalled
	}
	return n, err
}

// errStalled ends a stream that went silent after the tailer was held up.
var errStalled = errors.New("log stream silent after the queue was full (dockerd loses a follow stream across a rotation); reopening it")

// follow reads one stream until it ends (nil) or fails.
func (t *tailer) follow(ctx context.Context, since string, resume *pipeline.Resume, read *pipeline.LogCursor, seeding bool) error {
	m := t.m
	// The stream has a context of its own so that the stall check can end it.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	body, err := t.openLogs(sctx, since)
	if err != nil {
		if strings.Contains(err.Error(), "does not support reading") {
			return fmt.Errorf("following logs of %s: %w: %v", shortID(t.id), errUnreadable, err)
		}
		return fmt.Errorf("following logs of %s: %w", shortID(t.id), err)
	}
	defer body.Close()

	counts := m.c.store.LogCounters(t.id)
	flush := func() error { return t.flush(ctx, read, counts) }
	src := &batchingReader{r: body, flush: flush, stop: stop}
	lines := logparse.NewReader(src, t.tty, m.opts.MaxLineBytes)
	var slab []byte
	emit := func(line logparse.Line) error {
		// Bodies are carved out of a shared slab: one allocation per
		// 64 KiB of log instead of one per line.
		n := len(line.Body)
		if cap(slab)-len(slab) < n {
			slab = make([]byte, 0, max(64<<10, n))
		}
		start := len(slab)
		slab = append(slab, line.Body...)
		rec := pipeline.LogRecord{
			ContainerID: t.id,
			Container:   t.meta.Load(),
			Time:        line.Time,
			Observed:    src.readAt,
			Stream:      line.Stream,
			Body:        slab[start:len(slab):len(slab)],
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
				read.Advance(p)
				if seeding {
					m.opts.Checkpoints.Seed(t.id, p)
				}
				return nil
			}
		}
		if line.Unterminated {
			// The stream ended inside this line. If the daemon closed it
			// while the container still runs, the whole line comes again
			// when the stream is reopened; only a stopped container's last
			// line really lacks its newline. run decides.
			t.unterminated = append(t.unterminated, rec)
			return nil
		}
		t.pending = append(t.pending, rec)
		if len(t.pending) >= maxPending {
			return flush()
		}
		return nil
	}
	for {
		line, err := lines.Next()
		if err != nil {
			var engineErr *logparse.EngineError
			switch {
			case errors.As(err, &engineErr):
				// The daemon reported a problem inside the stream (e.g. a
				// corrupt log file entry); the stream goes on.
				t.log.Warn("docker reported an error in the log stream", "err", err)
				continue
			case errors.Is(err, io.EOF):
				return flush()
			}
			// The lines read before the failure are whole: queue them,
			// so that the reopened stream resumes after them.
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return fmt.Errorf("reading logs of %s: %w", shortID(t.id), err)
		}
		if err := emit(line); err != nil {
			return err
		}
	}
}
