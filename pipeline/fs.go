package pipeline

import "time"

// FilesystemStats is a container's disk use as cAdvisor counts it for
// Docker: its writable layer plus its directory under the daemon's
// containers/ (logs, config, hosts files), measured by walking them every
// stats.filesystem.interval, and the filesystem that holds the layer, read
// with statfs at the end of each walk. Unlike Stats it is not refreshed
// every stats interval: a walk costs a stat per file.
type FilesystemStats struct {
	// Device is the block device holding the writable layer, named as the
	// `device` label of the block I/O series ("/dev/sda"), or major:minor.
	Device string
	// UsageBytes is the space the layer and log directory take on disk
	// (allocated blocks, as du counts them; hard links once).
	UsageBytes uint64
	// Inodes is how many files and directories they hold.
	Inodes uint64

	// Of the whole backing filesystem (statfs), shared with every other
	// container and the host: Docker sets no per-container limit.
	CapacityBytes  uint64
	AvailableBytes uint64 // free to unprivileged users
	InodesTotal    uint64
	InodesFree     uint64

	Measured time.Time // when the walk that produced it ended
}

// SetFilesystem records a container's latest filesystem measurement; nil
// clears it (its directories could not be read). It reports false when the
// container is not known.
func (s *Store) SetFilesystem(id string, fs *FilesystemStats) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return false
	}
	c.Filesystem = fs
	return true
}
