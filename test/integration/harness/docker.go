package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLabel is put on every container RunContainer starts, so that leftovers
// can be found: docker ps -aq --filter label=dockscope.test=1 (this run's:
// label=RunLabel()).
const TestLabel = "dockscope.test=1"

// Images made by WorkloadImage and WorkloadHealthImage, this run's own
// (tags test-<run>, health-<run>): Main removes them after a successful run
// without touching another run's.
var (
	WorkloadImageName       = "dockscope-workload:test-" + runID
	WorkloadHealthImageName = "dockscope-workload:health-" + runID
)

// HealthFile is the file whose existence the health check of
// WorkloadHealthImage tests.
const HealthFile = "/tmp/healthy"

// DockerTimeout bounds one docker CLI command.
const DockerTimeout = 5 * time.Minute

// DockerHostEnv names the Engine the tests talk to, as a DOCKER_HOST value
// (unix:// only); unset, it is the machine's, DefaultDockerHost. `make
// integration-engine28` sets it to the second Engine of scripts/engine28.sh.
const DockerHostEnv = "DOCKSCOPE_TEST_DOCKER_HOST"

// DefaultDockerHost is the machine's Engine.
const DefaultDockerHost = "unix:///var/run/docker.sock"

// DockerHost returns the Engine the tests use: the test's own docker CLI
// calls, the Engine client, and every agent startAgent runs (its DOCKER_HOST).
func DockerHost() string {
	if h := os.Getenv(DockerHostEnv); h != "" {
		return h
	}
	return DefaultDockerHost
}

// DockerSocket returns the path of DockerHost's unix socket, for the tests
// that put a proxy in front of it.
func DockerSocket(t testing.TB) string {
	t.Helper()
	sock, ok := strings.CutPrefix(DockerHost(), "unix://")
	if !ok {
		t.Fatalf("harness: %s=%s is not a unix:// socket", DockerHostEnv, DockerHost())
	}
	return sock
}

// IsDefaultEngine reports whether the tests run against the machine's Engine,
// not a second one (scripts/engine28.sh) that the machine's service manager
// knows nothing of.
func IsDefaultEngine() bool {
	return DockerSocketPath() == "/var/run/docker.sock" || DockerSocketPath() == "/run/docker.sock"
}

// DockerSocketPath is DockerSocket without a test: "" when not unix://.
func DockerSocketPath() string {
	sock, _ := strings.CutPrefix(DockerHost(), "unix://")
	return sock
}

// DockerCLIEnv names the docker CLI binary the tests run; unset, "docker"
// from PATH. scripts/engine28.sh's own CLI goes with its Engine.
const DockerCLIEnv = "DOCKSCOPE_TEST_DOCKER_CLI"

// DockerCommand returns the docker CLI command for args, aimed at DockerHost.
func DockerCommand(ctx context.Context, args ...string) *exec.Cmd {
	cli := os.Getenv(DockerCLIEnv)
	if cli == "" {
		cli = "docker"
	}
	return exec.CommandContext(ctx, cli, append([]string{"-H", DockerHost()}, args...)...)
}

var (
	engineOnce    sync.Once
	engineDesc    string
	engineRuntime = "docker"
)

// EngineDescription names the Engine under test for messages, e.g.
// "Engine 28.5.2+dfsg4 (API 1.51) at unix:///run/dockscope-engine28/docker.sock"
// or "Podman 4.3.1 (API 1.41) at unix:///run/dockscope-podman/podman.sock".
func EngineDescription() string {
	engineOnce.Do(func() {
		v, err := TryDocker("version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}}){{range .Server.Components}} {{.Name}};{{end}}")
		if err != nil {
			v = "(version unknown: " + err.Error() + ")"
		}
		what := "Engine"
		// Podman's /version lists a "Podman Engine" component, Docker's an "Engine".
		if strings.Contains(v, "Podman") {
			what, engineRuntime = "Podman", "podman"
		}
		v, _, _ = strings.Cut(v, ") ")
		if !strings.HasSuffix(v, ")") && strings.Contains(v, "(API") {
			v += ")"
		}
		engineDesc = fmt.Sprintf("%s %s at %s", what, v, DockerHost())
	})
	return engineDesc
}

