// Package prometheus serves the agent's data as a Prometheus scrape endpoint
// with cAdvisor-compatible container metrics and dockscope_ self-metrics.
package prometheus

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockscope/dockscope/pipeline"
)

// containerStates are the values container_state reports one series each
// for, so that `container_state{state="running"} == 0` is alertable.
var containerStates = []string{"created", "running", "paused", "restarting", "removing", "exited", "dead"}

// healthStatuses are the values of container_health_status.
var healthStatuses = []string{"healthy", "unhealthy", "starting", "none"}

// family is one metric family of the container collector.
type family struct {
	name, help string
	typ        prometheus.ValueType
	extra      []string // labels beyond the per-container ones
	// idx is the family's place in allFamilies and in an emitter's
	// buffers: a slice index per series instead of a map lookup by name,
	// which took 8 % of a scrape.
	idx int
}

// allFamilies are every family declared, in declaration order.
var allFamilies []*family

// newFamily declares a family; only package-level variables call it.
func newFamily(name, help string, typ prometheus.ValueType, extra []string) *family {
	f := &family{name: name, help: help, typ: typ, extra: extra, idx: len(allFamilies)}
	allFamilies = append(allFamilies, f)
	return f
}

// familiesByName is allFamilies sorted by name, the order of a scrape.
var familiesByName = sync.OnceValue(func() []*family {
	return slices.SortedFunc(slices.Values(allFamilies), func(a, b *family) int { return strings.Compare(a.name, b.name) })
})

