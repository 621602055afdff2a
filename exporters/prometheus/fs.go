package prometheus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockscope/dockscope/pipeline"
)

// cAdvisor's filesystem families, with its help texts. cAdvisor fills them
// for a Docker container from the writable layer and the log directory
// (usage) and the layer's filesystem (limit: its capacity; Docker imposes
// no limit of its own).
//
// The inode pair deliberately differs from cAdvisor's: for Docker
// containers it puts the inodes the container uses in
// container_fs_inodes_total and leaves container_fs_inodes_free at 0
// (google/cadvisor#3534), so the usual "inodes used" alert,
// 1 - free/total, reads 100 % and always fires
// (awesome-prometheus-alerts#326). Here both are the backing filesystem's,
// from statfs, as their help texts say and as cAdvisor's machine-level
// series have them: the alert then reads the filesystem's real use.
var (
	famFsInodesFree  = newFamily("container_fs_inodes_free", "Number of available Inodes", prometheus.GaugeValue, []string{"device"})
	famFsInodesTotal = newFamily("container_fs_inodes_total", "Number of Inodes", prometheus.GaugeValue, []string{"device"})
	famFsLimit       = newFamily("container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", prometheus.GaugeValue, []string{"device"})
	famFsUsage       = newFamily("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", prometheus.GaugeValue, []string{"device"})
)

// filesystem emits a running container's latest filesystem measurement,
// taken every stats.filesystem.interval.
func (e *emitter) filesystem(s *pipeline.Snapshot) {
	fs := s.Filesystem
	if fs == nil || !s.State.Running() {
		// As cAdvisor: a container without processes has no series.
		return
	}
	e.emit(famFsInodesFree, float64(fs.InodesFree), fs.Device)
	e.emit(famFsInodesTotal, float64(fs.InodesTotal), fs.Device)
	e.emit(famFsLimit, float64(fs.CapacityBytes), fs.Device)
	e.emit(famFsUsage, float64(fs.UsageBytes), fs.Device)
}
