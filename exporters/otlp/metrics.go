package otlp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/containerconv"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// exportConcurrency bounds the export requests in flight: each container is
// one request, because the exporter takes one Resource per call.
const exportConcurrency = 4

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
}

// MetricsExporter pushes every container's latest snapshot on an interval.
type MetricsExporter struct {
	opts     MetricsOptions
	client   sdkmetric.Exporter
	protocol string
	scope    instrumentation.Scope
}

// NewMetricsExporter creates the exporter; it does not connect yet.
func NewMetricsExporter(ctx context.Context, opts MetricsOptions) (*MetricsExporter, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	client, proto, err := newMetricClient(ctx, opts.Config, opts.Getenv)
	if err != nil {
		return nil, err
	}
	return &MetricsExporter{
		opts:     opts,
		client:   client,
		protocol: proto,
		scope:    instrumentation.Scope{Name: "github.com/dockscope/dockscope", Version: opts.Version, SchemaURL: semconv.SchemaURL},
	}, nil
}

// Protocol is the transport in use.
func (e *MetricsExporter) Protocol() string { return e.protocol }

// Run exports every interval until ctx is cancelled, then flushes one last
// round (bounded by the configured timeout) and shuts the client down.
func (e *MetricsExporter) Run(ctx context.Context) error {
	tick := time.NewTicker(e.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), e.opts.Config.Timeout)
			e.exportRound(final)
			err := e.client.Shutdown(final)
			cancel()
			if err != nil {
				return fmt.Errorf("shutting down OTLP metric exporter: %w", err)
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

// exportRound sends one request per container.
func (e *MetricsExporter) exportRound(ctx context.Context) {
	counters := e.opts.Telemetry.Stage(pipeline.StageOTLPMetrics)
	now := time.Now()
	sem := make(chan struct{}, exportConcurrency)
	var wg sync.WaitGroup
	var failedOnce sync.Once
	for _, snap := range e.opts.Store.Snapshot() {
		rm := e.resourceMetrics(&snap, now)
		counters.In.Add(1)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			counters.Dropped.Add(1)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := e.client.Export(ctx, rm); err != nil {
				counters.Dropped.Add(1)
				e.opts.Telemetry.ExportFailures.Add(1)
				// Once per round, not once per container.
				failedOnce.Do(func() {
					e.opts.Logger.Warn("OTLP metric export failed", "protocol", e.protocol, "err", err)
				})
				return
			}
			counters.Out.Add(1)
		})
	}
	wg.Wait()
}

// containerResource builds the per-container Resource of the semantic
// conventions; logs use the same one.
func containerResource(m *pipeline.ContainerMeta) *resource.Resource {
	attrs := []attribute.KeyValue{
		semconv.ContainerID(m.ID),
		semconv.ContainerName(m.Name),
		semconv.ContainerImageName(m.ImageName),
		semconv.ContainerRuntimeNameKey.String("docker"),
		semconv.HostName(m.Hostname),
	}
	if m.ImageTag != "" {
		attrs = append(attrs, semconv.ContainerImageTags(m.ImageTag))
	}
	if m.ImageID != "" {
		attrs = append(attrs, semconv.ContainerImageID(m.ImageID))
	}
	optional := []struct {
		key, value string
	}{
		{"docker.compose.project", m.ComposeProject},
		{"docker.compose.service", m.ComposeService},
		{"docker.swarm.stack.namespace", m.SwarmStack},
		{"docker.swarm.service.name", m.SwarmService},
		{"docker.swarm.task.name", m.SwarmTask},
		{"docker.swarm.node.id", m.SwarmNodeID},
		{string(semconv.K8SPodNameKey), m.K8sPod},
		{string(semconv.K8SNamespaceNameKey), m.K8sNamespace},
		{string(semconv.K8SContainerNameKey), m.K8sContainer},
	}
	for _, o := range optional {
		if o.value != "" {
			attrs = append(attrs, attribute.String(o.key, o.value))
		}
	}
	for k, v := range m.Labels {
		attrs = append(attrs, semconv.ContainerLabel(k, v))
	}
	return resource.NewWithAttributes(semconv.SchemaURL, attrs...)
}