// Runtime is what serves the Engine API under test: "docker", or "podman"
// for Podman's Docker-compatible API (what the agent should report as
// container.runtime.name).
func Runtime() string {
	EngineDescription()
	return engineRuntime
}

// IsPodman reports whether the Engine under test is Podman's
// (scripts/podman.sh, make integration-podman).
func IsPodman() bool { return Runtime() == "podman" }

// SkipOnPodman skips a test that cannot pass on Podman for a reason that is
// Podman's, which why states.
func SkipOnPodman(t testing.TB, why string) {
	t.Helper()
	if IsPodman() {
		t.Skipf("not on %s: %s", EngineDescription(), why)
	}
}

// CgroupID is the `id` label (cAdvisor's: the container's cgroup path) of a
// container on this machine's cgroupfs driver: /docker/<id> with Docker,
// /libpod_parent/libpod-<id> with Podman.
func CgroupID(id string) string {
	if IsPodman() {
		return "/libpod_parent/libpod-" + id
	}
	return "/docker/" + id
}

// ImageRef is the image reference the Engine reports for a container run
// from the local image name: the name itself on Docker; on Podman the name
// it resolved the short name to (an image built through its Docker API is
// tagged docker.io/library/<name>, and containers report that).
func ImageRef(name string) string {
	if IsPodman() && !strings.Contains(strings.SplitN(name, "/", 2)[0], ".") {
		if !strings.Contains(name, "/") {
			return "docker.io/library/" + name
		}
		return "docker.io/" + name
	}
	return name
}

