package otlp

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/semconv/v1.43.0/containerconv"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// Metrics are encoded here as OTLP protobufs, like logs, rather than
// through the otel-go SDK exporter: that exporter takes one Resource per
// call, so every container was a request of its own — 1,000 containers,
// 1,000 requests a round, four at a time, and a round cut at its interval
// always dropped the same (alphabetically last) containers. Here a round is
// one request holding every container's ResourceMetrics, split only by
// encoded size; at 1,000 containers that is one request of ~3 MB
// (TestMetricsRoundOf1000ContainersFigures prints the figures). They are
// written straight to the wire format (metricencode.go), as log records
// are: BenchmarkMetricsRoundEncode1000.

// MetricsOptions configure the OTLP metrics exporter.
type MetricsOptions struct {
	Config    config.OTLPConfig
	Interval  time.Duration
	Store     *pipeline.Store
	Telemetry *pipeline.Telemetry
	Logger    *slog.Logger
	Version   string
	// Getenv reads OTEL_* variables; os.Getenv when nil.
	Getenv func(string) string
	// MaxRequestBytes bounds one request's encoded size; 0 means 4 MiB,
	// gRPC's default receive limit (the OTel Collector's).
	MaxRequestBytes int
}

// MetricsExporter pushes every container's latest snapshot on an interval.
type MetricsExporter struct {
	opts     MetricsOptions
	client   metricsClient
	deliver  *deliverer
	protocol string
	scope    []byte // InstrumentationScope message
	enc      metricEncoder
	cm       containerMetrics // one container's metrics, reused
	// maxRequest bounds one request: MaxRequestBytes, lowered when the
	// backend refuses a request for its size.
	maxRequest int
	// resume is the first container a round could not send: the next
	// round starts there, so that a round cut short never leaves out the
	// same containers twice in a row.
	resume     containerKey
	failedLogs *throttle
}

// metricsClient owns the connection to the metrics backend.
type metricsClient struct{ sender }

// Shutdown closes the client's connections. It never waits for the
// backend, so it cannot fail on a backend that is down.
func (c metricsClient) Shutdown(context.Context) error { return c.close() }

// NewMetricsExporter creates the exporter; it does not connect yet.
func NewMetricsExporter(_ context.Context, opts MetricsOptions) (*MetricsExporter, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = defaultMaxRequestBytes
	}
	t, err := resolveTarget(opts.Config, opts.Getenv, signalMetrics)
	if err != nil {
		return nil, err
	}
	s, err := newSender(t)
	if err != nil {
		return nil, err
	}
	return &MetricsExporter{
		opts:       opts,
		client:     metricsClient{s},
		deliver:    newDeliverer(s, opts.Config.Retry, opts.Config.Retry.MaxElapsedTime, opts.Telemetry, opts.Logger, "metric"),
		protocol:   t.protocol,
		scope:      marshalScope(opts.Version),
		maxRequest: opts.MaxRequestBytes,
		failedLogs: newThrottle(logInterval),
	}, nil
}

// Protocol is the transport in use.
func (e *MetricsExporter) Protocol() string { return e.protocol }

// Target describes where metrics go, without the endpoint's userinfo.
func (e *MetricsExporter) Target() string { return e.client.describe() }

// Run exports every interval until ctx is cancelled, then flushes one last
// round and closes the connection. The last round has a context of its
// own, bounded by the configured timeout — ctx is over by then — and
// neither it nor the close can fail Run: a reload or a stop while the
// backend is down is not an error of the agent.
func (e *MetricsExporter) Run(ctx context.Context) error {
	tick := time.NewTicker(e.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), e.opts.Config.Timeout)
			e.exportRound(final)
			cancel()
			if err := e.client.Shutdown(context.Background()); err != nil {
				e.opts.Logger.Warn("closing the OTLP metrics connection", "err", err)
			}
			return nil
		case <-tick.C:
			// A round may not outlast its interval: a down backend must not
			// pile up rounds behind it.
			rctx, cancel := context.WithTimeout(ctx, e.opts.Interval)
			e.exportRound(rctx)
			cancel()
		}
	}
}

// containerKey orders containers as Store.Snapshot does.
type containerKey struct{ name, id string }