var (
	famInfo = newFamily("container_info", "Container identity; value 1. Join on id to add these labels to other series.", prometheus.GaugeValue,
		[]string{"image_id", "image_tag", "host", "compose_project", "compose_service", "swarm_stack", "swarm_service", "swarm_task", "swarm_node_id", "k8s_pod", "k8s_namespace", "k8s_container"})
	famState         = newFamily("container_state", "Container state; 1 for the current state, 0 for the others.", prometheus.GaugeValue, []string{"state"})
	famRestarts      = newFamily("container_restarts_total", "Times the Engine restarted the container (restart policy).", prometheus.CounterValue, nil)
	famExitCode      = newFamily("container_last_exit_code", "Exit code of the container's last run.", prometheus.GaugeValue, nil)
	famStartTime     = newFamily("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", prometheus.GaugeValue, nil)
	famLastSeen      = newFamily("container_last_seen", "Last time the container was seen by the agent, in seconds since unix epoch.", prometheus.GaugeValue, nil)
	famHealthState   = newFamily("container_health_state", "Health: 1 healthy, 0 starting or unhealthy, -1 no health check.", prometheus.GaugeValue, nil)
	famHealthStatus  = newFamily("container_health_status", "Health status; 1 for the current status, 0 for the others.", prometheus.GaugeValue, []string{"status"})
	famMemLimit      = newFamily("container_spec_memory_limit_bytes", "Memory limit of the container; 0 means unlimited.", prometheus.GaugeValue, nil)
	famCPUQuota      = newFamily("container_spec_cpu_quota", "CPU quota of the container, in microseconds per period.", prometheus.GaugeValue, nil)
	famCPUPeriod     = newFamily("container_spec_cpu_period", "CPU period of the container, in microseconds.", prometheus.GaugeValue, nil)
	famCPUShares     = newFamily("container_spec_cpu_shares", "CPU shares of the container.", prometheus.GaugeValue, nil)
	famOOMEvents     = newFamily("container_oom_events_total", "Count of out of memory events observed for the container.", prometheus.CounterValue, nil)
	famSvcDesired    = newFamily("swarm_service_replicas_desired", "Tasks of the Swarm service that should be running (replicas, or eligible nodes of a global service).", prometheus.GaugeValue, []string{"service_id", "service_name", "stack", "mode"})
	famSvcRunning    = newFamily("swarm_service_replicas_running", "Tasks of the Swarm service that are running.", prometheus.GaugeValue, []string{"service_id", "service_name", "stack", "mode"})
	famOOMKills      = newFamily("container_memory_oom_kills_total", "Processes of the container killed by the kernel's OOM killer, seen since the agent started (oom events, and runs that ended OOM-killed).", prometheus.CounterValue, nil)
	famEvents        = newFamily("container_events_total", "Lifecycle events of the container seen since the agent started, by action.", prometheus.CounterValue, []string{"action"})
	famCPUUsage      = newFamily("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", prometheus.CounterValue, []string{"cpu"})
	famCPUUser       = newFamily("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", prometheus.CounterValue, nil)
	famCPUSystem     = newFamily("container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", prometheus.CounterValue, nil)
	famCFSPeriods    = newFamily("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", prometheus.CounterValue, nil)
	famCFSThrottled  = newFamily("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", prometheus.CounterValue, nil)
	famCFSThrottledS = newFamily("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", prometheus.CounterValue, nil)
	famMemUsage      = newFamily("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", prometheus.GaugeValue, nil)
	famMemWorkingSet = newFamily("container_memory_working_set_bytes", "Current working set in bytes.", prometheus.GaugeValue, nil)
	famMemRSS        = newFamily("container_memory_rss", "Size of RSS in bytes.", prometheus.GaugeValue, nil)
	famMemCache      = newFamily("container_memory_cache", "Number of bytes of page cache memory.", prometheus.GaugeValue, nil)
	famMemSwap       = newFamily("container_memory_swap", "Container swap usage in bytes.", prometheus.GaugeValue, nil)
	// cAdvisor types failcnt a counter, which promtool rejects for lacking
	// _total; the name is what queries depend on, so it keeps the name and
	// is typed gauge (rate() works on it all the same).
	famMemFailcnt   = newFamily("container_memory_failcnt", "Number of memory usage hits limits.", prometheus.GaugeValue, nil)
	famPids         = newFamily("container_pids", "Number of processes (pids) in the container.", prometheus.GaugeValue, nil)
	famNetRxBytes   = newFamily("container_network_receive_bytes_total", "Cumulative count of bytes received.", prometheus.CounterValue, []string{"interface"})
	famNetRxPackets = newFamily("container_network_receive_packets_total", "Cumulative count of packets received.", prometheus.CounterValue, []string{"interface"})
	famNetRxDropped = newFamily("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", prometheus.CounterValue, []string{"interface"})
	famNetRxErrors  = newFamily("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", prometheus.CounterValue, []string{"interface"})
	famNetTxBytes   = newFamily("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", prometheus.CounterValue, []string{"interface"})
	famNetTxPackets = newFamily("container_network_transmit_packets_total", "Cumulative count of packets transmitted.", prometheus.CounterValue, []string{"interface"})
	famNetTxDropped = newFamily("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", prometheus.CounterValue, []string{"interface"})
	famNetTxErrors  = newFamily("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", prometheus.CounterValue, []string{"interface"})
	famFsReadBytes  = newFamily("container_fs_reads_bytes_total", "Cumulative count of bytes read.", prometheus.CounterValue, []string{"device"})
	famFsWriteBytes = newFamily("container_fs_writes_bytes_total", "Cumulative count of bytes written.", prometheus.CounterValue, []string{"device"})
	famFsReads      = newFamily("container_fs_reads_total", "Cumulative count of reads completed.", prometheus.CounterValue, []string{"device"})
	famFsWrites     = newFamily("container_fs_writes_total", "Cumulative count of writes completed.", prometheus.CounterValue, []string{"device"})

	famLogLines  = newFamily("dockscope_container_log_lines_total", "Log lines of the container read from Docker, shipped (acknowledged by the backend) and dropped (logs.overflow: drop).", prometheus.CounterValue, []string{"outcome"})
	famLogBytes  = newFamily("dockscope_container_log_bytes_total", "Bytes of log line bodies read from Docker and shipped.", prometheus.CounterValue, []string{"outcome"})
	famLogLagSec = newFamily("dockscope_container_log_checkpoint_lag_seconds", "How far the delivered (checkpointed) position is behind the newest line read, in Docker timestamps.", prometheus.GaugeValue, nil)
)

