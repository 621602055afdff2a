// Package collector speaks the Docker Engine API: it discovers containers
// (list, events, periodic resync), samples their resource statistics and
// writes what it learns into the pipeline's store. It is the only package
// that imports the Docker client.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/dockscope/dockscope/collector/internal/backoff"
	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// Options wire a Collector to the rest of the agent.
type Options struct {
	Config    config.Config
	Store     *pipeline.Store
	Telemetry *pipeline.Telemetry
	Logger    *slog.Logger
	// Logs, when set, turns on log collection into Logs.Queue.
	Logs *LogOptions
}

// Collector follows one Docker Engine. Create it with New, run it with Run.
type Collector struct {
	cfg    config.Config
	store  *pipeline.Store
	tel    *pipeline.Telemetry
	log    *slog.Logger
	sel    *Selector
	docker *client.Client
	host   string // what we connect to, for messages

	status atomic.Pointer[readiness]

	// Set once per session from /info and read by the event and stats
	// goroutines of that session.
	hostname     atomic.Pointer[string]
	cgroupDriver atomic.Pointer[string]
	runtime      atomic.Pointer[string] // runtimeDocker or runtimePodman
	// noCgroupsLogged: the warning that the Engine gives its containers
	// no cgroups is logged once per agent, not on every reconnect.
	noCgroupsLogged atomic.Bool

	// events bookkeeping, owned by the session goroutine.
	since eventCursor
	// streamsOpened counts event streams opened: every one after the first
	// is a reconnect, whatever ended the session before it (the stream
	// itself, or a list or inspect that failed first as the daemon went).
	streamsOpened int

	logs *logs // nil when logs are off

	// cgroups finds containers' cgroups from /proc; nil when the daemon is
	// elsewhere (its pids and cgroups are not this host's).
	cgroups *cgroupResolver

	// fs measures containers' writable layers; nil when that is off or the
	// daemon is elsewhere. dataRoot is the daemon's DockerRootDir.
	fs       *fsUsage
	dataRoot atomic.Pointer[string]
}

type readiness struct {
	ready  bool
	reason string
	// retryAt is when the next connection attempt is due, while not ready.
	retryAt time.Time
}

// New builds a collector. It does no I/O: an unreachable daemon is not an
// error here, Run keeps retrying.
func New(opts Options) (*Collector, error) {
	// A transport of our own: the default keeps only 2 idle connections
	// per host, so a round of stats requests at concurrency 8 would dial
	// (and make dockerd accept) a new connection for most requests.
	transport := &http.Transport{
		MaxIdleConns:        opts.Config.Stats.Concurrency + 8,
		MaxIdleConnsPerHost: opts.Config.Stats.Concurrency + 8,
		IdleConnTimeout:     2 * opts.Config.Stats.Interval,
	}
	clientOpts := []client.Opt{
		client.WithHTTPClient(&http.Client{Transport: transport}),
		client.WithHost(client.DefaultDockerHost), // DOCKER_HOST or the config override it
		client.FromEnv,
		// The client wraps its transport in otelhttp; the agent does not
		// trace its own Engine calls, and the per-request span and metric
		// bookkeeping cost about a tenth of a stats sample.
		client.WithTraceOptions(otelhttp.WithFilter(func(*http.Request) bool { return false })),
	}
	if h := opts.Config.Docker.Host; h != "" {
		clientOpts = append(clientOpts, client.WithHost(h))
	}
	if v := opts.Config.Docker.APIVersion; v != "" {
		clientOpts = append(clientOpts, client.WithAPIVersion(v))
	}
	if os.Getenv("DOCKER_CERT_PATH") == "" && os.Getenv("DOCKER_TLS_VERIFY") == "" {
		// The client infers https from a cloned transport's TLS settings;
		// without TLS variables it is plain HTTP (unix socket or tcp).
		clientOpts = append(clientOpts, client.WithScheme("http"))
	}
	cli, err := client.New(clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("creating docker client: %w", err)
	}
	c := &Collector{
		cfg:    opts.Config,
		store:  opts.Store,
		tel:    opts.Telemetry,
		log:    opts.Logger,
		sel:    NewSelector(opts.Config.Discovery),
		docker: cli,
		host:   cli.DaemonHost(),
	}
	c.status.Store(&readiness{reason: "not connected to the docker daemon yet"})
	rt := runtimeDocker // until connect reads /version
	c.runtime.Store(&rt)
	if st := opts.Config.Stats; strings.HasPrefix(c.host, "unix://") || st.Source == "cgroup" {
		c.cgroups = newCgroupResolver(st.CgroupRoot, st.ProcRoot, c.log, st.Source == "api")
	}
	if opts.Logs != nil {
		c.logs = newLogs(c, *opts.Logs)
	}
	c.fs = newFSUsageFor(opts.Config.Stats, c.host, opts.Store, c.log)
	return c, nil
}