// TryDocker runs the docker CLI with args against DockerHost and returns its
// trimmed stdout, or an error that includes its stderr.
func TryDocker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DockerTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := DockerCommand(ctx, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("docker %s: %v: %s",
			strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Docker runs the docker CLI with args and returns its trimmed stdout; it
// fails the test, with docker's stderr, if the command fails.
func Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := TryDocker(args...)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return out
}

// RunContainer runs `docker run -d --label dockscope.test=1 --label
// dockscope.test.run=<run> <args>` and
// returns the new container's id; the container is removed (docker rm -f -v)
// when the test ends. args are docker run's options, the image and the
// command, e.g. RunContainer(t, "--name", n, WorkloadImage(t), "sleep").
func RunContainer(t testing.TB, args ...string) string {
	t.Helper()
	noteEngineOnFailure(t)
	id := Docker(t, append([]string{"run", "-d", "--label", TestLabel, "--label", RunLabel()}, args...)...)
	if i := strings.LastIndexByte(id, '\n'); i >= 0 { // progress lines before the id
		id = id[i+1:]
	}
	t.Cleanup(func() {
		if _, err := TryDocker("rm", "-f", "-v", id); err != nil && !strings.Contains(err.Error(), "No such container") {
			t.Logf("harness: removing container %.12s: %v", id, err)
		}
	})
	runPodmanHealthchecks(t, id)
	return id
}

// PodmanCLIEnv names the podman CLI (with the service's configuration, as
// scripts/podman.sh env sets it) that runs health checks where Podman
// cannot: it schedules them as systemd timers, and without systemd (this
// machine, most CI containers) none ever runs.
const PodmanCLIEnv = "DOCKSCOPE_TEST_PODMAN_CLI"

// podmanHealthInterval is how often runPodmanHealthchecks runs a check: the
// interval of WorkloadHealthImage's HEALTHCHECK.
const podmanHealthInterval = time.Second

// runPodmanHealthchecks does, on Podman without systemd, what the systemd
// timer would: `podman healthcheck run <id>` every podmanHealthInterval, for
// a container that has a health check, until the test ends.
func runPodmanHealthchecks(t testing.TB, id string) {
	cli := os.Getenv(PodmanCLIEnv)
	if cli == "" || !IsPodman() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(podmanHealthInterval)
		defer tick.Stop()
		for {
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			out, err := exec.CommandContext(cctx, cli, "healthcheck", "run", id).CombinedOutput()
			ccancel()
			// "unhealthy" exits 1; a container without a check, or gone, ends it.
			if err != nil && !strings.Contains(string(out), "unhealthy") {
				if ctx.Err() == nil && !strings.Contains(string(out), "no defined healthcheck") &&
					!strings.Contains(string(out), "not running") && !strings.Contains(string(out), "no such container") {
					t.Logf("harness: podman healthcheck run %.12s: %v: %s", id, err, bytes.TrimSpace(out))
				}
				if strings.Contains(string(out), "no defined healthcheck") || strings.Contains(string(out), "no such container") {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	// Registered after the removal, so it runs before it.
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

var (
	imageMu   sync.Mutex
	imageDone = map[string]error{}
)

// WorkloadImage builds test/workload statically and makes the image
// dockscope-workload:test-<run> from it (FROM scratch, so nothing is pulled),
// once per test process, and returns the image name. The image's entrypoint is
// /workload, its default command "sleep", and it has an empty /tmp; it has no
// health check.
func WorkloadImage(t testing.TB) string {
	t.Helper()
	return workloadImage(t, WorkloadImageName, "")
}

// WorkloadHealthImage is WorkloadImage plus
//
//	HEALTHCHECK --interval=1s --timeout=2s --retries=1 CMD ["/workload","probe","-file","/tmp/healthy"]
//
// (docker run --health-cmd would need a shell, which a scratch image lacks).
// A container is healthy while HealthFile exists. It starts without it
// (health "starting", then "unhealthy"); make it healthy with
// `docker exec <id> /workload touch /tmp/healthy` and unhealthy again with
// `docker exec <id> /workload rm /tmp/healthy`. docker run's
// --health-interval, --health-retries etc. override the timing.
func WorkloadHealthImage(t testing.TB) string {
	t.Helper()
	return workloadImage(t, WorkloadHealthImageName,
		`HEALTHCHECK --interval=1s --timeout=2s --retries=1 CMD ["/workload","probe","-file","`+HealthFile+`"]`)
}

func workloadImage(t testing.TB, name, extra string) string {
	t.Helper()
	bin := BuildStatic(t, "./test/workload")
	imageMu.Lock()
	defer imageMu.Unlock()
	err, ok := imageDone[name]
	if !ok {
		err = buildImage(bin, name, extra)
		imageDone[name] = err
	}
	if err != nil {
		t.Fatalf("harness: building image %s: %v", name, err)
	}
	return name
}

func buildImage(bin, name, extra string) error {
	dir, err := os.MkdirTemp("", "dockscope-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "workload"), b, 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil { // umask
		return err
	}
	dockerfile := "FROM scratch\n" +
		"COPY workload /workload\n" +
		"COPY tmp /tmp\n" +
		"LABEL dockscope.test.image=workload " + RunLabel() + "\n" +
		"STOPSIGNAL SIGTERM\n" +
		extra + "\n" +
		`ENTRYPOINT ["/workload"]` + "\n" +
		`CMD ["sleep"]` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	_, err = TryDocker("build", "-q", "-t", name, dir)
	return err
}

var (
	noCgroupsOnce sync.Once
	noCgroups     bool
)

// EngineHasNoCgroups reports whether the Engine under test gives containers
// no cgroups of their own (docker info: Cgroup Driver none), as rootless
// Docker on cgroup v1 does: no limits apply, and the agent exports only a
// container's network counters, none of CPU, memory, pids or block I/O.
func EngineHasNoCgroups() bool {
	noCgroupsOnce.Do(func() {
		d, err := TryDocker("info", "--format", "{{.CgroupDriver}}")
		noCgroups = err == nil && d == "none"
	})
	return noCgroups
}

// SkipWithoutCgroups skips a test of what needs container cgroups (CPU and
// memory accounting, limits, OOM kills) on an Engine that has none.
func SkipWithoutCgroups(t testing.TB) {
	t.Helper()
	if EngineHasNoCgroups() {
		t.Skipf("%s gives containers no cgroups (cgroup driver none: rootless Docker on cgroup v1): no CPU or memory accounting, limits or OOM kills to test", EngineDescription())
	}
}
