package otlp

import (
	"go.opentelemetry.io/otel/semconv/v1.43.0/containerconv"

	"github.com/dockscope/dockscope/pipeline"
)

// filesystemMetrics adds the semantic conventions' container.filesystem.*
// of a running container's latest measurement (taken every
// stats.filesystem.interval). The conventions make them UpDownCounters:
// non-monotonic sums. Usage is the writable layer plus the log directory
// (cAdvisor's container_fs_usage_bytes); capacity and available are the
// backing filesystem's, shared with others, so usage need not equal
// capacity − available.
func filesystemMetrics(cm *containerMetrics, s *pipeline.Snapshot) {
	fs := s.Filesystem
	if fs == nil || !s.State.Running() {
		return
	}
	avail, capacity, usage := containerconv.FilesystemAvailable{}, containerconv.FilesystemCapacity{}, containerconv.FilesystemUsage{}
	cm.sum(avail.Name(), avail.Description(), avail.Unit(), false, float64(fs.AvailableBytes))
	cm.sum(capacity.Name(), capacity.Description(), capacity.Unit(), false, float64(fs.CapacityBytes))
	cm.sum(usage.Name(), usage.Description(), usage.Unit(), false, float64(fs.UsageBytes))
}
