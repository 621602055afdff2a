package collector

import (
	"path"
	"strings"

	"github.com/moby/moby/api/types/container"
)

// cgroupPath derives the container's cgroup path (cAdvisor's `id` label)
// from the runtime's defaults: Docker's "/docker/<id>" with the cgroupfs
// driver, "/system.slice/docker-<id>.scope" with systemd; Podman's
// "/libpod_parent/libpod-<id>" and "/machine.slice/libpod-<id>.scope". It is
// the fallback for when /proc/<pid>/cgroup cannot say (cgroupResolver): no
// process, a /proc or cgroup filesystem the agent cannot see; it is wrong
// for a relative --cgroup-parent and rootless Docker or Podman.
func cgroupPath(runtime, driver string, in container.InspectResponse, id string) string {
	parent := ""
	if in.HostConfig != nil {
		parent = in.HostConfig.CgroupParent
	}
	prefix, defSlice, defParent := "docker-", "system.slice", "/docker"
	if runtime == runtimePodman {
		prefix, defSlice, defParent = "libpod-", "machine.slice", "/libpod_parent"
	}
	if driver == "systemd" {
		if parent == "" {
			parent = defSlice
		}
		return systemdSlicePath(parent) + "/" + prefix + id + ".scope"
	}
	if parent == "" {
		parent = defParent
	}
	if runtime == runtimePodman {
		return path.Join("/", parent, prefix+id)
	}
	return path.Join("/", parent, id)
}

// systemdSlicePath expands a slice name the way systemd nests it:
// "a-b.slice" lives at "/a.slice/a-b.slice".
func systemdSlicePath(slice string) string {
	name := strings.TrimSuffix(slice, ".slice")
	if name == "" || name == "-" {
		return "/"
	}
	var b strings.Builder
	prefix := ""
	for part := range strings.SplitSeq(name, "-") {
		if prefix != "" {
			prefix += "-"
		}
		prefix += part
		b.WriteString("/" + prefix + ".slice")
	}
	return b.String()
}