// Ready reports whether the collector is connected and has listed the
// daemon's containers; when not, the reason says why, for /readyz.
func (c *Collector) Ready() (bool, string) {
	s := c.status.Load()
	if !s.ready && !s.retryAt.IsZero() {
		return false, fmt.Sprintf("%s (next attempt in %s)", s.reason, max(0, time.Until(s.retryAt)).Round(time.Millisecond))
	}
	return s.ready, s.reason
}

// setReady records a readiness change and logs it once per change, not once
// per retry, so a daemon that is down for an hour does not flood the log:
// the reason compared is the error alone, without when the next attempt is.
func (c *Collector) setReady(ready bool, reason string, retryAt time.Time) {
	prev := c.status.Swap(&readiness{ready: ready, reason: reason, retryAt: retryAt})
	c.tel.SetEngineUp(ready)
	if prev.ready == ready && (ready || prev.reason == reason) {
		return
	}
	if ready {
		c.log.Info("connected to the docker daemon", "host", c.host, "containers", c.store.Len())
	} else {
		c.log.Warn("docker daemon not available, retrying with backoff", "host", c.host, "reason", reason)
	}
}

// Run follows the daemon until ctx is cancelled. Connection failures and
// stream errors are retried with capped exponential backoff; Run returns
// only when ctx is done.
func (c *Collector) Run(ctx context.Context) error {
	defer c.docker.Close()
	if c.logs != nil {
		// The tailers outlive sessions: each retries its own stream.
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { c.logs.run(ctx) })
	}
	if c.fs != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { c.fs.run(ctx) })
	}
	bo := backoff.New(500*time.Millisecond, c.cfg.Docker.MaxBackoff)
	for {
		started := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > c.cfg.Docker.MaxBackoff {
			// The session was healthy for a while: this is a new outage.
			bo.Reset()
		}
		wait := bo.Next()
		c.setReady(false, err.Error(), time.Now().Add(wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// eventWorkers is how many containers' events are handled at once.
const eventWorkers = 8

// session connects, lists, and follows events until the stream breaks.
func (c *Collector) session(ctx context.Context) error {
	if err := c.connect(ctx); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// Events first, then the list, so that nothing happening between the two
	// is missed (design §3).
	stream := newEventReader(c.docker, c.tel, c.since.String())
	wg.Go(func() { stream.run(ctx) })
	if c.streamsOpened > 0 {
		c.tel.EventStreamReconnects.Add(1)
	}
	c.streamsOpened++

	// The first list of a session inspects every container: the daemon may
	// have restarted, or a reloaded configuration changed what is kept.
	if err := c.reconcile(ctx, true); err != nil {
		return err
	}
	c.setReady(true, "", time.Time{})

	sampler := newStatsSampler(c)
	wg.Go(func() { sampler.run(ctx) })
	// Runs before cancel (defers run last first): the events already
	// taken off the stream are handled even when it broke, since the
	// cursor has moved past them.
	lanes := newEventLanes(ctx, eventWorkers, func(ctx context.Context, batch []events.Message) {
		c.handleEvents(ctx, batch, sampler)
	})
	defer lanes.close(c.cfg.Docker.Timeout)
	if c.cfg.Swarm.Services {
		wg.Go(func() { c.pollServices(ctx, c.cfg.Stats.Interval) })
	}

	resync := time.NewTicker(c.cfg.Discovery.ResyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-stream.errs:
			return fmt.Errorf("reading docker events: %w", err)
		case ev := <-stream.queue:
			if c.since.advance(ev) && !lanes.dispatch(ctx, ev) {
				return nil
			}
		case <-stream.overflowed:
			// Events were dropped: only a full list heals that.
			if err := c.reconcile(ctx, false); err != nil {
				return err
			}
		case <-resync.C:
			if err := c.reconcile(ctx, false); err != nil {
				return err
			}
		}
	}
}

// connect negotiates the API version and records the daemon's identity.
func (c *Collector) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Docker.Timeout)
	defer cancel()
	ping, err := c.docker.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	switch {
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("connecting to the docker daemon at %s: %w%s", c.host, err, socketHint(c.host))
	case ping.APIVersion == "":
		// Every Docker Engine names its API version on /_ping, errors
		// included; anything else on the socket would otherwise fail later
		// with a puzzling JSON error.
		if err == nil {
			err = errors.New("its answer has no API-Version header")
		}
		return fmt.Errorf("connecting to the docker daemon at %s: the server there is not a Docker Engine (GET /_ping: %w)", c.host, err)
	case err != nil:
		return fmt.Errorf("connecting to the docker daemon at %s: %w", c.host, err)
	}
	ver, err := c.docker.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return fmt.Errorf("reading the docker daemon's version: %w", err)
	}
	info, err := c.docker.Info(ctx, client.InfoOptions{})
	if err != nil {
		return fmt.Errorf("reading the docker daemon's info: %w", err)
	}
	hostname := c.cfg.Agent.Hostname
	if hostname == "" {
		// The daemon's host name, not the agent's: in a container os.Hostname
		// is the container id.
		hostname = info.Info.Name
	}
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	c.hostname.Store(&hostname)
	// The daemon's clock, not the agent's: they differ for a remote daemon.
	now, err := time.Parse(time.RFC3339Nano, info.Info.SystemTime)
	if err == nil {
		c.since.start(now)
	}
	root := info.Info.DockerRootDir
	c.dataRoot.Store(&root)
	driver := info.Info.CgroupDriver
	c.cgroupDriver.Store(&driver)
	names := make([]string, 0, len(ver.Components))
	for _, comp := range ver.Components {
		names = append(names, comp.Name)
	}
	runtime := runtimeName(names)
	c.runtime.Store(&runtime)
	if driver == noCgroupDriver && c.noCgroupsLogged.CompareAndSwap(false, true) {
		c.log.Warn("the Engine runs containers without cgroups of their own (cgroup driver none: rootless Docker on cgroup v1): exporting only their network counters and no resource limits; CPU, memory, pids and block I/O would be the daemon's whole cgroup's, and limits such as --memory are not applied",
			"rootless", slices.Contains(info.Info.SecurityOptions, "name=rootless"), "cgroup_version", info.Info.CgroupVersion)
	}
	c.tel.SetDaemon(pipeline.DaemonInfo{
		Version:    ver.Version,
		APIVersion: c.docker.ClientVersion(),
		OSType:     info.Info.OSType,
		CgroupVer:  info.Info.CgroupVersion,

		NCPU:            info.Info.NCPU,
		MemTotal:        info.Info.MemTotal,
		KernelVersion:   info.Info.KernelVersion,
		OperatingSystem: info.Info.OperatingSystem,
	})
	if c.logs != nil {
		c.logs.connected(ver.Version, c.docker.ClientVersion(), runtime, now)
	}
	return nil
}

