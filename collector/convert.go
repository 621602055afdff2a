package collector

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moby/moby/api/types/container"

	"github.com/dockscope/dockscope/pipeline"
)

// Well-known labels that carry orchestrator identity.
const (
	labelComposeProject = "com.docker.compose.project"
	labelComposeService = "com.docker.compose.service"
	labelSwarmStack     = "com.docker.stack.namespace"
	labelSwarmService   = "com.docker.swarm.service.name"
	labelSwarmTask      = "com.docker.swarm.task.name"
	labelSwarmNode      = "com.docker.swarm.node.id"
	labelK8sPod         = "io.kubernetes.pod.name"
	labelK8sNamespace   = "io.kubernetes.pod.namespace"
	labelK8sContainer   = "io.kubernetes.container.name"
)

// defaultCFSPeriod is the kernel's and Docker's default CFS period in µs;
// `--cpus` sets NanoCPUs and leaves CpuPeriod 0, meaning this value.
const defaultCFSPeriod = 100000

// defaultCPUShares is the kernel's weight for a cgroup nobody configured.
const defaultCPUShares = 1024

// containerFromInspect turns an inspect response into the pipeline's view.
// hostname is the Docker host's name; allow filters the labels kept.
func containerFromInspect(in container.InspectResponse, hostname string, allow func(string) bool) (pipeline.ContainerMeta, pipeline.ContainerState, pipeline.ContainerSpec) {
	var labels map[string]string
	image := in.Image
	var tty bool
	if in.Config != nil {
		labels = in.Config.Labels
		image = in.Config.Image
		tty = in.Config.Tty
	}
	name, tag := splitImageRef(image)
	meta := pipeline.ContainerMeta{
		ID:             in.ID,
		Name:           strings.TrimPrefix(in.Name, "/"),
		Image:          image,
		ImageName:      name,
		ImageTag:       tag,
		ImageID:        in.Image,
		Hostname:       hostname,
		ComposeProject: capValue(labels[labelComposeProject], maxIdentityBytes),
		ComposeService: capValue(labels[labelComposeService], maxIdentityBytes),
		SwarmStack:     capValue(labels[labelSwarmStack], maxIdentityBytes),
		SwarmService:   capValue(labels[labelSwarmService], maxIdentityBytes),
		SwarmTask:      capValue(labels[labelSwarmTask], maxIdentityBytes),
		SwarmNodeID:    capValue(labels[labelSwarmNode], maxIdentityBytes),
		K8sPod:         capValue(labels[labelK8sPod], maxIdentityBytes),
		K8sNamespace:   capValue(labels[labelK8sNamespace], maxIdentityBytes),
		K8sContainer:   capValue(labels[labelK8sContainer], maxIdentityBytes),
		Labels:         allowedLabels(labels, allow),
	}

	state := pipeline.ContainerState{
		RestartCount: in.RestartCount,
		CreatedAt:    parseTime(in.Created),
		Tty:          tty,
	}
	if s := in.State; s != nil {
		state.Status = string(s.Status)
		state.ExitCode = s.ExitCode
		state.OOMKilled = s.OOMKilled
		state.Pid = s.Pid
		state.StartedAt = parseTime(s.StartedAt)
		state.FinishedAt = parseTime(s.FinishedAt)
		if s.Health != nil && s.Health.Status != container.NoHealthcheck {
			state.Health = string(s.Health.Status)
		}
	}

	var spec pipeline.ContainerSpec
	if hc := in.HostConfig; hc != nil {
		state.LogDriver = hc.LogConfig.Type
		state.NetworkMode = string(hc.NetworkMode)
		spec = pipeline.ContainerSpec{
			MemoryLimit: hc.Memory,
			CPUQuota:    hc.CPUQuota,
			CPUPeriod:   hc.CPUPeriod,
			CPUShares:   hc.CPUShares,
		}
		if hc.NanoCPUs > 0 {
			spec.CPUPeriod = defaultCFSPeriod
			spec.CPUQuota = hc.NanoCPUs * defaultCFSPeriod / 1e9
		}
		if spec.CPUQuota > 0 && spec.CPUPeriod == 0 {
			spec.CPUPeriod = defaultCFSPeriod
		}
	}
	if spec.CPUShares == 0 {
		spec.CPUShares = defaultCPUShares
	}
	return meta, state, spec
}

// Label values are copied onto every series and into every OTLP Resource,
// so one hostile container (a 1 MB label) would otherwise repeat that much
// in every scrape and every batch. Orchestrators' names are short — a
// Kubernetes object name is at most 253 bytes, a Swarm task name is a
// service name (≤ 63) plus a slot and a 25-character ID — so identity
// values are cut at 253 bytes; allow-listed labels, chosen by the user, at
// 1 KiB. The cut falls on a UTF-8 boundary.
const (
	maxIdentityBytes   = 253
	maxLabelValueBytes = 1024
)

