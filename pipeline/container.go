// Package pipeline holds the records that flow from the collector to the
// exporters, the per-container store they meet in, and the self-metrics of
// that flow. It imports neither the Docker client nor any exporter library:
// it is the seam between the two sides.
package pipeline

import "time"

// ContainerMeta is the identity of a container: everything that goes into a
// Prometheus label set or an OTLP Resource. It changes only when the
// container is re-created, so exporters may cache what they derive from it.
type ContainerMeta struct {
	ID        string
	Name      string // without the leading "/"
	Image     string // the reference the container was created from, e.g. "nginx:1.27"
	ImageName string // Image without tag or digest
	ImageTag  string // "latest" when the reference names none
	ImageID   string
	Hostname  string // the Docker host's name, not the container's
	// Runtime is what serves the Engine API: "docker", or "podman" for
	// Podman's Docker-compatible API (OpenTelemetry's container.runtime.name).
	Runtime string
	// CgroupPath is cAdvisor's `id` label: "/docker/<id>" or
	// "/system.slice/docker-<id>.scope".
	CgroupPath string

	ComposeProject string
	ComposeService string

	SwarmStack   string
	SwarmService string
	SwarmTask    string
	SwarmNodeID  string

	K8sPod       string
	K8sNamespace string
	K8sContainer string

	// Labels holds only the container labels the user allow-listed.
	Labels map[string]string
}

// ContainerState is what the Engine says about a container's lifecycle.
type ContainerState struct {
	Status       string // created, running, paused, restarting, removing, exited, dead
	Health       string // "" when the container has no health check; else starting, healthy, unhealthy
	RestartCount int
	ExitCode     int
	OOMKilled    bool
	CreatedAt    time.Time
	StartedAt    time.Time
	FinishedAt   time.Time
	Tty          bool
	LogDriver    string
	// Pid is the container's main process on the host (0 when stopped);
	// NetworkMode is HostConfig.NetworkMode. The cgroup stats source reads
	// the container's network counters through them.
	Pid         int
	NetworkMode string
}

// Running reports whether the container has processes whose stats can be sampled.
func (s ContainerState) Running() bool {
	return s.Status == "running" || s.Status == "paused" || s.Status == "restarting"
}

// ContainerSpec holds the resource limits the container was started with.
type ContainerSpec struct {
	MemoryLimit int64 // bytes, 0 = unlimited
	CPUQuota    int64 // microseconds per CPUPeriod, 0 = unlimited
	CPUPeriod   int64 // microseconds
	CPUShares   int64
	// MemoryReservation is the soft limit (--memory-reservation), 0 = none.
	MemoryReservation int64
	// MemorySwapLimit is the swap limit as the cgroup holds it, as cAdvisor
	// reports it: memory plus swap on cgroup v1, swap alone on v2; 0 =
	// unlimited.
	MemorySwapLimit int64
	// PidsLimit is --pids-limit, 0 = unlimited.
	PidsLimit int64
}
