package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/pipeline"
)

// statsSampler takes one one-shot sample of every running container per
// interval, a bounded number at a time. One-shot costs the daemon ~4 ms of
// CPU per call; a long-lived stream per container costs far more
// (moby#21837), and the non-one-shot form blocks 1–2 s per call.
//
// The samples are taken by a fixed set of workers rather than a goroutine
// per sample: decoding a stats document grows a goroutine's stack, and a
// fresh goroutine per sample paid for that growth every time.
type statsSampler struct {
	c        *Collector
	cgroup   *cgroupReader // nil: every sample from the Engine API
	devices  *deviceNamer  // nil: the daemon's host is not this one; disks keep "major:minor"
	work     chan statsJob
	triggers chan string
	wg       sync.WaitGroup

	fallbackLogged atomic.Bool

	refreshMu   sync.Mutex
	lastRefresh time.Time
	stopped     bool // run has ended: its descriptors are closed, or about to be
}

// statsJob is one container to sample; done (if set) is told when it is.
type statsJob struct {
	id     string
	target *statsTarget // where its cgroup files are; nil: look it up
	// sharedNetns: the container joined another one's network namespace
	// (HostConfig.NetworkMode "container:<id>").
	sharedNetns bool
	done        *sync.WaitGroup
}

// sharesNetns reports whether a container with this HostConfig.NetworkMode
// uses another container's network namespace: `--network container:X`,
// Compose's `network_mode: service:`, every member of a Kubernetes pod but
// its pause container. Its interfaces and their counters are the other
// container's, so, as cAdvisor does (its handler's needNet), it exports no
// network series of its own: repeating them would make every sum over
// containers count the namespace's traffic once per member.
func sharesNetns(networkMode string) bool {
	return strings.HasPrefix(networkMode, "container:")
}

// targetOf says where a container's files are: the directories resolved
// from /proc for its current run when there are some, else its cgroup path.
func targetOf(s *pipeline.Snapshot, cgroups *cgroupResolver) *statsTarget {
	t := &statsTarget{
		cgroupPath:  s.Meta.CgroupPath,
		pid:         s.State.Pid,
		networkMode: s.State.NetworkMode,
		cpuQuota:    s.Spec.CPUQuota > 0,
		memoryLimit: s.Spec.MemoryLimit > 0,
	}
	if cgroups != nil {
		if e, ok := cgroups.lookup(s.Meta.ID, s.State.Pid); ok {
			t.dirs = e.dirs
		}
	}
	return t
}

func newStatsSampler(c *Collector) *statsSampler {
	s := &statsSampler{
		c:        c,
		work:     make(chan statsJob),
		triggers: make(chan string, 64),
	}
	cfg := c.cfg.Stats
	if strings.HasPrefix(c.host, "unix://") || cfg.Source == "cgroup" {
		s.devices = newDeviceNamer(cfg.SysRoot)
	}
	if cfg.Source == "api" {
		return s
	}
	if cfg.Source == "auto" && !strings.HasPrefix(c.host, "unix://") {
		// A daemon elsewhere: this host's cgroups and pids are not its
		// containers'.
		c.log.Info("reading container stats through the Engine API (stats.source auto): the daemon is not on a local unix socket", "host", c.host)
		return s
	}
	r, err := newCgroupReader(cfg.CgroupRoot, cfg.ProcRoot)
	switch {
	case err == nil:
		r.perCPU = cfg.PerCPU
		s.cgroup = r
		c.log.Info("reading container stats from cgroup files", "cgroup_root", cfg.CgroupRoot, "cgroup_v2", r.v2, "proc_root", cfg.ProcRoot)
	case cfg.Source == "auto":
		c.log.Info("reading container stats through the Engine API (stats.source auto)", "reason", err)
	default:
		c.log.Warn("stats.source is cgroup but the cgroup files cannot be read; reading stats through the Engine API", "err", err)
	}
	return s
}

// trigger asks for an immediate sample of a container that just started, so
// that it does not wait a whole interval. When many start at once the
// excess waits for the next round instead.
func (s *statsSampler) trigger(id string) {
	select {
	case s.triggers <- id:
	default:
	}
}