// capValue returns s cut to at most n bytes without splitting a UTF-8
// sequence.
func capValue(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// allowedLabels returns the labels whose key passes allow, or nil; values
// are capped at maxLabelValueBytes.
func allowedLabels(labels map[string]string, allow func(string) bool) map[string]string {
	if allow == nil {
		return nil
	}
	var out map[string]string
	for k, v := range labels {
		if allow(k) {
			if out == nil {
				out = make(map[string]string)
			}
			out[k] = capValue(v, maxLabelValueBytes)
		}
	}
	return out
}

// splitImageRef splits "registry:5000/repo/img:tag@sha256:…" into the name
// and the tag ("latest" when a named reference has none). A bare image id
// ("sha256:…") has no tag.
func splitImageRef(ref string) (name, tag string) {
	if strings.HasPrefix(ref, "sha256:") {
		return ref, ""
	}
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	// A colon after the last slash separates the tag; one before it is a
	// registry port.
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[:i], ref[i+1:]
	}
	return ref, "latest"
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// engineStats is the part of the Engine's stats document the agent uses.
// Decoding the whole container.StatsResponse cost ~100 µs per sample (the
// agent's largest share at 200 containers), most of it spent filling the
// memory "stats" map of 30-odd keys and the per-CPU and unused blkio
// arrays; the decoder skips what has no field here.
type engineStats struct {
	Read      time.Time `json:"read"`
	PidsStats struct {
		Current uint64 `json:"current"`
	} `json:"pids_stats"`
	BlkioStats struct {
		IoServiceBytesRecursive []container.BlkioStatEntry `json:"io_service_bytes_recursive"`
		IoServicedRecursive     []container.BlkioStatEntry `json:"io_serviced_recursive"`
	} `json:"blkio_stats"`
	CPUStats struct {
		CPUUsage struct {
			TotalUsage        uint64 `json:"total_usage"`
			UsageInKernelmode uint64 `json:"usage_in_kernelmode"`
			UsageInUsermode   uint64 `json:"usage_in_usermode"`
		} `json:"cpu_usage"`
		OnlineCPUs     uint32                   `json:"online_cpus"`
		ThrottlingData container.ThrottlingData `json:"throttling_data"`
	} `json:"cpu_stats"`
	MemoryStats struct {
		Usage    uint64        `json:"usage"`
		MaxUsage optUint       `json:"max_usage"` // v1 only
		Failcnt  optUint       `json:"failcnt"`   // v1 only
		Stats    cgroupMemKeys `json:"stats"`
	} `json:"memory_stats"`
	Networks map[string]container.NetworkStats `json:"networks"`
}

// cgroupMemKeys are the cgroup memory.stat keys the Engine passes through
// that the agent reads: v1 names the hierarchical totals "total_*", v2 has
// "anon" and "file" instead.
type cgroupMemKeys struct {
	Anon              *uint64 `json:"anon"` // present only on cgroup v2
	File              uint64  `json:"file"`
	InactiveFile      uint64  `json:"inactive_file"`
	TotalRSS          uint64  `json:"total_rss"`
	TotalCache        uint64  `json:"total_cache"`
	TotalInactiveFile uint64  `json:"total_inactive_file"`
	TotalSwap         *uint64 `json:"total_swap"` // v1, only with swap accounting

	memDetailKeys
}

// statsFromResponse normalizes one Engine stats response, cgroup v1 or v2.
func statsFromResponse(r engineStats) (pipeline.Stats, error) {
	if r.Read.IsZero() || r.Read.Year() <= 1 {
		return pipeline.Stats{}, fmt.Errorf("stats response has no read time: the container is not running")
	}
	cpu := r.CPUStats
	st := pipeline.Stats{
		Read:                r.Read,
		CPUTotal:            time.Duration(cpu.CPUUsage.TotalUsage),
		CPUUser:             time.Duration(cpu.CPUUsage.UsageInUsermode),
		CPUSystem:           time.Duration(cpu.CPUUsage.UsageInKernelmode),
		CPUPeriods:          cpu.ThrottlingData.Periods,
		CPUThrottledPeriods: cpu.ThrottlingData.ThrottledPeriods,
		CPUThrottledTime:    time.Duration(cpu.ThrottlingData.ThrottledTime),
		OnlineCPUs:          cpu.OnlineCPUs,
		MemoryUsage:         r.MemoryStats.Usage,
		Pids:                r.PidsStats.Current,
	}

	m := r.MemoryStats.Stats
	var inactiveFile uint64
	if m.Anon != nil {
		inactiveFile = m.InactiveFile
		st.MemoryRSS = *m.Anon
		st.MemoryCache = m.File
	} else {
		inactiveFile = m.TotalInactiveFile
		st.MemoryRSS = m.TotalRSS
		st.MemoryCache = m.TotalCache
		if m.TotalSwap != nil {
			st.MemorySwap, st.HasMemorySwap = *m.TotalSwap, true
		}
	}
	st.MemoryWorkingSet = workingSet(st.MemoryUsage, inactiveFile)
	statsDetailFromResponse(&r, &st)

	for _, iface := range slices.Sorted(maps.Keys(r.Networks)) {
		n := r.Networks[iface]
		st.Networks = append(st.Networks, pipeline.NetworkStats{
			Interface: iface,
			RxBytes:   n.RxBytes, RxPackets: n.RxPackets, RxDropped: n.RxDropped, RxErrors: n.RxErrors,
			TxBytes: n.TxBytes, TxPackets: n.TxPackets, TxDropped: n.TxDropped, TxErrors: n.TxErrors,
		})
	}
	st.Disks = diskStats(r.BlkioStats.IoServiceBytesRecursive, r.BlkioStats.IoServicedRecursive)
	return st, nil
}

// diskStats sums the Engine's blkio entries per device. cgroup v1 names
// ops "Read" and "Write" and fills io_serviced_recursive; v2 names them
// "read" and "write" and has no operation counts.
func diskStats(ioBytes, ioOps []container.BlkioStatEntry) []pipeline.DiskStats {
	entries := func(in []container.BlkioStatEntry) []blkioEntry {
		out := make([]blkioEntry, 0, len(in))
		for _, e := range in {
			out = append(out, blkioEntry{dev: fmt.Sprintf("%d:%d", e.Major, e.Minor), op: strings.ToLower(e.Op), value: e.Value})
		}
		return out
	}
	return mergeDisks(entries(ioBytes), entries(ioOps))
}

// workingSet is cAdvisor's working set: usage less the inactive page cache,
// never below zero (inactive_file can briefly exceed usage while the
// kernel updates its counters).
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile < usage {
		return usage - inactiveFile
	}
	return 0
}
