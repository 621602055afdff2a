package pipeline

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Snapshot is everything known about one container at one moment. Exporters
// receive copies; they never share memory with the store.
type Snapshot struct {
	Meta  ContainerMeta
	State ContainerState
	Spec  ContainerSpec
	// Stats is the latest sample, nil until the first one arrives or when the
	// container is not running.
	Stats *Stats
	// Filesystem is the latest measurement of its writable layer and log
	// directory; nil until the first walk ends, or when they cannot be
	// read. Replaced wholesale, never mutated, so snapshots share it.
	Filesystem *FilesystemStats
	// Events counts the lifecycle events seen for the container since the
	// agent started, by action (start, die, oom, health_status, ...).
	Events map[string]uint64
	// OOMKills counts processes of the container the kernel's OOM killer
	// ended, seen since the agent started: every `oom` event, plus a run
	// that ended OOM-killed (State.OOMKilled) without one, e.g. while the
	// agent was down.
	OOMKills uint64
	LastSeen time.Time // when the Engine last told us anything about it
	// Logs counts the container's log path; nil until its logs are read.
	Logs *LogCounters

	oom oomDeaths
}

// oomDeaths is the OOM bookkeeping that makes an `oom` event and the
// OOMKilled flag of the same death count once, whichever the agent sees
// first. It goes by the order of deaths and by the event's own time, not by
// the state stored when the event is handled: a resync's inspect may store
// an older state than the event handler's (CI counted one death twice).
type oomDeaths struct {
	last time.Time // FinishedAt of the newest OOM death seen
	// eventsSince counts the oom events counted since that death: a death
	// seen after some is theirs, already counted.
	eventsSince int
	// absorbUntil: the newest death was counted by its flag alone, so an
	// oom event stamped up to this time is that same kill, reported late.
	absorbUntil time.Time
}

// oomEventLag bounds how much later than the process's exit (FinishedAt,
// containerd's clock) the daemon may stamp its oom event (when it handles
// it); it only matters when a container dies of OOM twice within it.
const oomEventLag = 10 * time.Second

// LogCounters are one container's log-path counters. The reader and the
// exporter update them with atomics (no store lock on the hot path); the
// scrape reads them.
type LogCounters struct {
	LinesRead, BytesRead       atomic.Uint64
	LinesShipped, BytesShipped atomic.Uint64
	LinesDropped               atomic.Uint64
	// Timestamps (Docker's, unix ns) of the newest line read and of the
	// newest line delivered: their difference is the checkpoint lag.
	LastRead, LastShipped atomic.Int64
}

// Lag is how far delivery is behind reading, in Docker timestamps.
func (l *LogCounters) Lag() time.Duration {
	r, s := l.LastRead.Load(), l.LastShipped.Load()
	if r == 0 || s >= r {
		return 0
	}
	if s == 0 {
		return 0 // nothing delivered yet: no position to lag from
	}
	return time.Duration(r - s)
}

// Store holds the latest snapshot of every container the collector follows.
// The metrics path needs only the latest value per container, so instead of
// a queue it is a map that the collector writes and exporters read at their
// own pace (Prometheus at scrape time, OTLP on its interval): a slow exporter
// can never make the collector block or buffer.
type Store struct {
	mu         sync.RWMutex
	containers map[string]*Snapshot
	services   []ServiceReplicas // replaced wholesale, never mutated
	now        func() time.Time

	refreshMu sync.Mutex
	refresher *refresher // nil: samples come only on the collector's interval
}

// refresher is the function installed by SetRefresher; a pointer so that
// the remover can tell whether it is still the installed one.
type refresher struct{ fn func(context.Context) }

// SetRefresher installs fn, which brings the stats of every running
// container up to date, for exporters to call (Refresh) right before they
// read the store: counters read at scrape time make rate() over short
// windows exact, where samples taken every stats.interval would step. It
// returns a function that removes fn again, unless another one has been
// installed since (a reloaded collector's).
func (s *Store) SetRefresher(fn func(context.Context)) (remove func()) {
	r := &refresher{fn: fn}
	s.refreshMu.Lock()
	s.refresher = r
	s.refreshMu.Unlock()
	return func() {
		s.refreshMu.Lock()
		if s.refresher == r {
			s.refresher = nil
		}
		s.refreshMu.Unlock()
	}
}

// Refresh runs the installed refresher, if any.
func (s *Store) Refresh(ctx context.Context) {
	s.refreshMu.Lock()
	r := s.refresher
	s.refreshMu.Unlock()
	if r != nil {
		r.fn(ctx)
	}
}

// ServiceReplicas is one Swarm service's task counts, as a manager reports
// them (swarm.services).
type ServiceReplicas struct {
	ID, Name string
	Stack    string // com.docker.stack.namespace, empty outside a stack
	Mode     string // replicated, global, replicated-job, global-job
	Desired  uint64
	Running  uint64
}

// SetServices replaces the Swarm services' replica counts; nil clears them.
func (s *Store) SetServices(services []ServiceReplicas) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services = services
}

// Services returns the latest Swarm services' replica counts. The slice is
// shared and must not be modified.
func (s *Store) Services() []ServiceReplicas {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.services
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{containers: make(map[string]*Snapshot), now: time.Now}
}

