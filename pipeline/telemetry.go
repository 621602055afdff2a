package pipeline

import (
	"sync/atomic"
	"time"
)

// Stage names the steps records pass through; self-metrics are kept per stage.
type Stage string

// The stages of the metrics path.
const (
	StageEvents      Stage = "events"       // Engine events read from the stream
	StageStats       Stage = "stats"        // stats samples taken from the Engine
	StageOTLPMetrics Stage = "otlp_metrics" // container snapshots exported over OTLP
	StageLogs        Stage = "logs"         // log records: queued, exported, dropped
)

// Stages lists every stage, in the order self-metrics report them.
var Stages = []Stage{StageEvents, StageStats, StageOTLPMetrics, StageLogs}

// StageCounters count what entered a stage, what left it successfully and
// what it dropped (errors, full buffers).
type StageCounters struct {
	In, Out, Dropped atomic.Uint64
}

// DaemonInfo describes the Engine the agent talks to.
type DaemonInfo struct {
	Version    string
	APIVersion string // negotiated
	OSType     string
	CgroupVer  string
	// The host, as the Engine's /info describes it (machine_* metrics,
	// cadvisor_version_info).
	NCPU            int
	MemTotal        int64
	KernelVersion   string
	OperatingSystem string
}

// Telemetry is the agent's own health: plain atomics written by the
// collector and exporters, read by whichever exporter publishes them, so that
// this package needs no metrics library.
type Telemetry struct {
	stages map[Stage]*StageCounters

	daemon   atomic.Pointer[DaemonInfo]
	engineUp atomic.Bool

	EventStreamReconnects atomic.Uint64
	Resyncs               atomic.Uint64
	InspectErrors         atomic.Uint64
	// StatsRoundSeconds is how long the last round of stats sampling took.
	statsRound atomic.Int64
	// Stats samples taken from each source (stats.source): the Engine API,
	// or the cgroup files. With cgroup, API samples are fallbacks.
	StatsFromAPI, StatsFromCgroup atomic.Uint64
	// ExportFailures counts failed OTLP export requests.
	ExportFailures atomic.Uint64

	// Log path health.
	LogReconnects atomic.Uint64 // log streams reopened after an error
	// LogStreamReopens counts logs requests for a container after its
	// first in this run, whatever the reason (an error, a stream ended
	// while the container ran, a restart): what following costs dockerd.
	LogStreamReopens    atomic.Uint64
	LogGaps             atomic.Uint64 // resumes that found their records rotated away
	LogResumeMismatches atomic.Uint64 // resumes that found other records than expected
	LogsUnreadable      atomic.Uint64 // containers whose log driver the API cannot read

	// Log checkpoint saves (after Checkpointer.ReportTo): saves done,
	// bytes they wrote (journal appends and snapshots), saves that failed.
	CheckpointSaves        atomic.Uint64
	CheckpointBytesWritten atomic.Uint64
	CheckpointSaveFailures atomic.Uint64

	logQueue atomic.Pointer[LogQueue]

	// What the running configuration exports over OTLP: the self-metrics
	// of a path that is off are not served.
	otlpMetrics, otlpLogs atomic.Bool

	reloadFailed atomic.Bool
	reloadTime   atomic.Int64 // unix seconds of the last reload attempt
}

// NewTelemetry returns zeroed telemetry with counters for every stage.
func NewTelemetry() *Telemetry {
	t := &Telemetry{stages: make(map[Stage]*StageCounters, len(Stages))}
	for _, s := range Stages {
		t.stages[s] = new(StageCounters)
	}
	return t
}

// Stage returns the counters of a stage; it panics on an unknown stage,
// which is a programming error.
func (t *Telemetry) Stage(s Stage) *StageCounters {
	c, ok := t.stages[s]
	if !ok {
		panic("pipeline: unknown stage " + string(s))
	}
	return c
}

// SetDaemon records the Engine's identity once it answers.
func (t *Telemetry) SetDaemon(d DaemonInfo) { t.daemon.Store(&d) }

// Daemon returns the Engine's identity, or false before it first answered.
func (t *Telemetry) Daemon() (DaemonInfo, bool) {
	d := t.daemon.Load()
	if d == nil {
		return DaemonInfo{}, false
	}
	return *d, true
}

// SetEngineUp records whether the Engine currently answers.
func (t *Telemetry) SetEngineUp(up bool) { t.engineUp.Store(up) }

// EngineUp reports whether the Engine answered the last request.
func (t *Telemetry) EngineUp() bool { return t.engineUp.Load() }

// SetStatsRound records the duration of the last stats round.
func (t *Telemetry) SetStatsRound(d time.Duration) { t.statsRound.Store(int64(d)) }

// StatsRound returns the duration of the last stats round.
func (t *Telemetry) StatsRound() time.Duration { return time.Duration(t.statsRound.Load()) }

// SetConfigReload records the outcome of a configuration reload (SIGHUP).
func (t *Telemetry) SetConfigReload(ok bool, at time.Time) {
	t.reloadFailed.Store(!ok)
	t.reloadTime.Store(at.Unix())
}

// ConfigReload reports whether the last reload succeeded (true before any)
// and when it was attempted (zero before any).
func (t *Telemetry) ConfigReload() (ok bool, at time.Time) {
	if sec := t.reloadTime.Load(); sec != 0 {
		at = time.Unix(sec, 0)
	}
	return !t.reloadFailed.Load(), at
}

// SetLogQueue publishes the log queue so its fill level can be reported.
func (t *Telemetry) SetLogQueue(q *LogQueue) { t.logQueue.Store(q) }

// LogQueueBytes is what the log queue holds now (0 when logs are off).
func (t *Telemetry) LogQueueBytes() int64 {
	if q := t.logQueue.Load(); q != nil {
		return q.Bytes()
	}
	return 0
}

// SetOTLP records whether the running configuration exports metrics and
// logs over OTLP.
func (t *Telemetry) SetOTLP(metrics, logs bool) {
	t.otlpMetrics.Store(metrics)
	t.otlpLogs.Store(logs)
}

// OTLP reports whether metrics and logs are exported over OTLP.
func (t *Telemetry) OTLP() (metrics, logs bool) {
	return t.otlpMetrics.Load(), t.otlpLogs.Load()
}
