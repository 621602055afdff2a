//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// TestSwarmStackDeploysGlobalAgent deploys deploy/swarm-stack.yml as users
// do, with the image `make image` builds, and checks that every node runs
// one agent that sees another service's container with its Swarm identity,
// and that the one services reporter counts that service's replicas.
//
// It is not parallel: it may put the engine into Swarm mode (and takes it
// out again), which no other test should see happen.
func TestSwarmStackDeploysGlobalAgent(t *testing.T) {
	root := harness.RepoRoot(t)
	useSwarmManager(t)

	// The image, built the way `make image` builds it.
	tag := harness.RunImage("dockscope:swarm-test")
	build := exec.Command("bash", filepath.Join(root, "scripts", "build-image.sh"), tag)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent image: %v\n%s", err, out)
	}
	t.Cleanup(func() { harness.TryDocker("image", "rm", tag) })

	stack := uniq(t, "ds")
	agentPort, servicesPort := harness.FreePort(t), harness.FreePort(t)
	gid, err := socketGroup()
	if err != nil {
		t.Fatal(err)
	}
	deploy := exec.Command("docker", "stack", "deploy", "--resolve-image", "never",
		"-c", filepath.Join(root, "deploy", "swarm-stack.yml"), stack)
	deploy.Env = append(os.Environ(),
		"DOCKSCOPE_IMAGE="+tag,
		"DOCKER_GID="+gid,
		fmt.Sprintf("DOCKSCOPE_PORT=%d", agentPort),
		fmt.Sprintf("DOCKSCOPE_SERVICES_PORT=%d", servicesPort),
		"DOCKSCOPE_CONFIG_VERSION="+stack, // configs are per stack: no clash with a user's
	)
	if out, err := deploy.CombinedOutput(); err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
	t.Cleanup(func() { removeStack(t, stack) })

	// Another service, whose container the agents must report with its
	// Swarm service and node.
	svc := uniq(t, "web")
	harness.Docker(t, "service", "create", "--detach", "--no-resolve-image", "--name", svc,
		"--replicas", "1", "--container-label", harness.TestLabel, harness.WorkloadImage(t), "sleep")
	t.Cleanup(func() { harness.TryDocker("service", "rm", svc) })

	nodes := strings.Fields(harness.Docker(t, "node", "ls", "--format", "{{.ID}}"))
	harness.WaitFor(t, 2*time.Minute, time.Second, func() (bool, string) {
		out, _ := harness.TryDocker("service", "ps", stack+"_agent", "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}")
		running := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "Running") {
				running++
			}
		}
		return running == len(nodes), fmt.Sprintf("global agent tasks running: %d of %d nodes:\n%s", running, len(nodes), out)
	})

	nodeID := harness.Docker(t, "info", "--format", "{{.Swarm.NodeID}}")
	agentURL := fmt.Sprintf("http://127.0.0.1:%d", agentPort)
	harness.WaitFor(t, 90*time.Second, time.Second, func() (bool, string) {
		m, err := harness.TryScrapeMetrics(agentURL + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		s, ok := m.Find("container_cpu_usage_seconds_total", map[string]string{
			"container_label_com_docker_swarm_service_name": svc,
			"container_label_com_docker_swarm_node_id":      nodeID,
		})
		if !ok {
			return false, fmt.Sprintf("no CPU series of %s's task with node %s yet", svc, nodeID)
		}
		if !strings.HasPrefix(s.Labels["container_label_com_docker_swarm_task_name"], svc+".1.") {
			return false, fmt.Sprintf("task label: %v", s.Labels)
		}
		info, ok := m.Find("container_info", map[string]string{"swarm_service": svc})
		if !ok || info.Labels["host"] == "" {
			return false, fmt.Sprintf("container_info of the task: %v", info.Labels)
		}
		// The stack mounts the host's cgroups and /proc: samples come from
		// them, read by the non-root agent, not from dockerd.
		if s, _ := m.Find("dockscope_stats_samples_total", map[string]string{"source": "cgroup"}); s.Value == 0 {
			return false, "no stats sample read from the host's cgroup files yet"
		}
		return true, ""
	})

	// The agent's own container runs healthy (its HEALTHCHECK probes /readyz).
	harness.WaitFor(t, 90*time.Second, 2*time.Second, func() (bool, string) {
		out, _ := harness.TryDocker("ps", "--filter", "label=com.docker.stack.namespace="+stack, "--format", "{{.Names}} {{.Status}}")
		lines := strings.Split(out, "\n")
		healthy := 0
		for _, l := range lines {
			if strings.Contains(l, "(healthy)") {
				healthy++
			}
		}
		return healthy == 2, "stack containers:\n" + out
	})

	// The services reporter counts the other service's replicas, once.
	harness.WaitFor(t, 60*time.Second, time.Second, func() (bool, string) {
		m, err := harness.TryScrapeMetrics(fmt.Sprintf("http://127.0.0.1:%d/metrics", servicesPort))
		if err != nil {
			return false, err.Error()
		}
		want := map[string]string{"service_name": svc, "mode": "replicated"}
		d, okD := m.Find("swarm_service_replicas_desired", want)
		r, okR := m.Find("swarm_service_replicas_running", want)
		if !okD || !okR || d.Value != 1 || r.Value != 1 {
			return false, fmt.Sprintf("replicas of %s: desired %v (%v), running %v (%v)", svc, d.Value, okD, r.Value, okR)
		}
		if g, ok := m.Find("swarm_service_replicas_desired", map[string]string{"service_name": stack + "_agent", "mode": "global", "stack": stack}); !ok || g.Value != float64(len(nodes)) {
			return false, fmt.Sprintf("the global agent service: %v", g)
		}
		if len(m["container_cpu_usage_seconds_total"]) != 0 {
			return false, "the services reporter exports container series too"
		}
		return true, ""
	})
	// ...and the per-node agents do not.
	if m, err := harness.TryScrapeMetrics(agentURL + "/metrics"); err != nil || len(m["swarm_service_replicas_desired"]) != 0 {
		t.Errorf("a node agent exports service replicas (err %v)", err)
	}
}