// Upsert records a container's identity, state and limits, as read from an
// inspect. A container's stats and event counts survive the update.
func (s *Store) Upsert(meta ContainerMeta, state ContainerState, spec ContainerSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[meta.ID]
	if !ok {
		c = &Snapshot{Events: make(map[string]uint64)}
		s.containers[meta.ID] = c
	}
	c.Meta, c.State, c.Spec = meta, state, spec
	// A run that ended (FinishedAt past StartedAt: while it runs, FinishedAt
	// is the previous run's) OOM-killed, and newer than the last one seen.
	if state.OOMKilled && state.FinishedAt.After(state.StartedAt) && state.FinishedAt.After(c.oom.last) {
		c.oom.last = state.FinishedAt
		c.oom.absorbUntil = time.Time{}
		if c.oom.eventsSince == 0 {
			c.OOMKills++
			c.oom.absorbUntil = state.FinishedAt.Add(oomEventLag)
		}
		c.oom.eventsSince = 0
	}
	if !state.Running() {
		// A stopped container's last sample would otherwise be exported as
		// if it were current.
		c.Stats = nil
	}
	c.LastSeen = s.now()
}

// olderSampleWindow: see SetStats.
const olderSampleWindow = 10 * time.Second

// SetStats records a new sample and fills in CPUUsageCores from the previous
// one. It reports false when the container is not (or no longer) known. A
// sample taken before the stored one is dropped: a periodic round and a
// scrape-time refresh read concurrently, and storing the older one last
// would make the counters go back (a reset, to rate()). Such a race spans
// milliseconds; a sample older by more than olderSampleWindow is the
// Engine's clock stepped back (API samples carry its time), and is kept,
// so that a clock step cannot freeze a container's stats.
func (s *Store) SetStats(id string, st Stats) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return false
	}
	if prev := c.Stats; prev != nil && st.Read.Before(prev.Read) && prev.Read.Sub(st.Read) < olderSampleWindow {
		return true
	}
	if !c.State.Running() {
		// Read just before the container stopped, stored after: it would
		// be exported as current (see Upsert).
		return true
	}
	if prev := c.Stats; prev != nil && st.Read.After(prev.Read) && st.CPUTotal >= prev.CPUTotal {
		st.CPUUsageCores = float64(st.CPUTotal-prev.CPUTotal) / float64(st.Read.Sub(prev.Read))
		st.HasCPUUsage = true
	}
	c.Stats = &st
	c.LastSeen = s.now()
	return true
}

// RecordEvent counts a lifecycle event of a known container; at is the
// event's time, as the daemon stamped it.
func (s *Store) RecordEvent(id, action string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return
	}
	c.Events[action]++
	if action == "oom" {
		absorbed := !c.oom.absorbUntil.IsZero() && !at.After(c.oom.absorbUntil)
		c.oom.absorbUntil = time.Time{}
		if !absorbed {
			c.OOMKills++
			c.oom.eventsSince++
		}
	}
	c.LastSeen = s.now()
}

// SetHealth updates a container's health status without a full inspect.
func (s *Store) SetHealth(id, health string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.containers[id]; ok {
		c.State.Health = health
		c.LastSeen = s.now()
	}
}

// LogCounters returns the container's log counters, creating them; a
// container the store does not know gets a detached set.
func (s *Store) LogCounters(id string) *LogCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return new(LogCounters)
	}
	if c.Logs == nil {
		c.Logs = new(LogCounters)
	}
	return c.Logs
}

// Touch records that the Engine still reports a container.
func (s *Store) Touch(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.containers[id]; ok {
		c.LastSeen = s.now()
	}
}

// Remove forgets a container; its series disappear from the next export.
func (s *Store) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.containers, id)
}

// IDs returns the ids of every container in the store.
func (s *Store) IDs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Collect(maps.Keys(s.containers))
}

// Get returns a copy of one container's snapshot.
func (s *Store) Get(id string) (Snapshot, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.containers[id]
	if !ok {
		return Snapshot{}, false
	}
	return c.clone(), true
}

// Snapshot returns copies of every container's snapshot, ordered by name so
// that exports are deterministic.
func (s *Store) Snapshot() []Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	// Sorted as pointers, then cloned in order: sorting the clones moved
	// whole Snapshots (~600 bytes) at every swap, an eighth of a scrape's
	// rendering at 1,000 containers.
	order := make([]*Snapshot, 0, len(s.containers))
	for _, c := range s.containers {
		order = append(order, c)
	}
	slices.SortFunc(order, func(a, b *Snapshot) int {
		if c := strings.Compare(a.Meta.Name, b.Meta.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Meta.ID, b.Meta.ID)
	})
	out := make([]Snapshot, len(order))
	for i, c := range order {
		out[i] = c.clone()
	}
	return out
}

// Len returns the number of containers in the store.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.containers)
}

// clone copies the parts of a snapshot that are mutated in place. Meta.Labels,
// Stats.Networks and Stats.Disks are replaced wholesale on update, never
// mutated, so sharing them is safe.
func (c *Snapshot) clone() Snapshot {
	out := *c
	out.Events = maps.Clone(c.Events)
	if c.Stats != nil {
		st := *c.Stats
		out.Stats = &st
	}
	return out
}