// ContainerCollector renders the container metrics at scrape time from the
// store's latest snapshots, so a removed container's series are simply not
// emitted any more: nothing goes stale.
//
// It writes the text exposition format itself instead of going through
// client_golang's const metrics: at 200 containers (~7,600 series) the
// const-metric path allocated 150,000 objects and took ~60 ms per scrape,
// over the 50 ms budget; writing the lines directly costs a few
// milliseconds. The agent's own metrics still go through client_golang.
type ContainerCollector struct {
	store *pipeline.Store
	// emitters are reused across scrapes so the family buffers keep their
	// capacity instead of being regrown every time. A free list rather
	// than a sync.Pool, which empties at every GC: regrowing ~1 MB of
	// buffers per scrape raised the agent's peak RSS by several MiB.
	emitters chan *emitter
	now      func() time.Time
	machine  *MachineOptions // nil: no machine series (cadvisor.go)
}

// NewContainerCollector returns a collector reading store.
func NewContainerCollector(store *pipeline.Store) *ContainerCollector {
	return &ContainerCollector{store: store, emitters: make(chan *emitter, 2), now: time.Now}
}

// WriteText writes every container's series in the Prometheus text format
// (version 0.0.4), one block per family, families sorted by name.
func (c *ContainerCollector) WriteText(w io.Writer) error {
	// Counters read now carry the scrape's time, which Prometheus gives
	// them, so rate() over short windows is exact (see the collector's
	// statsSampler.refresh).
	c.store.Refresh(context.Background())
	snaps := c.store.Snapshot()
	cols := labelColumns(snaps)
	e := take(c.emitters)
	if e == nil {
		e = &emitter{families: make([]familyBuf, len(allFamilies))}
	}
	defer keep(c.emitters, e)
	for i := range e.families {
		e.families[i].lines = e.families[i].lines[:0]
	}
	e.now = c.now()
	e.cols = cols
	for i := range snaps {
		s := &snaps[i]
		e.base = e.base[:0]
		e.base = appendLabel(e.base, "id", s.Meta.CgroupPath)
		e.base = appendLabel(append(e.base, ','), "name", s.Meta.Name)
		e.base = appendLabel(append(e.base, ','), "image", s.Meta.Image)
		for _, l := range identityLabels {
			if v := l.value(&s.Meta); v != "" {
				e.base = appendLabel(append(e.base, ','), l.name, v)
			}
		}
		for j, k := range cols.keys {
			e.base = appendLabel(append(e.base, ','), cols.names[j], s.Meta.Labels[k])
		}
		e.container(s)
	}
	e.base = e.base[:0]
	for _, svc := range c.store.Services() {
		e.emit(famSvcDesired, float64(svc.Desired), svc.ID, svc.Name, svc.Stack, svc.Mode)
		e.emit(famSvcRunning, float64(svc.Running), svc.ID, svc.Name, svc.Stack, svc.Mode)
	}
	if c.machine != nil {
		e.machineSeries(c.machine)
	}
	for _, f := range familiesByName() {
		lines := e.families[f.idx].lines
		if len(lines) == 0 {
			continue // not emitted in this scrape
		}
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, typeName(f.typ)); err != nil {
			return err
		}
		if _, err := w.Write(lines); err != nil {
			return err
		}
	}
	return nil
}

func typeName(t prometheus.ValueType) string {
	if t == prometheus.CounterValue {
		return "counter"
	}
	return "gauge"
}