// noCgroupDriver is the cgroup driver Docker reports when it gives
// containers no cgroups: rootless Docker on cgroup v1 (or on v2 without
// systemd's delegation). Their processes stay in the daemon's cgroup.
const noCgroupDriver = "none"

// noCgroups reports whether the Engine gives containers no cgroups of
// their own: the cgroup files and the Engine's stats of CPU, memory, pids
// and block I/O are then the daemon's cgroup's, shared by every container.
func (c *Collector) noCgroups() bool {
	d := c.cgroupDriver.Load()
	return d != nil && *d == noCgroupDriver
}

// inspect reads one container and stores it, or removes it from the store
// when it is gone or not selected. It returns the stored state.
// event is the action that prompted the inspect, "" for a resync.
func (c *Collector) inspect(ctx context.Context, id, event string) (pipeline.ContainerState, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Docker.Timeout)
	defer cancel()
	res, err := c.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) || podmanGone(err) {
			c.forget(id)
			return pipeline.ContainerState{}, false, nil
		}
		c.tel.InspectErrors.Add(1)
		return pipeline.ContainerState{}, false, fmt.Errorf("inspecting container %s: %w", shortID(id), err)
	}
	meta, state, spec := containerFromInspect(res.Container, *c.hostname.Load(), c.sel.LabelAllowed)
	daemon, _ := c.tel.Daemon()
	specDetail(&spec, res.Container.HostConfig, daemon.CgroupVer == "2")
	var labels map[string]string
	if res.Container.Config != nil {
		labels = res.Container.Config.Labels
	}
	if !c.sel.Selected(meta.Name, meta.Image, labels) {
		c.store.Remove(id)
		if c.cgroups != nil {
			c.cgroups.forget(id)
		}
		if c.fs != nil {
			c.fs.forget(id)
		}
		return state, false, nil
	}
	meta.Runtime = *c.runtime.Load()
	meta.CgroupPath = cgroupPath(meta.Runtime, *c.cgroupDriver.Load(), res.Container, id)
	if c.noCgroups() {
		// The Engine keeps --memory, --cpus etc. in HostConfig but applies
		// none: there is no cgroup to apply them to (a container given
		// -m 64m held 200 MiB). Unlimited is the truth.
		spec = pipeline.ContainerSpec{}
	} else if c.cgroups != nil {
		// Resolved once per run (a restart has a new pid), not per sample.
		meta.CgroupPath = c.cgroups.idLabel(id, state.Pid, meta.CgroupPath)
	}
	c.store.Upsert(meta, state, spec)
	// The data root is known once connected (and never, from a daemon that
	// does not say where it keeps containers: nothing to measure then).
	if r := c.dataRoot.Load(); c.fs != nil && r != nil && *r != "" {
		c.fs.observe(id, res.Container.GraphDriver, *r, c.cfg.Stats.Filesystem.DockerRoot)
	}
	if c.logs != nil {
		c.logs.observe(meta, state, labels, event)
	}
	return state, true, nil
}