func (k containerKey) compare(o containerKey) int {
	if c := strings.Compare(k.name, o.name); c != 0 {
		return c
	}
	return strings.Compare(k.id, o.id)
}

// exportRound sends every container's metrics in as few requests as their
// encoded size allows, starting where the previous round stopped.
func (e *MetricsExporter) exportRound(ctx context.Context) {
	counters := e.opts.Telemetry.Stage(pipeline.StageOTLPMetrics)
	snaps := e.opts.Store.Snapshot()
	if len(snaps) == 0 {
		return
	}
	first := 0
	if e.resume != (containerKey{}) {
		for i := range snaps {
			if (containerKey{snaps[i].Meta.Name, snaps[i].Meta.ID}).compare(e.resume) >= 0 {
				first = i
				break
			}
		}
	}
	order := make([]*pipeline.Snapshot, 0, len(snaps))
	for i := range snaps {
		order = append(order, &snaps[(first+i)%len(snaps)])
	}
	now := time.Now()
	e.enc.reset()
	for _, s := range order {
		buildMetrics(&e.cm, s, now)
		e.enc.add(&s.Meta, e.scope, &e.cm)
	}
	counters.In.Add(uint64(len(order)))
	defer e.enc.release()
	e.resume = containerKey{}
	for sent := 0; sent < len(order); {
		req, n := e.enc.request(sent, e.maxRequest)
		res, ps, err := e.deliver.deliver(ctx, req)
		switch res {
		case delivered:
			counters.Out.Add(uint64(n))
			if ps.rejected > 0 {
				e.failedLogs.do(func(suppressed int) {
					e.opts.Logger.Warn("OTLP backend rejected metric data points (partial success)", "rejected", ps.rejected,
						"message", ps.message, "earlier_failures_not_logged", suppressed)
				})
			}
			sent += n
		case tooLarge:
			if n > 1 {
				e.maxRequest = len(req) / 2
				continue
			}
			fallthrough
		case refused:
			counters.Dropped.Add(uint64(n))
			e.failedLogs.do(func(suppressed int) {
				e.opts.Logger.Warn("OTLP metric export refused; those containers' metrics are dropped this round",
					"containers", n, "request_bytes", len(req), "err", err, "earlier_failures_not_logged", suppressed)
			})
			sent += n
		case interrupted:
			counters.Dropped.Add(uint64(len(order) - sent))
			next := order[sent].Meta
			e.resume = containerKey{next.Name, next.ID}
			e.failedLogs.do(func(suppressed int) {
				e.opts.Logger.Warn("OTLP metric export round cut short; the next round starts with the containers left out",
					"target", e.client.describe(), "sent", sent, "left_out", len(order)-sent, "err", err, "earlier_failures_not_logged", suppressed)
			})
			return
		}
	}
}