// resourceMetrics turns one snapshot into the semantic-convention metrics.
func (e *MetricsExporter) resourceMetrics(s *pipeline.Snapshot, now time.Time) *metricdata.ResourceMetrics {
	b := metricBuilder{now: now, start: s.State.StartedAt}
	st, spec := &s.State, &s.Spec

	running := st.Status == "running"
	if running && !st.StartedAt.IsZero() {
		b.gauge(containerconv.Uptime{}.Name(), containerconv.Uptime{}.Description(), "s", now.Sub(st.StartedAt).Seconds())
	}
	b.sum("container.restarts", "Times the Engine restarted the container.", "{restart}", true, float64(st.RestartCount))
	if !st.FinishedAt.IsZero() {
		b.gauge("container.last_exit_code", "Exit code of the container's last run.", "1", float64(st.ExitCode))
	}
	var stateDPs []metricdata.DataPoint[float64]
	for _, state := range []string{"created", "running", "paused", "restarting", "removing", "exited", "dead"} {
		stateDPs = append(stateDPs, b.point(boolf(st.Status == state), attribute.String("container.state", state)))
	}
	b.add(metricdata.Metrics{Name: "container.state", Description: "1 for the container's current state.", Unit: "1",
		Data: metricdata.Gauge[float64]{DataPoints: stateDPs}})
	health := st.Health
	if health == "" {
		health = "none"
	}
	var healthDPs []metricdata.DataPoint[float64]
	for _, h := range []string{"healthy", "unhealthy", "starting", "none"} {
		healthDPs = append(healthDPs, b.point(boolf(health == h), attribute.String("container.health.status", h)))
	}
	b.add(metricdata.Metrics{Name: "container.health.status", Description: "1 for the container's current health status.", Unit: "1",
		Data: metricdata.Gauge[float64]{DataPoints: healthDPs}})
	b.sum("container.memory.oom_kills", "Out-of-memory kills seen for the container.", "{kill}", true, float64(s.OOMKills))
	if spec.MemoryLimit > 0 {
		b.sum("container.memory.limit", "Memory limit of the container.", "By", false, float64(spec.MemoryLimit))
	}

	if x := s.Stats; x != nil {
		cpuTime := containerconv.CPUTime{}
		b.add(metricdata.Metrics{Name: cpuTime.Name(), Description: cpuTime.Description(), Unit: cpuTime.Unit(),
			Data: metricdata.Sum[float64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[float64]{
				b.point(x.CPUUser.Seconds(), attribute.String("cpu.mode", "user")),
				b.point(x.CPUSystem.Seconds(), attribute.String("cpu.mode", "system")),
			}}})
		if x.HasCPUUsage {
			u := containerconv.CPUUsage{}
			// Cores, never a percentage in unit "1" (a docker_stats bug).
			b.gauge(u.Name(), u.Description(), u.Unit(), x.CPUUsageCores)
		}
		if x.CPUPeriods > 0 {
			b.sum("container.cpu.throttled_time", "Time the container was throttled by its CPU quota.", "s", true, x.CPUThrottledTime.Seconds())
			b.sum("container.cpu.throttled_periods", "CFS periods in which the container was throttled.", "{period}", true, float64(x.CPUThrottledPeriods))
		}
		// The conventions list container.memory.usage as a Counter, but
		// memory usage goes down as well as up: a monotonic sum would read
		// as a counter reset to every backend. It is exported as a
		// non-monotonic sum, like the other memory metrics.
		b.sum(containerconv.MemoryUsage{}.Name(), containerconv.MemoryUsage{}.Description(), "By", false, float64(x.MemoryUsage))
		b.sum(containerconv.MemoryWorkingSet{}.Name(), containerconv.MemoryWorkingSet{}.Description(), "By", false, float64(x.MemoryWorkingSet))
		b.sum(containerconv.MemoryRss{}.Name(), containerconv.MemoryRss{}.Description(), "By", false, float64(x.MemoryRSS))
		if spec.MemoryLimit > 0 {
			avail := max(float64(spec.MemoryLimit)-float64(x.MemoryWorkingSet), 0)
			b.sum(containerconv.MemoryAvailable{}.Name(), containerconv.MemoryAvailable{}.Description(), "By", false, avail)
		}
		b.sum("container.pids", "Processes (pids) in the container.", "{process}", false, float64(x.Pids))

		var netDPs []metricdata.DataPoint[float64]
		for _, n := range x.Networks {
			iface := attribute.String("network.interface.name", n.Interface)
			netDPs = append(netDPs,
				b.point(float64(n.RxBytes), iface, attribute.String("network.io.direction", "receive")),
				b.point(float64(n.TxBytes), iface, attribute.String("network.io.direction", "transmit")))
		}
		if len(netDPs) > 0 {
			nio := containerconv.NetworkIO{}
			b.add(metricdata.Metrics{Name: nio.Name(), Description: nio.Description(), Unit: nio.Unit(),
				Data: metricdata.Sum[float64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: netDPs}})
		}
		var diskDPs []metricdata.DataPoint[float64]
		for _, d := range x.Disks {
			dev := attribute.String("system.device", d.Device)
			diskDPs = append(diskDPs,
				b.point(float64(d.ReadBytes), dev, attribute.String("disk.io.direction", "read")),
				b.point(float64(d.WriteBytes), dev, attribute.String("disk.io.direction", "write")))
		}
		if len(diskDPs) > 0 {
			dio := containerconv.DiskIO{}
			b.add(metricdata.Metrics{Name: dio.Name(), Description: dio.Description(), Unit: dio.Unit(),
				Data: metricdata.Sum[float64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: diskDPs}})
		}
	}

	return &metricdata.ResourceMetrics{
		Resource:     containerResource(&s.Meta),
		ScopeMetrics: []metricdata.ScopeMetrics{{Scope: e.scope, Metrics: b.metrics}},
	}
}

// metricBuilder accumulates one container's metrics. Cumulative sums start
// at the container's start time: that is when its counters were zero.
type metricBuilder struct {
	now, start time.Time
	metrics    []metricdata.Metrics
}

func (b *metricBuilder) add(m metricdata.Metrics) { b.metrics = append(b.metrics, m) }

func (b *metricBuilder) point(v float64, attrs ...attribute.KeyValue) metricdata.DataPoint[float64] {
	return metricdata.DataPoint[float64]{Attributes: attribute.NewSet(attrs...), StartTime: b.start, Time: b.now, Value: v}
}

func (b *metricBuilder) gauge(name, desc, unit string, v float64) {
	b.add(metricdata.Metrics{Name: name, Description: desc, Unit: unit,
		Data: metricdata.Gauge[float64]{DataPoints: []metricdata.DataPoint[float64]{b.point(v)}}})
}

func (b *metricBuilder) sum(name, desc, unit string, monotonic bool, v float64) {
	b.add(metricdata.Metrics{Name: name, Description: desc, Unit: unit,
		Data: metricdata.Sum[float64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: monotonic,
			DataPoints: []metricdata.DataPoint[float64]{b.point(v)}}})
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