// run samples until ctx is cancelled, then waits for its workers to end.
func (s *statsSampler) run(ctx context.Context) {
	for range s.c.cfg.Stats.Concurrency {
		s.wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case job := <-s.work:
					s.sampleOne(ctx, job)
					if job.done != nil {
						job.done.Done()
					}
				}
			}
		})
	}
	var removeRefresher func()
	if s.cgroup != nil {
		removeRefresher = s.c.store.SetRefresher(s.refresh)
	}
	defer func() {
		if removeRefresher != nil {
			removeRefresher()
			// A refresh that started before the removal ends before the
			// descriptors are closed; one called after it does nothing.
			s.refreshMu.Lock()
			s.stopped = true
			defer s.refreshMu.Unlock()
		}
		s.wg.Wait()
		if s.cgroup != nil {
			s.cgroup.files.closeAll()
		}
	}()
	tick := time.NewTicker(s.c.cfg.Stats.Interval)
	defer tick.Stop()
	s.round(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.round(ctx)
		case id := <-s.triggers:
			job := s.jobFor(id)
			select {
			case s.work <- job:
			default:
				// All workers busy with a round that may predate this
				// container: queue behind it rather than wait an interval.
				s.wg.Go(func() {
					select {
					case s.work <- job:
					case <-ctx.Done():
					}
				})
			}
		}
	}
}

// jobFor describes a container that is sampled outside a round.
func (s *statsSampler) jobFor(id string) statsJob {
	snap, ok := s.c.store.Get(id)
	if !ok {
		return statsJob{id: id}
	}
	job := statsJob{id: id, sharedNetns: sharesNetns(snap.State.NetworkMode)}
	if s.cgroup != nil {
		job.target = targetOf(&snap, s.c.cgroups)
	}
	return job
}

// round samples every running container and waits for all of them.
func (s *statsSampler) round(ctx context.Context) {
	start := time.Now()
	var done sync.WaitGroup
	snaps := s.c.store.Snapshot()
	for i := range snaps {
		snap := &snaps[i]
		if !snap.State.Running() || snap.State.Status == "restarting" {
			continue
		}
		done.Add(1)
		job := statsJob{id: snap.Meta.ID, sharedNetns: sharesNetns(snap.State.NetworkMode), done: &done}
		if s.cgroup != nil {
			job.target = targetOf(snap, s.c.cgroups)
		}
		select {
		case s.work <- job:
		case <-ctx.Done():
			done.Done()
			return
		}
	}
	done.Wait()
	if s.cgroup != nil {
		s.cgroup.files.sweep()
	}
	s.c.tel.SetStatsRound(time.Since(start))
}

func (s *statsSampler) sampleOne(ctx context.Context, job statsJob) {
	id := job.id
	counters := s.c.tel.Stage(pipeline.StageStats)
	counters.In.Add(1)
	st, err := s.sample(ctx, job)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		counters.Dropped.Add(1)
		if cerrdefs.IsNotFound(err) {
			// Confirmed by an inspect, whose 404 forgets the container:
			// forgetting drops its log position, and a 404 from the
			// stats endpoint alone (a proxy, a daemon without it) must
			// not make a running container's log be read again.
			if _, _, err := s.c.inspect(ctx, id, ""); err != nil {
				s.c.log.Debug("inspect after a stats 404 failed", "container", shortID(id), "err", err)
			}
			return
		}
		s.c.log.Debug("stats sample failed", "container", shortID(id), "err", err)
		return
	}
	s.finish(job, &st)
	if s.c.store.SetStats(id, st) {
		counters.Out.Add(1)
	}
}

// finish applies what every sample gets, whichever way it was read.
func (s *statsSampler) finish(job statsJob, st *pipeline.Stats) {
	if s.c.noCgroups() {
		// Only the network namespace is the container's own.
		*st = pipeline.Stats{Read: st.Read, Networks: st.Networks, NetworkOnly: true}
	}
	if job.sharedNetns {
		// The Engine's stats repeat the joined namespace's interfaces too.
		st.Networks = nil
	}
	if s.devices != nil {
		s.devices.rename(st.Disks)
	}
}

// refreshGap is the least time between two scrape-time refreshes: two
// Prometheus servers (an HA pair) scraping together share one.
const refreshGap = 200 * time.Millisecond

