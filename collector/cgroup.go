package collector

import (
	"path"
	"strings"

	"github.com/moby/moby/api/types/container"
)

// cgroupPath derives the container's cgroup path (cAdvisor's `id` label:
// "/docker/<id>" with the cgroupfs driver, "/system.slice/docker-<id>.scope"
// with systemd) from Docker's defaults. It is the fallback for when
// /proc/<pid>/cgroup cannot say (cgroupResolver): no process, a /proc or
// cgroup filesystem the agent cannot see; it is wrong for a relative
// --cgroup-parent, rootless Docker and Podman.
func cgroupPath(driver string, in container.InspectResponse, id string) string {
	parent := ""
	if in.HostConfig != nil {
		parent = in.HostConfig.CgroupParent
	}
	if driver == "systemd" {
		if parent == "" {
			parent = "system.slice"
		}
		return systemdSlicePath(parent) + "/docker-" + id + ".scope"
	}
	if parent == "" {
		parent = "/docker"
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