// buildMetrics fills cm with one snapshot's semantic-convention metrics.
func buildMetrics(cm *containerMetrics, s *pipeline.Snapshot, now time.Time) {
	cm.reset(unixNano(s.State.StartedAt), unixNano(now))
	st, spec := &s.State, &s.Spec

	running := st.Status == "running"
	if running && !st.StartedAt.IsZero() {
		cm.gauge(containerconv.Uptime{}.Name(), containerconv.Uptime{}.Description(), "s", now.Sub(st.StartedAt).Seconds())
	}
	cm.sum("container.restarts", "Times the Engine restarted the container.", "{restart}", true, float64(st.RestartCount))
	if !st.FinishedAt.IsZero() {
		cm.gauge("container.last_exit_code", "Exit code of the container's last run.", "1", float64(st.ExitCode))
	}
	cm.metric("container.state", "1 for the container's current state.", "1", kindGauge)
	for _, state := range []string{"created", "running", "paused", "restarting", "removing", "exited", "dead"} {
		cm.point(boolf(st.Status == state), attrKV{"container.state", state})
	}
	health := st.Health
	if health == "" {
		health = "none"
	}
	cm.metric("container.health.status", "1 for the container's current health status.", "1", kindGauge)
	for _, h := range []string{"healthy", "unhealthy", "starting", "none"} {
		cm.point(boolf(health == h), attrKV{"container.health.status", h})
	}
	cm.sum("container.memory.oom_kills", "Out-of-memory kills seen for the container.", "{kill}", true, float64(s.OOMKills))
	if spec.MemoryLimit > 0 {
		cm.sum("container.memory.limit", "Memory limit of the container.", "By", false, float64(spec.MemoryLimit))
	}
	buildParityMetrics(cm, s)

	if x := s.Stats; x != nil {
		// No cgroup of its own (NetworkOnly): only the network counters are its.
		if !x.NetworkOnly {
			cpuTime := containerconv.CPUTime{}
			cm.metric(cpuTime.Name(), cpuTime.Description(), cpuTime.Unit(), kindMonotonicSum)
			cm.point(x.CPUUser.Seconds(), attrKV{"cpu.mode", "user"})
			cm.point(x.CPUSystem.Seconds(), attrKV{"cpu.mode", "system"})
			if x.HasCPUUsage {
				u := containerconv.CPUUsage{}
				// Cores, never a percentage in unit "1" (a docker_stats bug).
				cm.gauge(u.Name(), u.Description(), u.Unit(), x.CPUUsageCores)
			}
			if x.CPUPeriods > 0 {
				cm.sum("container.cpu.throttled_time", "Time the container was throttled by its CPU quota.", "s", true, x.CPUThrottledTime.Seconds())
				cm.sum("container.cpu.throttled_periods", "CFS periods in which the container was throttled.", "{period}", true, float64(x.CPUThrottledPeriods))
			}
			// The conventions list container.memory.usage as a Counter, but
			// memory usage goes down as well as up: a monotonic sum would read
			// as a counter reset to every backend. It is exported as a
			// non-monotonic sum, like the other memory metrics.
			cm.sum(containerconv.MemoryUsage{}.Name(), containerconv.MemoryUsage{}.Description(), "By", false, float64(x.MemoryUsage))
			cm.sum(containerconv.MemoryWorkingSet{}.Name(), containerconv.MemoryWorkingSet{}.Description(), "By", false, float64(x.MemoryWorkingSet))
			cm.sum(containerconv.MemoryRss{}.Name(), containerconv.MemoryRss{}.Description(), "By", false, float64(x.MemoryRSS))
			if spec.MemoryLimit > 0 {
				avail := max(float64(spec.MemoryLimit)-float64(x.MemoryWorkingSet), 0)
				cm.sum(containerconv.MemoryAvailable{}.Name(), containerconv.MemoryAvailable{}.Description(), "By", false, avail)
			}
			cm.sum("container.pids", "Processes (pids) in the container.", "{process}", false, float64(x.Pids))
		}

		if len(x.Networks) > 0 {
			nio := containerconv.NetworkIO{}
			cm.metric(nio.Name(), nio.Description(), nio.Unit(), kindMonotonicSum)
			for _, n := range x.Networks {
				cm.point(float64(n.RxBytes), attrKV{"network.interface.name", n.Interface}, attrKV{"network.io.direction", "receive"})
				cm.point(float64(n.TxBytes), attrKV{"network.interface.name", n.Interface}, attrKV{"network.io.direction", "transmit"})
			}
		}
		if len(x.Disks) > 0 {
			dio := containerconv.DiskIO{}
			cm.metric(dio.Name(), dio.Description(), dio.Unit(), kindMonotonicSum)
			for _, d := range x.Disks {
				cm.point(float64(d.ReadBytes), attrKV{"disk.io.direction", "read"}, attrKV{"system.device", d.Device})
				cm.point(float64(d.WriteBytes), attrKV{"disk.io.direction", "write"}, attrKV{"system.device", d.Device})
			}
		}
	}
	filesystemMetrics(cm, s)
}

// unixNano is 0 for the zero time, as OTLP wants for an unknown start.
func unixNano(t time.Time) uint64 {
	if t.IsZero() || t.UnixNano() < 0 {
		return 0
	}
	return uint64(t.UnixNano())
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Close releases the connection of an exporter that will not Run (a
// reload given up before it started); Run closes it itself.
func (e *MetricsExporter) Close() error { return e.client.close() }