// forget drops a container that no longer exists: its series and, once
// its last lines are read, its log position.
func (c *Collector) forget(id string) {
	c.store.Remove(id)
	if c.cgroups != nil {
		c.cgroups.forget(id)
	}
	if c.fs != nil {
		c.fs.forget(id)
	}
	if c.logs != nil {
		c.logs.destroyed(id)
	}
}

// reconcile lists every container and brings the store in line with it:
// new ones are inspected, changed ones re-inspected, vanished ones removed.
// Unchanged containers cost nothing beyond the list, unless full is set.
func (c *Collector) reconcile(ctx context.Context, full bool) error {
	c.tel.Resyncs.Add(1)
	// Only what the store held before the list can have vanished from it:
	// the event workers may add a container created since.
	known := c.store.IDs()
	lctx, cancel := context.WithTimeout(ctx, c.cfg.Docker.Timeout)
	res, err := c.docker.ContainerList(lctx, client.ContainerListOptions{All: true})
	cancel()
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	if full && c.logs != nil {
		exists := make(map[string]bool, len(res.Items))
		for _, s := range res.Items {
			exists[s.ID] = true
		}
		c.logs.opts.Checkpoints.Prune(func(id string) bool { return exists[id] })
	}
	seen := make(map[string]bool, len(res.Items))
	for _, s := range res.Items {
		name := ""
		if len(s.Names) > 0 {
			name = s.Names[0][min(1, len(s.Names[0])):]
		}
		if !c.sel.Selected(name, s.Image, s.Labels) {
			continue
		}
		seen[s.ID] = true
		// Health only shows in a running container's status text.
		if old, ok := c.store.Get(s.ID); ok && !full && old.State.Status == string(s.State) &&
			(s.State != "running" || old.State.Health == healthFromStatus(s.Status) && !c.logs.unfollowed(s.ID)) {
			c.store.Touch(s.ID)
			continue
		}
		if _, _, err := c.inspect(ctx, s.ID, ""); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// One container failing to inspect must not stop discovery of
			// the others; the next resync tries again.
			c.log.Debug("inspect failed during resync", "container", shortID(s.ID), "err", err)
		}
	}
	for _, id := range known {
		if !seen[id] {
			c.forget(id)
		}
	}
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// socketHint explains a unix socket the agent may not open: who owns it and
// who the agent runs as, the usual fix being the socket's group. It is empty
// for other hosts, a missing socket, or one the agent may open.
func socketHint(host string) string {
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || syscall.Access(path, 2 /* W_OK */) == nil {
		return ""
	}
	groups, _ := os.Getgroups()
	return fmt.Sprintf(" (the socket is owned by uid %d gid %d with mode %#o; the agent runs as uid %d gid %d, groups %v: run it in group %d or as root)",
		st.Uid, st.Gid, fi.Mode().Perm(), os.Geteuid(), os.Getegid(), groups, st.Gid)
}