// appendLabel appends name="value" with the text format's escaping; invalid
// UTF-8 (possible in container labels) is replaced so the scrape parses.
func appendLabel(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, '=', '"')
	// Nearly every value is plain ASCII with nothing to escape: copied
	// whole, it skips the UTF-8 check and the byte-at-a-time loop below.
	for i := 0; i < len(value); i++ {
		if c := value[i]; c == '\\' || c == '"' || c == '\n' || c >= utf8.RuneSelf {
			return appendEscaped(b, value)
		}
	}
	b = append(b, value...)
	return append(b, '"')
}

// appendEscaped is appendLabel's value and closing quote for a value that
// needs escaping or is not ASCII.
func appendEscaped(b []byte, value string) []byte {
	if !utf8.ValidString(value) {
		value = strings.ToValidUTF8(value, "\uFFFD")
	}
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// identityLabels are the orchestrator identities put on every series of a
// container that has them, under the names cAdvisor uses, so that Swarm
// dashboards (which group by container_label_com_docker_swarm_service_name)
// and Kubernetes ones (namespace, pod, container) work unchanged. They hold
// one value per container id, so they add bytes, not series; a container
// without them gets no empty labels, which Prometheus treats the same.
var identityLabels = []struct {
	name  string
	value func(*pipeline.ContainerMeta) string
}{
	{"container_label_com_docker_stack_namespace", func(m *pipeline.ContainerMeta) string { return m.SwarmStack }},
	{"container_label_com_docker_swarm_node_id", func(m *pipeline.ContainerMeta) string { return m.SwarmNodeID }},
	{"container_label_com_docker_swarm_service_name", func(m *pipeline.ContainerMeta) string { return m.SwarmService }},
	{"container_label_com_docker_swarm_task_name", func(m *pipeline.ContainerMeta) string { return m.SwarmTask }},
	{"namespace", func(m *pipeline.ContainerMeta) string { return m.K8sNamespace }},
	{"pod", func(m *pipeline.ContainerMeta) string { return m.K8sPod }},
	{"container", func(m *pipeline.ContainerMeta) string { return m.K8sContainer }},
}

// columns maps the union of allow-listed label keys to their sanitized
// Prometheus names. Every container gets every column (empty when it lacks
// the label) because a metric family must have one label set.
type columns struct {
	keys, names []string
}

func labelColumns(snaps []pipeline.Snapshot) columns {
	byName := make(map[string]string)
	taken := make(map[string]bool, len(identityLabels))
	for _, l := range identityLabels {
		taken[l.name] = true
	}
	for i := range snaps {
		for k := range snaps[i].Meta.Labels {
			n := "container_label_" + sanitizeLabelName(k)
			if taken[n] {
				continue // an identity label, on every series already
			}
			// Two keys can sanitize to one name ("a.b", "a_b"): keep the
			// lexically first so the choice is stable across scrapes.
			if old, ok := byName[n]; !ok || k < old {
				byName[n] = k
			}
		}
	}
	var c columns
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		c.names = append(c.names, n)
		c.keys = append(c.keys, byName[n])
	}
	return c
}

// sanitizeLabelName replaces every character a Prometheus label name may
// not contain with "_", as cAdvisor does.
func sanitizeLabelName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// emitter accumulates the series of one scrape, grouped by family: the
// text format wants each family's series together, while the snapshots
// come container by container.
type emitter struct {
	families []familyBuf // by family.idx
	base     []byte      // the current container's labels, rendered
	now      time.Time   // when this scrape was rendered
	cols     columns     // this scrape's allow-listed label columns
}

type familyBuf struct {
	lines []byte
}

func (e *emitter) emit(f *family, v float64, extra ...string) {
	e.emitAt(f, v, -1, extra...)
}

