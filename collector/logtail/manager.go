// Package logtail follows containers' log streams: one tailer per
// container reads GET /containers/{id}/logs?follow=1 from the last record
// read, turns frames into records (logparse) and queues them. It owns
// Docker's `since` rules and how a reopened stream is matched against a
// checkpoint; the pipeline only keeps positions.
//
// Workers get their dependencies explicitly (Options): the Docker client,
// the queue, the checkpointer, the telemetry counters, a clock, a logger.
package logtail

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/pipeline"
)

// Docker is what a tailer needs of the Engine API client.
type Docker interface {
	ContainerInspect(ctx context.Context, id string, opts client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerLogs(ctx context.Context, id string, opts client.ContainerLogsOptions) (client.ContainerLogsResult, error)
}

// Clock tells the time and waits; tests replace it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options are a Manager's dependencies.
type Options struct {
	Docker      Docker
	Queue       *pipeline.LogQueue
	Checkpoints *pipeline.Checkpointer
	Telemetry   *pipeline.Telemetry
	// Counters returns a container's log counters (the store's).
	Counters func(id string) *pipeline.LogCounters
	Logger   *slog.Logger
	Clock    Clock // nil: the real clock
	// Socket is the daemon's unix socket, read on connections of the
	// tailer's own (see unixStream); "" to use Docker's streams.
	Socket       string
	MaxLineBytes int
	// Timeout bounds every call that is not a follow stream: inspects and
	// the logs request up to its response header.
	Timeout time.Duration
	// MaxBackoff caps the wait before a stream is reopened.
	MaxBackoff time.Duration
}

// Container is what an inspect tells the manager about a container.
type Container struct {
	Meta      pipeline.ContainerMeta
	Tty       bool
	LogDriver string
	Running   bool // running, not restarting
	// Restarting: in Docker's restart backoff; the next run starts with a
	// start event or shows in the next inspect.
	Restarting bool
	StartedAt  time.Time // daemon clock
	FinishedAt time.Time // daemon clock
}

// container is the manager's memory of one container across its runs and
// tailers.
type container struct {
	tailer *tailer
	// read is this agent run's read position: a new tailer resumes after
	// the last record read, which may still be in the queue, not after
	// the last one delivered.
	read *pipeline.LogCursor
	// doneRun is the StartedAt of the run read to its end: that run is
	// not followed again, a later one is, whatever events were lost.
	doneRun    time.Time
	done       bool
	unreadable bool      // reported once; retried with the next run
	noDriver   bool      // log driver "none": reported once, for good
	opened     bool      // a logs request was made: later ones are reopens
	again      bool      // a new run showed while the tailer was finishing
	last       Container // latest inspect, for a tailer started again
	warn       warnings
	gone       bool // destroyed while its tailer ran
}

// Manager runs one tailer per container whose logs are followed. It lives
// as long as Run, across daemon reconnects: each tailer retries its own
// stream.
type Manager struct {
	opts  Options
	clock Clock
	log   *slog.Logger
	tel   *pipeline.Telemetry

	started time.Time // agent clock: containers that exit later are read in full

	// The daemon's identity and clock, set by Connected.
	rules     atomic.Int32 // SinceRules
	podman    atomic.Bool
	apiVer    atomic.Pointer[string]
	skewNanos atomic.Int64 // daemon clock − agent clock

	lostOnce sync.Once

	dialMu   sync.Mutex
	dialWarn every // failed logs requests, of any container

	mu   sync.Mutex
	ctx  context.Context
	ctrs map[string]*container
	wg   sync.WaitGroup
}

// New builds a Manager; Run starts it.
func New(opts Options) *Manager {
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Telemetry == nil {
		opts.Telemetry = pipeline.NewTelemetry()
	}
	if opts.Counters == nil {
		opts.Counters = func(string) *pipeline.LogCounters { return new(pipeline.LogCounters) }
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	m := &Manager{opts: opts, clock: opts.Clock, log: opts.Logger, tel: opts.Telemetry, ctrs: map[string]*container{}}
	m.started = m.clock.Now()
	v := ""
	m.apiVer.Store(&v)
	return m
}

// Daemon is what the tail needs to know of the daemon it talks to.
type Daemon struct {
	Version    string // e.g. "20.10.24", Podman's "4.3.1"
	APIVersion string // negotiated
	// Podman: the API is Podman's Docker-compatible one (the collector
	// tells by /version's components, not by a version number).
	Podman bool
	Now    time.Time // the daemon's time as it answered; zero if unknown
}

// Connected records the daemon's identity and clock. Daemon timestamps
// (StartedAt, FinishedAt) are compared with the daemon's clock, not the
// agent's.
func (m *Manager) Connected(d Daemon) {
	rules := EachLine
	if d.Podman {
		rules = Ordered
	} else {
		major := 0
		fmt.Sscanf(d.Version, "%d", &major)
		if major >= 24 {
			rules = UntilFirst
		}
	}
	m.rules.Store(int32(rules))
	m.podman.Store(d.Podman)
	m.apiVer.Store(&d.APIVersion)
	if !d.Now.IsZero() {
		m.skewNanos.Store(int64(d.Now.Sub(m.clock.Now())))
	}
}

// sinceRules is how the daemon applies `since`.
func (m *Manager) sinceRules() SinceRules { return SinceRules(m.rules.Load()) }

// daemonTime converts an agent time to the daemon's clock.
func (m *Manager) daemonTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Add(time.Duration(m.skewNanos.Load()))
}

// Run owns the tailers: it returns when ctx ends and every tailer stopped.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	<-ctx.Done()
	m.wg.Wait()
}

