//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// swarmNode is one Engine of scripts/swarm-nodes.sh: its own network
// namespace and address, its socket on the host's file system.
type swarmNode struct {
	name   string // its hostname, dsw-nI: the Swarm node's name
	host   string // unix:// socket, reachable from the host's namespace
	addr   string // its address on the nodes' network
	id     string // Swarm node ID, once joined
	cli    string
	script string
}

func (n *swarmNode) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, n.cli, append([]string{"-H", n.host}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("docker on %s: %s: %v: %s", n.name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func (n *swarmNode) docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.try(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// names are the names of n's containers with label; all of them, or only the
// running ones.
func (n *swarmNode) names(t *testing.T, label string, all bool) []string {
	t.Helper()
	args := []string{"ps", "--filter", "label=" + label, "--format", "{{.Names}}"}
	if all {
		args = append(args, "-a")
	}
	out := n.docker(t, args...)
	names := strings.Fields(out)
	sort.Strings(names)
	return names
}

// swarmNodesEnv is how many nodes TestSwarmMultiNode starts (2 or 3); unset,
// the test is skipped: it starts Engines of its own, in network namespaces.
const swarmNodesEnv = "DOCKSCOPE_TEST_SWARM_NODES"

// TestSwarmMultiNode runs deploy/swarm-stack.yml on a Swarm of two or three
// Engines (scripts/swarm-nodes.sh: Engine 28.5, each in its own network, mount
// and UTS namespaces with its own address), as on as many machines: the global
// agent service puts one agent on each node, each reporting its own node's
// containers and nobody else's, with that node's ID; the services reporter
// runs once, on the manager; draining the last worker moves its tasks of a
// replicated service to the other nodes and stops the agent there (a global
// service's task leaves a drained node) -- and moves nothing else: the other
// nodes' agents, the services reporter and the tasks already running there
// keep running as they were.
func TestSwarmMultiNode(t *testing.T) {
	count, err := strconv.Atoi(os.Getenv(swarmNodesEnv))
	if err != nil || count < 2 || count > 3 {
		t.Skipf("%s=%q: set it to 2 or 3 nodes to run this (make integration-swarm does)", swarmNodesEnv, os.Getenv(swarmNodesEnv))
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and second daemons (scripts/swarm-nodes.sh)")
	}
	root := harness.RepoRoot(t)
	t0 := time.Now()
	script := filepath.Join(root, "scripts", "swarm-nodes.sh")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("bash", append([]string{script}, args...)...).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("swarm-nodes.sh %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return strings.TrimSpace(string(out))
	}
	// Nodes left by a run that died are removed first: each run is a new Swarm.
	run("stop")
	t.Cleanup(func() {
		if out, err := exec.Command("bash", script, "stop").CombinedOutput(); err != nil {
			t.Errorf("swarm-nodes.sh stop: %v\n%s", err, out)
		}
	})
	started := run("start", strconv.Itoa(count))
	cli := run("cli")
	var nodes []*swarmNode
	for i, l := range strings.Split(started, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Fatalf("swarm-nodes.sh start printed %q", l)
		}
		nodes = append(nodes, &swarmNode{name: fmt.Sprintf("dsw-n%d", i+1), host: f[0], addr: f[1], cli: cli})
	}
	if len(nodes) != count {
		t.Fatalf("swarm-nodes.sh start %d started %d nodes", count, len(nodes))
	}
	// The first is the manager; the last, a worker, is drained.
	manager, worker := nodes[0], nodes[count-1]
	remaining := nodes[:count-1]
	// The package's banner names the machine's Engine; these nodes run another.
	t.Logf("%d nodes up after %v: Engine %s", count, time.Since(t0).Round(time.Second),
		manager.docker(t, "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"))

	// The Swarm: the manager and the worker advertise their own addresses; its
	// overlay networks come from a pool that cannot overlap the nodes' 10.77.0.0/24.
	manager.docker(t, "swarm", "init", "--advertise-addr", manager.addr, "--default-addr-pool", "10.201.0.0/16")
	token := manager.docker(t, "swarm", "join-token", "-q", "worker")
	for _, n := range nodes[1:] {
		// On a busy machine the join may outlast the CLI's wait; it goes on in
		// the background, and the wait below sees it done.
		if _, err := n.try("swarm", "join", "--advertise-addr", n.addr, "--data-path-addr", n.addr, "--token", token, manager.addr+":2377"); err != nil && !strings.Contains(err.Error(), "Timeout was reached before node joined") {
			t.Fatal(err)
		}
	}
	harness.WaitFor(t, time.Minute, time.Second, func() (bool, string) {
		out, _ := manager.try("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}}")
		return strings.Count(out, "Ready Active") == count, "nodes:\n" + out
	})
	for _, n := range nodes {
		n.id = n.docker(t, "info", "--format", "{{.Swarm.NodeID}}")
	}

	// No registry: the images are copied into every node, and the stack is
	// deployed with --resolve-image never, as on an air-gapped cluster.
	tag := harness.RunImage("dockscope:swarm-multinode-test")
	build := exec.Command("bash", filepath.Join(root, "scripts", "build-image.sh"), tag)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent image: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "image", "rm", tag).Run() })
	workload := harness.WorkloadImage(t)
	for _, n := range nodes {
		for _, img := range []string{tag, workload} {
			save := harness.DockerCommand(context.Background(), "save", img)
			load := exec.Command(cli, "-H", n.host, "load", "-q")
			pipe, err := save.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			load.Stdin = pipe
			if err := save.Start(); err != nil {
				t.Fatalf("docker save %s: %v", img, err)
			}
			out, err := load.CombinedOutput()
			if werr := save.Wait(); err != nil || werr != nil {
				t.Fatalf("copying %s into %s: save %v, load %v: %s", img, n.name, werr, err, out)
			}
		}
	}
	t.Logf("swarm and images ready after %v", time.Since(t0).Round(time.Second))

	// The stack as users deploy it, on its default ports: each node has its
	// own network namespace, so nothing on the machine can hold them.
	stack := "dsm"
	sockGID, err := exec.Command("stat", "-c", "%g", strings.TrimPrefix(manager.host, "unix://")).Output()
	if err != nil {
		t.Fatal(err)
	}
	deploy := exec.Command(cli, "-H", manager.host, "stack", "deploy", "--resolve-image", "never",
		"-c", filepath.Join(root, "deploy", "swarm-stack.yml"), stack)
	deploy.Env = append(os.Environ(), "DOCKSCOPE_IMAGE="+tag, "DOCKER_GID="+strings.TrimSpace(string(sockGID)))
	if out, err := deploy.CombinedOutput(); err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
	// A replicated service spread over both nodes (the scheduler spreads a
	// service's tasks over the nodes), two tasks each.
	svc := "dsm-web"
	webReplicas := 2 * count
	manager.docker(t, "service", "create", "--detach", "--no-resolve-image", "--name", svc,
		"--replicas", strconv.Itoa(webReplicas), "--stop-grace-period", "1s", workload, "sleep")

	svcLabel := "com.docker.swarm.service.name=" + svc
	harness.WaitFor(t, 2*time.Minute, time.Second, func() (bool, string) {
		msg := ""
		ok := true
		for _, n := range nodes {
			web := n.names(t, svcLabel, false)
			agent := n.names(t, "com.docker.swarm.service.name="+stack+"_agent", false)
			msg += fmt.Sprintf("%s: %d %s tasks, agents %v; ", n.name, len(web), svc, agent)
			ok = ok && len(web) == 2 && len(agent) == 1
		}
		return ok, msg
	})

	agentURL := func(n *swarmNode) string { return "http://" + n.addr + ":9817/metrics" }
	servicesURL := func(n *swarmNode) string { return "http://" + n.addr + ":9818/metrics" }

	// ownOnly checks n's agent reports exactly n's containers (all running
	// ones; none of the other node's), each with n's node ID and host name.
	ownOnly := func(n *swarmNode) (bool, string) {
		m, err := harness.TryScrapeMetrics(agentURL(n))
		if err != nil {
			return false, err.Error()
		}
		running := n.names(t, "com.docker.swarm.task.id", false)
		all := map[string]bool{}
		for _, c := range n.names(t, "com.docker.swarm.task.id", true) {
			all[c] = true
		}
		reported := map[string]bool{}
		for _, s := range m.FindAll("container_info", nil) {
			name := s.Labels["name"]
			if !all[name] {
				return false, fmt.Sprintf("%s's agent reports %s, not a container of %s", n.name, name, n.name)
			}
			if s.Labels["swarm_node_id"] != n.id || s.Labels["container_label_com_docker_swarm_node_id"] != n.id {
				return false, fmt.Sprintf("%s's agent: %s has node %q/%q, want %s", n.name, name,
					s.Labels["swarm_node_id"], s.Labels["container_label_com_docker_swarm_node_id"], n.id)
			}
			if s.Labels["host"] != n.name {
				return false, fmt.Sprintf("%s's agent: %s has host %q", n.name, name, s.Labels["host"])
			}
			reported[name] = true
		}
		for _, c := range running {
			if !reported[c] {
				return false, fmt.Sprintf("%s's agent does not report its running %s yet (reports %d)", n.name, c, len(reported))
			}
		}
		// Every series carrying a node ID has this node's: nothing of the other's.
		for _, name := range m.Names() {
			for _, s := range m[name] {
				if id, ok := s.Labels["container_label_com_docker_swarm_node_id"]; ok && id != n.id {
					return false, fmt.Sprintf("%s's agent: %s{name=%q} has node %s", n.name, name, s.Labels["name"], id)
				}
			}
		}
		if _, ok := m.Find("container_cpu_usage_seconds_total", map[string]string{
			"container_label_com_docker_swarm_service_name": svc,
			"container_label_com_docker_swarm_node_id":      n.id,
		}); !ok {
			return false, fmt.Sprintf("%s's agent: no CPU series of %s's tasks yet", n.name, svc)
		}
		if len(m["swarm_service_replicas_desired"]) != 0 {
			return false, fmt.Sprintf("%s's agent exports service replicas: only the services reporter may", n.name)
		}
		// The stack mounts the node's cgroups and /proc: samples come from
		// them, as on a real node, not from its dockerd.
		if s, _ := m.Find("dockscope_stats_samples_total", map[string]string{"source": "cgroup"}); s.Value == 0 {
			return false, fmt.Sprintf("%s's agent has read no stats sample from the cgroup files yet", n.name)
		}
		return true, ""
	}
	for _, n := range nodes {
		harness.WaitFor(t, 90*time.Second, time.Second, func() (bool, string) { return ownOnly(n) })
	}
	// Each agent's container turns healthy: the image's health check works
	// with the stack's config on every node.
	for _, n := range nodes {
		harness.WaitFor(t, 90*time.Second, 2*time.Second, func() (bool, string) {
			out, _ := n.try("ps", "--filter", "label=com.docker.swarm.service.name="+stack+"_agent", "--format", "{{.Status}}")
			return strings.Contains(out, "(healthy)"), fmt.Sprintf("%s's agent: %s", n.name, out)
		})
	}

	// The services reporter: one task, on the manager, publishing on the
	// manager only; the worker has nothing on that port.
	replicas := func(wantWeb float64, wantAgents float64) (bool, string) {
		m, err := harness.TryScrapeMetrics(servicesURL(manager))
		if err != nil {
			return false, err.Error()
		}
		want := map[string]string{"service_name": svc, "mode": "replicated"}
		d, okD := m.Find("swarm_service_replicas_desired", want)
		r, okR := m.Find("swarm_service_replicas_running", want)
		if !okD || !okR || d.Value != wantWeb || r.Value != wantWeb {
			return false, fmt.Sprintf("replicas of %s: desired %v (%v), running %v (%v), want %v", svc, d.Value, okD, r.Value, okR, wantWeb)
		}
		a := map[string]string{"service_name": stack + "_agent", "mode": "global", "stack": stack}
		ad, okD := m.Find("swarm_service_replicas_desired", a)
		ar, okR := m.Find("swarm_service_replicas_running", a)
		if !okD || !okR || ad.Value != wantAgents || ar.Value != wantAgents {
			return false, fmt.Sprintf("the global agent service: desired %v (%v), running %v (%v), want %v", ad.Value, okD, ar.Value, okR, wantAgents)
		}
		if len(m["container_cpu_usage_seconds_total"]) != 0 {
			return false, "the services reporter exports container series too"
		}
		return true, ""
	}
	harness.WaitFor(t, 60*time.Second, time.Second, func() (bool, string) { return replicas(float64(webReplicas), float64(count)) })
	servicesTasks := func() []string {
		out := manager.docker(t, "service", "ps", stack+"_services", "--filter", "desired-state=running", "--format", "{{.ID}} {{.Node}}")
		return strings.Split(out, "\n")
	}
	reporter := servicesTasks()
	if len(reporter) != 1 || !strings.HasSuffix(reporter[0], " "+manager.name) {
		t.Fatalf("services reporter tasks: %q, want one on %s", reporter, manager.name)
	}
	for _, n := range nodes[1:] {
		if _, err := harness.TryScrapeMetrics(servicesURL(n)); err == nil {
			t.Errorf("%s publishes a services reporter too", n.name)
		}
	}
	t.Logf("agents report their own nodes after %v", time.Since(t0).Round(time.Second))

	// Drain the last worker. What ran on the other nodes stays as it was:
	// their agents' containers, their web tasks and the services reporter
	// keep running, with the same container IDs.
	ids := func(n *swarmNode) []string {
		return strings.Fields(n.docker(t, "ps", "--filter", "label=com.docker.swarm.task.id", "--format", "{{.ID}}"))
	}
	var before []string
	for _, n := range remaining {
		before = append(before, ids(n)...)
	}
	manager.docker(t, "node", "update", "--availability", "drain", worker.id)
	tDrain := time.Now()
	harness.WaitFor(t, 2*time.Minute, time.Second, func() (bool, string) {
		onWorker := worker.names(t, "com.docker.swarm.task.id", false)
		web := 0
		for _, n := range remaining {
			web += len(n.names(t, svcLabel, false))
		}
		return len(onWorker) == 0 && web == webReplicas, fmt.Sprintf("on %s: %v; %s tasks elsewhere: %d of %d", worker.name, onWorker, svc, web, webReplicas)
	})
	t.Logf("drained %s in %v", worker.name, time.Since(tDrain).Round(time.Second))
	stillThere := map[string]bool{}
	for _, n := range remaining {
		for _, id := range ids(n) {
			stillThere[id] = true
		}
	}
	for _, id := range before {
		if !stillThere[id] {
			t.Errorf("container %s (not on the drained %s) stopped when %s was drained", id, worker.name, worker.name)
		}
	}
	if after := servicesTasks(); len(after) != 1 || after[0] != reporter[0] {
		t.Errorf("services reporter tasks after the drain: %q, before %q", after, reporter)
	}
	// The drained worker's agent is gone (its task was shut down, not
	// moved), the other agents report the tasks that moved to their nodes
	// (ownOnly: every running container of the node), and the reporter counts
	// one agent fewer: a global service's desired count follows the nodes
	// that may run it.
	if _, err := harness.TryScrapeMetrics(agentURL(worker)); err == nil {
		t.Errorf("%s's agent still answers after the drain", worker.name)
	}
	for _, n := range remaining {
		harness.WaitFor(t, 90*time.Second, time.Second, func() (bool, string) { return ownOnly(n) })
	}
	harness.WaitFor(t, 60*time.Second, time.Second, func() (bool, string) {
		return replicas(float64(webReplicas), float64(count-1))
	})
	t.Logf("done after %v", time.Since(t0).Round(time.Second))
}