// emitAt is emit with an explicit sample timestamp in unix milliseconds
// (none when ms < 0).
func (e *emitter) emitAt(f *family, v float64, ms int64, extra ...string) {
	fb := &e.families[f.idx]
	b := append(fb.lines, f.name...)
	if len(e.base) > 0 || len(extra) > 0 {
		b = append(b, '{')
		b = append(b, e.base...)
		for i, val := range extra {
			if i > 0 || len(e.base) > 0 {
				b = append(b, ',')
			}
			b = appendLabel(b, f.extra[i], val)
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	if ms >= 0 {
		b = append(b, ' ')
		b = strconv.AppendInt(b, ms, 10)
	}
	fb.lines = append(b, '\n')
}

// appendFloat formats a sample value as the text format expects.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	if v == math.Trunc(v) && v > -maxExactInt && v < maxExactInt && (v != 0 || !math.Signbit(v)) {
		return appendIntegral(b, v)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// maxExactInt is 2^53: every integer below it is a float64 exactly, and
// so is each of its neighbours one apart.
const maxExactInt = 1 << 53

// appendIntegral writes an integral v, |v| < 2^53, exactly as
// strconv.AppendFloat(b, v, 'g', -1, 64) does, without its general
// shortest-digits search: most samples are counts and byte sizes, and
// formatting them took a tenth of a scrape. Below 1e6 'g' writes the
// integer; from 1e6 on it writes the exponent form with the shortest
// digits that read back as v, which for an integer whose neighbours are
// at most 1 apart are its decimal digits without trailing zeros.
// TestAppendFloatMatchesStrconv and FuzzAppendFloat hold it to strconv.
func appendIntegral(b []byte, v float64) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	u := uint64(v)
	if u < 1e6 {
		return strconv.AppendUint(b, u, 10)
	}
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], u, 10)
	exp := len(d) - 1
	for d[len(d)-1] == '0' {
		d = d[:len(d)-1]
	}
	b = append(b, d[0])
	if len(d) > 1 {
		b = append(b, '.')
		b = append(b, d[1:]...)
	}
	b = append(b, 'e', '+')
	if exp < 10 {
		b = append(b, '0')
	}
	return strconv.AppendUint(b, uint64(exp), 10)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (e *emitter) container(s *pipeline.Snapshot) {
	m, st, spec := &s.Meta, &s.State, &s.Spec
	e.info(m)
	for _, state := range containerStates {
		e.emit(famState, b2f(st.Status == state), state)
	}
	e.emit(famRestarts, float64(st.RestartCount))
	if !st.FinishedAt.IsZero() {
		e.emit(famExitCode, float64(st.ExitCode))
	}
	if !st.StartedAt.IsZero() {
		e.emit(famStartTime, float64(st.StartedAt.UnixNano())/1e9)
	}
	// container_last_seen is what `time() - container_last_seen > 60`
	// (awesome-prometheus-alerts' ContainerKilled, dockprom's) reads to tell
	// that a container is gone. cAdvisor's series holds the time of its
	// latest observation and carries that time as its sample timestamp, and
	// the alert depends on both:
	//   - While the agent knows the container (running, paused or merely
	//     stopped: the store holds every container the Engine lists, kept
	//     current by the events stream, and a missed destroy is healed by
	//     the next resync), it is seen at every scrape, so the value is the
	//     scrape's time and the alert cannot fire. The store's LastSeen (the
	//     Engine's last word about it) is not used: a stopped container
	//     hears nothing between resyncs (60 s by default), and the alert
	//     would fire for it.
	//   - Once it is gone the series is no longer exposed. A series without
	//     a timestamp would get a staleness marker at the next scrape and
	//     the alert would never see it again; one with an explicit
	//     timestamp does not (Prometheus marks only series it stamped
	//     itself, unless track_timestamps_staleness is on), so its last
	//     value stays visible for the query lookback (5 m) and
	//     time() - container_last_seen climbs past 60 s: the alert fires
	//     from a minute after the container went until five minutes after.
	// Only this series is stamped: the others should go stale at once.
	e.emitAt(famLastSeen, float64(e.now.Unix()), e.now.UnixMilli())
	health := st.Health
	if health == "" {
		health = "none"
	}
	switch health {
	case "healthy":
		e.emit(famHealthState, 1)
	case "none":
		e.emit(famHealthState, -1)
	default:
		e.emit(famHealthState, 0)
	}
	for _, h := range healthStatuses {
		e.emit(famHealthStatus, b2f(health == h), h)
	}
	e.emit(famMemLimit, float64(spec.MemoryLimit))
	e.specDetail(s)
	e.emit(famCPUShares, float64(spec.CPUShares))
	if spec.CPUQuota > 0 {
		e.emit(famCPUQuota, float64(spec.CPUQuota))
		e.emit(famCPUPeriod, float64(spec.CPUPeriod))
	}
	e.emit(famOOMEvents, float64(s.Events["oom"]))
	e.emit(famOOMKills, float64(s.OOMKills))
	for _, action := range slices.Sorted(maps.Keys(s.Events)) {
		e.emit(famEvents, float64(s.Events[action]), action)
	}
	if s.Stats != nil {
		e.stats(s.Stats)
	}
	e.filesystem(s)
	if l := s.Logs; l != nil {
		e.emit(famLogLines, float64(l.LinesRead.Load()), "read")
		e.emit(famLogLines, float64(l.LinesShipped.Load()), "shipped")
		e.emit(famLogLines, float64(l.LinesDropped.Load()), "dropped")
		e.emit(famLogBytes, float64(l.BytesRead.Load()), "read")
		e.emit(famLogBytes, float64(l.BytesShipped.Load()), "shipped")
		e.emit(famLogLagSec, l.Lag().Seconds())
	}
}

