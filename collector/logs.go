package collector

import (
	"context"
	"time"

	"github.com/dockscope/dockscope/collector/logtail"
	"github.com/dockscope/dockscope/pipeline"
)

// LogOptions turn on log collection.
type LogOptions struct {
	Queue        *pipeline.LogQueue
	Checkpoints  *pipeline.Checkpointer
	MaxLineBytes int
}

// logs wires the collector to the log tail (collector/logtail), which gets
// its dependencies explicitly.
type logs struct {
	opts LogOptions
	tail *logtail.Manager
	sel  *Selector
}

func newLogs(c *Collector, opts LogOptions) *logs {
	return &logs{opts: opts, sel: c.sel, tail: logtail.New(logtail.Options{
		Docker:       c.docker,
		Queue:        opts.Queue,
		Checkpoints:  opts.Checkpoints,
		Telemetry:    c.tel,
		Counters:     c.store.LogCounters,
		Logger:       c.log,
		Socket:       logtail.SocketPath(c.host),
		MaxLineBytes: opts.MaxLineBytes,
		Timeout:      c.cfg.Docker.Timeout,
		MaxBackoff:   c.cfg.Docker.MaxBackoff,
	})}
}

func (l *logs) run(ctx context.Context) { l.tail.Run(ctx) }

// connected passes the daemon's identity and clock on (see connect).
func (l *logs) connected(version, apiVersion, runtime string, daemonNow time.Time) {
	l.tail.Connected(logtail.Daemon{Version: version, APIVersion: apiVersion, Podman: runtime == runtimePodman, Now: daemonNow})
}

// observe is called with every inspect of a followed container.
func (l *logs) observe(meta pipeline.ContainerMeta, state pipeline.ContainerState, labels map[string]string, event string) {
	if !l.sel.LogsSelected(labels) {
		return
	}
	l.tail.Observe(logtail.Container{
		Meta:       meta,
		Tty:        state.Tty,
		LogDriver:  state.LogDriver,
		Running:    state.Status == "running" || state.Status == "paused",
		Restarting: state.Status == "restarting",
		StartedAt:  state.StartedAt,
		FinishedAt: state.FinishedAt,
	}, event == "start" || event == "restart")
}

func (l *logs) destroyed(id string) { l.tail.Destroyed(id) }

// unfollowed reports whether a running container's logs were followed and
// no tailer follows them now: its tailer ended (it took the run for
// stopped) and the events of its next run were lost. A resync inspects it,
// which follows the run again.
func (l *logs) unfollowed(id string) bool {
	return l != nil && l.tail.Unfollowed(id)
}