// lostSlack is how far before a lost state's last write the log of a
// container without a position is resumed: records acknowledged by then
// were delivered, and a backlog read but not yet acknowledged is mostly
// younger than a minute. Lines delivered within the slack are shipped
// again; lines older than it that were still unacknowledged are missing
// (as with a backlog older than Docker's rotation, but the alternative,
// every container's whole log again, is worse).
const lostSlack = time.Minute

// Observe is called with every inspect of a followed container whose logs
// are selected: it starts a tailer when the container has logs nobody is
// reading. newRun says an event announced a new run (start, restart).
func (m *Manager) Observe(c Container, newRun bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		return
	}
	id := c.Meta.ID
	ct, ok := m.ctrs[id]
	if !ok {
		ct = &container{}
		m.ctrs[id] = ct
	}
	ct.last = c
	ct.gone = false // seen again
	if newRun || (ct.done || ct.unreadable) && !c.StartedAt.Equal(ct.doneRun) {
		// A run not read to its end yet, announced by an event or only
		// seen in an inspect (events lost): whatever was finished or
		// refused before may have changed.
		ct.done, ct.unreadable = false, false
	}
	if t := ct.tailer; t != nil {
		meta := c.Meta
		t.meta.Store(&meta) // renamed, or new identity labels
		if m.podman.Load() && !c.Running && !c.Restarting {
			t.stopFollowing()
		}
		if newRun || !c.StartedAt.Equal(t.runStarted()) {
			// The tailer may be finishing the previous run: it starts
			// again when it ends instead of marking the container done.
			ct.again = true
		}
		return
	}
	if ct.done || ct.unreadable {
		return
	}
	if c.LogDriver == "none" {
		// A container's log driver is fixed at creation: say so once.
		if ct.noDriver {
			return
		}
		ct.noDriver = true
		m.tel.LogsUnreadable.Add(1)
		m.log.Warn("container's log driver cannot be read through the Engine API; its logs are not collected",
			"container", c.Meta.Name, "driver", c.LogDriver)
		return
	}
	cps := m.opts.Checkpoints
	_, hasCheckpoint := cps.Get(id)
	if !c.Running && !c.Restarting && !hasCheckpoint && ct.read == nil {
		// A stopped container nobody read: read it only if it ran while
		// an agent was (or should have been) watching — since the first
		// agent with this state started, or since this run started. Otherwise every old
		// container on the host would be shipped at first start. One an
		// agent began reading has a checkpoint (Begin), acknowledged or
		// not, so it is read again whatever the saves since.
		since := cps.WatchingSince()
		if lostAt, lost := cps.Lost(); lost {
			since = lostAt.Add(-lostSlack)
		}
		if since.IsZero() || m.started.Before(since) {
			since = m.started
		}
		since = m.daemonTime(since)
		if c.FinishedAt.IsZero() || c.FinishedAt.Before(since) && c.StartedAt.Before(since) {
			return
		}
	}
	if ct.read == nil {
		ct.read = &pipeline.LogCursor{}
	}
	m.startLocked(ct, c)
}