func (e *emitter) stats(st *pipeline.Stats) {
	if st.NetworkOnly {
		// No cgroup of its own: only its network namespace's counters are its.
		e.network(st.Networks)
		return
	}
	e.cpuUsage(st)
	e.emit(famCPUUser, st.CPUUser.Seconds())
	e.emit(famCPUSystem, st.CPUSystem.Seconds())
	if st.CPUPeriods > 0 {
		e.emit(famCFSPeriods, float64(st.CPUPeriods))
		e.emit(famCFSThrottled, float64(st.CPUThrottledPeriods))
		e.emit(famCFSThrottledS, st.CPUThrottledTime.Seconds())
	}
	e.emit(famMemUsage, float64(st.MemoryUsage))
	e.emit(famMemWorkingSet, float64(st.MemoryWorkingSet))
	e.emit(famMemRSS, float64(st.MemoryRSS))
	e.emit(famMemCache, float64(st.MemoryCache))
	if st.HasMemorySwap {
		e.emit(famMemSwap, float64(st.MemorySwap))
	}
	e.emit(famMemFailcnt, float64(st.MemoryFailcnt))
	e.emit(famPids, float64(st.Pids))
	e.statsDetail(st)
	e.network(st.Networks)
	for _, d := range st.Disks {
		e.emit(famFsReadBytes, float64(d.ReadBytes), d.Device)
		e.emit(famFsWriteBytes, float64(d.WriteBytes), d.Device)
		if d.HasOps {
			e.emit(famFsReads, float64(d.Reads), d.Device)
			e.emit(famFsWrites, float64(d.Writes), d.Device)
		}
	}
}

func (e *emitter) network(nets []pipeline.NetworkStats) {
	for _, n := range nets {
		e.emit(famNetRxBytes, float64(n.RxBytes), n.Interface)
		e.emit(famNetRxPackets, float64(n.RxPackets), n.Interface)
		e.emit(famNetRxDropped, float64(n.RxDropped), n.Interface)
		e.emit(famNetRxErrors, float64(n.RxErrors), n.Interface)
		e.emit(famNetTxBytes, float64(n.TxBytes), n.Interface)
		e.emit(famNetTxPackets, float64(n.TxPackets), n.Interface)
		e.emit(famNetTxDropped, float64(n.TxDropped), n.Interface)
		e.emit(famNetTxErrors, float64(n.TxErrors), n.Interface)
	}
}