// useSwarmManager puts the engine into Swarm mode for the test (and takes it
// out again after) unless it is a manager already; it skips the test on a
// Swarm worker, from which nothing can be deployed.
func useSwarmManager(t *testing.T) {
	t.Helper()
	state := harness.Docker(t, "info", "--format", "{{.Swarm.LocalNodeState}}")
	switch state {
	case "inactive":
		_, gwbridgeErr := harness.TryDocker("network", "inspect", "docker_gwbridge")
		harness.Docker(t, "swarm", "init", "--advertise-addr", "127.0.0.1")
		t.Cleanup(func() {
			if _, err := harness.TryDocker("swarm", "leave", "--force"); err != nil {
				t.Logf("leaving swarm mode: %v", err)
			}
			if gwbridgeErr != nil { // swarm init made it; leaving does not remove it
				harness.TryDocker("network", "rm", "docker_gwbridge")
			}
		})
	case "active":
		if harness.Docker(t, "info", "--format", "{{.Swarm.ControlAvailable}}") != "true" {
			t.Skip("the engine is a Swarm worker; services must be created from a manager")
		}
	default:
		t.Fatalf("the engine's Swarm state is %q", state)
	}
}

// socketGroup is the group owning the Docker socket, which the agent's
// user must be in.
func socketGroup() (string, error) {
	out, err := exec.Command("stat", "-c", "%g", "/var/run/docker.sock").Output()
	if err != nil {
		return "", fmt.Errorf("reading the Docker socket's group: %v", err)
	}
	g := strings.TrimSpace(string(out))
	if _, err := strconv.Atoi(g); err != nil {
		return "", fmt.Errorf("the Docker socket's group %q is not numeric", g)
	}
	return g, nil
}

// removeStack removes a stack and waits for its containers, then its
// volume and configs, to be gone.
func removeStack(t *testing.T, stack string) {
	if _, err := harness.TryDocker("stack", "rm", stack); err != nil {
		t.Logf("docker stack rm: %v", err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		out, _ := harness.TryDocker("ps", "-aq", "--filter", "label=com.docker.stack.namespace="+stack)
		if out == "" {
			break
		}
		time.Sleep(time.Second)
	}
	for time.Now().Before(deadline) {
		if _, err := harness.TryDocker("volume", "rm", stack+"_dockscope-state"); err == nil || strings.Contains(err.Error(), "no such volume") {
			return
		}
		time.Sleep(time.Second)
	}
	t.Logf("stack %s: volume not removed in time", stack)
}
