package collector

import (
	"strings"

	cerrdefs "github.com/containerd/errdefs"
)

// Container runtimes behind the Engine API, as OpenTelemetry's
// container.runtime.name spells them.
const (
	runtimeDocker = "docker"
	runtimePodman = "podman"
)

// runtimeName tells Podman's Docker-compatible API from Docker's own by the
// components /version lists: Podman names its "Podman Engine", Docker its
// "Engine".
func runtimeName(components []string) string {
	for _, c := range components {
		if strings.Contains(strings.ToLower(c), "podman") {
			return runtimePodman
		}
	}
	return runtimeDocker
}

// podmanGone reports whether an inspect failed because Podman is removing
// the container: 4.3 answers 500 "container <id> does not exist in
// database: no such container" (not a 404) to an inspect between its
// removal's first events and its "remove" event.
func podmanGone(err error) bool {
	return err != nil && !cerrdefs.IsNotFound(err) && strings.Contains(err.Error(), "does not exist in database: no such container")
}
