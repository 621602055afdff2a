package prometheus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockscope/dockscope/pipeline"
)

// BuildInfo identifies the agent binary.
type BuildInfo struct {
	Version, Revision, GoVersion string
}

// SelfCollector publishes the agent's own telemetry under dockscope_.
type SelfCollector struct {
	tel   *pipeline.Telemetry
	store *pipeline.Store
	build BuildInfo

	buildInfo, dockerInfo, dockerUp, containers          *prometheus.Desc
	recordsIn, recordsOut, recordsDropped                *prometheus.Desc
	reconnects, resyncs, inspectErrors, statsRound       *prometheus.Desc
	exportFailures, reloadOK, reloadTime                 *prometheus.Desc
	logReconnects, logGaps, logMismatches                *prometheus.Desc
	logReopens                                           *prometheus.Desc
	logsUnreadable, logQueueBytes, statsSamples          *prometheus.Desc
	checkpointSaves, checkpointBytes, checkpointFailures *prometheus.Desc
}

// NewSelfCollector returns a collector of the agent's self-metrics.
func NewSelfCollector(tel *pipeline.Telemetry, store *pipeline.Store, build BuildInfo) *SelfCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("dockscope_"+name, help, labels, nil)
	}
	return &SelfCollector{
		tel: tel, store: store, build: build,
		buildInfo:          d("build_info", "The agent's version; value 1.", "version", "revision", "goversion"),
		dockerInfo:         d("docker_info", "The Docker Engine the agent follows; value 1.", "version", "api_version", "os_type", "cgroup_version"),
		dockerUp:           d("docker_up", "1 when the Docker Engine answers and containers are listed, else 0."),
		containers:         d("containers", "Containers the agent currently follows."),
		recordsIn:          d("records_received_total", "Records that entered a pipeline stage.", "stage"),
		recordsOut:         d("records_sent_total", "Records that left a pipeline stage successfully.", "stage"),
		recordsDropped:     d("records_dropped_total", "Records a pipeline stage dropped (errors, full buffers).", "stage"),
		reconnects:         d("event_stream_reconnects_total", "Times the Docker event stream ended and was reopened."),
		resyncs:            d("resyncs_total", "Full container list resynchronisations."),
		inspectErrors:      d("inspect_errors_total", "Container inspect requests that failed."),
		statsRound:         d("stats_round_duration_seconds", "How long the last round of stats sampling took."),
		statsSamples:       d("stats_samples_total", "Container stats samples taken, by source: the Engine API, or the cgroup files (stats.source); with cgroup, api samples are fallbacks.", "source"),
		exportFailures:     d("export_failures_total", "Export attempts that failed, each retry counted; data is lost only where dockscope_records_dropped_total rises.", "exporter"),
		logReconnects:      d("log_stream_reconnects_total", "Container log streams reopened after an error."),
		logReopens:         d("log_stream_reopens_total", "Container log streams requested again after a container's first in this run, for any reason (an error, a stream that ended while the container ran, a new run): what following logs costs the Docker daemon."),
		logGaps:            d("log_gaps_total", "Log resumes that found the records after their checkpoint rotated away by Docker: lines were lost."),
		logMismatches:      d("log_resume_mismatches_total", "Log resumes that found other records than expected; lines may have been shipped twice."),
		logsUnreadable:     d("logs_unreadable_total", "Containers whose log driver the Engine API cannot read."),
		logQueueBytes:      d("log_queue_bytes", "Bytes of log records read but not yet exported."),
		checkpointSaves:    d("log_checkpoint_saves_total", "Saves of the log checkpoint state (one per acknowledged batch)."),
		checkpointBytes:    d("log_checkpoint_bytes_written_total", "Bytes written to the log checkpoint journal and snapshots."),
		checkpointFailures: d("log_checkpoint_save_failures_total", "Log checkpoint saves that failed; positions are kept in memory and saved again."),
		reloadOK:           d("config_last_reload_successful", "1 when the last configuration reload (SIGHUP) succeeded or none was tried."),
		reloadTime:         d("config_last_reload_timestamp_seconds", "When the configuration was last reloaded; 0 if never."),
	}
}

// Describe sends every descriptor.
func (c *SelfCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.dockerInfo, c.dockerUp, c.containers,
		c.recordsIn, c.recordsOut, c.recordsDropped, c.reconnects, c.resyncs, c.inspectErrors,
		c.statsRound, c.exportFailures, c.reloadOK, c.reloadTime,
		c.logReconnects, c.logReopens, c.logGaps, c.logMismatches, c.logsUnreadable, c.logQueueBytes, c.statsSamples,
		c.checkpointSaves, c.checkpointBytes, c.checkpointFailures} {
		ch <- d
	}
}

// Collect reads the telemetry atomics.
func (c *SelfCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.buildInfo, 1, c.build.Version, c.build.Revision, c.build.GoVersion)
	if d, ok := c.tel.Daemon(); ok {
		gauge(c.dockerInfo, 1, d.Version, d.APIVersion, d.OSType, d.CgroupVer)
	}
	gauge(c.dockerUp, b2f(c.tel.EngineUp()))
	gauge(c.containers, float64(c.store.Len()))
	// The OTLP paths' series are served only while the path runs: without
	// an endpoint they would sit at 0 and suggest that something is
	// exported. Their counters live on in the telemetry, so a reload that
	// turns a path back on resumes them rather than resetting them.
	otlpMetrics, otlpLogs := c.tel.OTLP()
	for _, s := range pipeline.Stages {
		if s == pipeline.StageOTLPMetrics && !otlpMetrics || s == pipeline.StageLogs && !otlpLogs {
			continue
		}
		sc := c.tel.Stage(s)
		counter(c.recordsIn, sc.In.Load(), string(s))
		counter(c.recordsOut, sc.Out.Load(), string(s))
		counter(c.recordsDropped, sc.Dropped.Load(), string(s))
	}
	counter(c.reconnects, c.tel.EventStreamReconnects.Load())
	counter(c.resyncs, c.tel.Resyncs.Load())
	counter(c.inspectErrors, c.tel.InspectErrors.Load())
	gauge(c.statsRound, c.tel.StatsRound().Seconds())
	counter(c.statsSamples, c.tel.StatsFromAPI.Load(), "api")
	counter(c.statsSamples, c.tel.StatsFromCgroup.Load(), "cgroup")
	if otlpMetrics || otlpLogs {
		counter(c.exportFailures, c.tel.ExportFailures.Load(), "otlp")
	}
	if otlpLogs {
		counter(c.logReconnects, c.tel.LogReconnects.Load())
		counter(c.logReopens, c.tel.LogStreamReopens.Load())
		counter(c.logGaps, c.tel.LogGaps.Load())
		counter(c.logMismatches, c.tel.LogResumeMismatches.Load())
		counter(c.logsUnreadable, c.tel.LogsUnreadable.Load())
		gauge(c.logQueueBytes, float64(c.tel.LogQueueBytes()))
		counter(c.checkpointSaves, c.tel.CheckpointSaves.Load())
		counter(c.checkpointBytes, c.tel.CheckpointBytesWritten.Load())
		counter(c.checkpointFailures, c.tel.CheckpointSaveFailures.Load())
	}
	ok, at := c.tel.ConfigReload()
	gauge(c.reloadOK, b2f(ok))
	reloaded := 0.0
	if !at.IsZero() {
		reloaded = float64(at.Unix())
	}
	gauge(c.reloadTime, reloaded)
}