// refreshTimeout bounds one refresh; a scrape waits for it.
const refreshTimeout = 2 * time.Second

// refresh reads every running container's cgroup files again, right before
// an exporter reads the store (pipeline.Store.Refresh, called at scrape
// time), so that the counters Prometheus stores carry the time they were
// read at. Samples taken every stats.interval and served without a
// timestamp step every interval while Prometheus assumes each scrape is
// fresh: rate(container_cpu_usage_seconds_total[30s]) of a busy loop read
// 0.80 cores at a 5 s scrape with the 10 s default. A read costs ~30 µs
// (kept descriptors, measured on this project's cgroup v1 host), ~6 ms per
// scrape at 200 containers, against ~4 ms of dockerd CPU per Engine API
// sample: the Engine is never asked here, a container whose files cannot
// be read keeps its last sample.
func (s *statsSampler) refresh(ctx context.Context) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if s.stopped || time.Since(s.lastRefresh) < refreshGap || s.c.noCgroups() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	snaps := s.c.store.Snapshot()
	for i := range snaps {
		snap := &snaps[i]
		if ctx.Err() != nil {
			break
		}
		if !snap.State.Running() || snap.State.Status == "restarting" || snap.Stats == nil {
			continue // not sampled yet: the round or its start trigger will
		}
		t := targetOf(snap, s.c.cgroups)
		if t.cgroupPath == "" {
			continue
		}
		st, err := s.cgroup.read(*t)
		if err != nil {
			continue // stopped meanwhile, or gone: the round deals with it
		}
		s.c.tel.StatsFromCgroup.Add(1)
		s.finish(statsJob{id: snap.Meta.ID, sharedNetns: sharesNetns(snap.State.NetworkMode)}, &st)
		s.c.store.SetStats(snap.Meta.ID, st)
	}
	s.lastRefresh = time.Now()
}

// sample reads the container's cgroup files when that source is on, and
// asks the Engine otherwise, or when the files cannot be read (a container
// that just stopped, a cgroup layout the reader does not know).
func (s *statsSampler) sample(ctx context.Context, job statsJob) (pipeline.Stats, error) {
	if s.cgroup != nil && !s.c.noCgroups() {
		t := job.target
		if t == nil { // a container that just started: not in a round yet
			if snap, ok := s.c.store.Get(job.id); ok {
				t = targetOf(&snap, s.c.cgroups)
			}
		}
		if t != nil && t.cgroupPath != "" {
			st, err := s.cgroup.read(*t)
			if err == nil {
				s.c.tel.StatsFromCgroup.Add(1)
				return st, nil
			}
			if s.fallbackLogged.CompareAndSwap(false, true) {
				// Once: after that, dockscope_stats_samples_total{source="api"} counts them.
				s.c.log.Warn("a cgroup stats read failed; that sample came from the Engine API", "container", shortID(job.id), "err", err)
			} else {
				s.c.log.Debug("cgroup stats read failed; using the Engine API", "container", shortID(job.id), "err", err)
			}
		}
	}
	s.c.tel.StatsFromAPI.Add(1)
	return s.c.fetchStats(ctx, job.id)
}

// fetchStats takes one sample through the Engine API.
func (c *Collector) fetchStats(ctx context.Context, id string) (pipeline.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Docker.Timeout)
	defer cancel()
	res, err := c.docker.ContainerStats(ctx, id, client.ContainerStatsOptions{})
	if err != nil {
		return pipeline.Stats{}, fmt.Errorf("reading stats of %s: %w", shortID(id), err)
	}
	defer res.Body.Close()
	var raw engineStats
	var perCPU []time.Duration
	if c.cfg.Stats.PerCPU {
		raw, perCPU, err = decodeStatsPerCPU(res.Body)
	} else {
		err = json.NewDecoder(res.Body).Decode(&raw)
	}
	if err != nil {
		return pipeline.Stats{}, fmt.Errorf("decoding stats of %s: %w", shortID(id), err)
	}
	st, err := statsFromResponse(raw)
	if err != nil {
		return pipeline.Stats{}, fmt.Errorf("stats of %s: %w", shortID(id), err)
	}
	st.PerCPU = perCPU
	return st, nil
}