// startLocked starts a tailer for ct's current run.
func (m *Manager) startLocked(ct *container, c Container) {
	id := c.Meta.ID
	t := &tailer{
		m:    m,
		id:   id,
		tty:  c.Tty,
		log:  m.log.With("container", c.Meta.Name),
		read: ct.read,
		warn: &ct.warn,
		done: make(chan struct{}),
		// A reopen is every logs request for the container after its
		// first in this agent run: what the tail costs dockerd.
		reopen:  ct.opened,
		stopped: !c.Running && !c.Restarting,
	}
	t.run0.Store(nanos(c.StartedAt))
	ct.opened = true
	t.onDrop = func(i int) { t.dropped = append(t.dropped, i) }
	meta := c.Meta
	t.meta.Store(&meta)
	ct.tailer = t
	ct.again = false
	ctx := m.ctx
	m.wg.Go(func() {
		res := t.run(ctx)
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.ctrs[id] != ct {
			return // destroyed meanwhile
		}
		ct.tailer = nil
		if ct.gone {
			delete(m.ctrs, id)
			return
		}
		switch {
		case res == tailUnreadable:
			ct.unreadable, ct.doneRun = true, t.runStarted()
		case res == tailFinished:
			ct.done, ct.doneRun = true, t.runStarted()
		}
		if ct.again && ctx.Err() == nil && res != tailGone &&
			(ct.last.Running || !ct.last.StartedAt.Equal(ct.doneRun)) {
			// A new run started while this one was finishing: follow it.
			ct.done, ct.unreadable = false, false
			m.startLocked(ct, ct.last)
		}
	})
}

// Destroyed forgets a removed container's position once its tailer is done.
func (m *Manager) Destroyed(id string) {
	m.mu.Lock()
	ct, ok := m.ctrs[id]
	if ok && ct.tailer != nil {
		// Kept until its tailer ends, so that an inspect that still
		// finds the container does not start a second one.
		ct.gone = true
	} else {
		delete(m.ctrs, id)
	}
	m.mu.Unlock()
	if ok && ct.tailer != nil {
		// The tailer still drains what Docker returns; forget the position
		// when it ends, or the checkpoint would come back on its acks.
		// Owned by the manager like the tailer it waits for.
		t := ct.tailer
		m.wg.Go(func() {
			<-t.done
			m.opts.Checkpoints.Forget(id)
		})
		return
	}
	m.opts.Checkpoints.Forget(id)
}

// Following reports whether a tailer follows the container now, and
// whether its current run was read to the end.
func (m *Manager) Following(id string) (tailing, done bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ct, ok := m.ctrs[id]
	if !ok {
		return false, false
	}
	return ct.tailer != nil, ct.done
}

// Unfollowed reports whether the container's logs were followed in this
// run and no tailer follows them now (nor will, for a driver that cannot
// be read).
func (m *Manager) Unfollowed(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	ct, ok := m.ctrs[id]
	return ok && ct.tailer == nil && ct.read != nil && !ct.noDriver && !ct.unreadable
}

// lostStart is where a running container's log is resumed when the state
// was lost: about when it was last written, in the daemon's clock. It
// reports false when the state was not lost.
func (m *Manager) lostStart() (time.Time, bool) {
	at, lost := m.opts.Checkpoints.Lost()
	if !lost {
		return time.Time{}, false
	}
	from := m.daemonTime(at.Add(-lostSlack))
	m.lostOnce.Do(func() {
		m.log.Warn("log checkpoints were lost (unreadable, moved aside): logs of containers without a position are resumed from shortly before the lost state was last written, not from their start; lines read then but not yet delivered may be missing, lines delivered within the slack are shipped again",
			"state_last_written", at, "resume_from", from, "slack", lostSlack)
	})
	return from, true
}

// dialFailed reports whether a failed logs request is to be logged now
// (once per warnInterval for all containers: a daemon refusing streams,
// e.g. out of descriptors, fails them all), and how many were not.
func (m *Manager) dialFailed() (bool, int) {
	m.dialMu.Lock()
	defer m.dialMu.Unlock()
	return m.dialWarn.ok(m.clock.Now())
}

// ctxOrNil is Run's context once Run started.
func (m *Manager) ctxOrNil() context.Context {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ctx
}
