//go:build integration

// Package integration tests the agent end to end against the real Docker
// Engine, a real Prometheus and a real OpenTelemetry Collector. Every image
// is built here from static binaries: nothing is pulled.
package integration

import (
	"cmp"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// agent is one running dockscope process.
type agent struct {
	proc    *harness.Process
	url     string // http://127.0.0.1:port
	cfgPath string
}

// agentOpts shape an agent for one test.
type agentOpts struct {
	// scope is a label value: the agent follows only containers labelled
	// dockscope.scope=<scope>, so tests running side by side do not see
	// each other's containers.
	scope string
	// extra is more YAML placed before the discovery section; discovery
	// holds more keys of that section. The discovery section comes last so
	// that a test may append keys to it.
	extra     string
	discovery string
	stats     string // more keys of the stats section
	interval  string // stats.interval; 1s when empty
	resync    string // discovery.resync_interval; 5s when empty

	env    []string // extra environment
	noWait bool     // do not wait for /readyz
	// stateDir is agent.state_dir; a fresh temporary one when empty.
	stateDir string
	// user runs the agent as another user; nil is this process's.
	user *syscall.Credential
	args []string // more command-line flags
}

// startAgent builds the agent once per process and starts it with a fast
// stats interval on a free port.
func startAgent(t *testing.T, o agentOpts) *agent {
	t.Helper()
	bin := harness.BuildStatic(t, "./cmd/agent")
	port := harness.FreePort(t)
	cfgDir, stateDir := t.TempDir(), cmp.Or(o.stateDir, t.TempDir())
	if o.user != nil {
		// Test directories are private to their owner: the other user gets
		// a readable configuration directory and a state directory of its own.
		base, err := os.MkdirTemp("", "dockscope-user-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(base) })
		cfgDir, stateDir = base, filepath.Join(base, "state")
		if err := os.Chmod(base, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(stateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(stateDir, int(o.user.Uid), int(o.user.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`agent:
  state_dir: %s
stats:
  interval: %s
%s%sdiscovery:
  resync_interval: %s
  include:
    labels: ["dockscope.scope=%s"]
%s`, stateDir, cmp.Or(o.interval, "1s"), o.stats, o.extra, cmp.Or(o.resync, "5s"), o.scope, o.discovery)
	cfgPath := filepath.Join(cfgDir, "dockscope.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The test's own environment must not turn OTLP on; o.env may. The agent
	// talks to the Engine under test unless o.env says otherwise (a proxy).
	env := append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=",
		"DOCKER_HOST=" + harness.DockerHost()}, o.env...)
	p := harness.StartProcessAs(t, o.user, bin, env, append([]string{
		"--config.file", cfgPath, "--web.listen-address", fmt.Sprintf("127.0.0.1:%d", port), "--log.level", "debug"}, o.args...)...)
	a := &agent{proc: p, url: fmt.Sprintf("http://127.0.0.1:%d", port), cfgPath: cfgPath}
	if !o.noWait {
		harness.WaitFor(t, 20*time.Second, 100*time.Millisecond, func() (bool, string) {
			code, body := a.get("/readyz")
			return code == http.StatusOK, fmt.Sprintf("/readyz: %d %s", code, body)
		})
	}
	return a
}

func (a *agent) get(path string) (int, string) {
	resp, err := http.Get(a.url + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

func (a *agent) scrape(t *testing.T) harness.Metrics {
	t.Helper()
	return harness.ScrapeMetrics(t, a.url+"/metrics")
}

// value returns the one sample of name for the container, or false.
func (a *agent) value(t *testing.T, name, container string, labels map[string]string) (float64, bool) {
	t.Helper()
	want := map[string]string{"name": container}
	for k, v := range labels {
		want[k] = v
	}
	s, ok := a.scrape(t).Find(name, want)
	return s.Value, ok
}

// waitValue waits until the container's series satisfies cond.
func (a *agent) waitValue(t *testing.T, timeout time.Duration, name, container string, labels map[string]string, cond func(float64) bool) float64 {
	t.Helper()
	var last float64
	harness.WaitFor(t, timeout, 200*time.Millisecond, func() (bool, string) {
		v, ok := a.value(t, name, container, labels)
		last = v
		if !ok {
			return false, fmt.Sprintf("%s{name=%q} absent", name, container)
		}
		return cond(v), fmt.Sprintf("%s{name=%q} = %v", name, container, v)
	})
	return last
}

// sampledSeries names a series the agent exports for every sampled running
// container, with the labels that pick it: the memory working set, or, on an
// Engine that gives containers no cgroups (rootless Docker on cgroup v1),
// where the agent exports only network counters, eth0's received bytes.
func sampledSeries() (string, map[string]string) {
	if harness.EngineHasNoCgroups() {
		return "container_network_receive_bytes_total", map[string]string{"interface": "eth0"}
	}
	return "container_memory_working_set_bytes", nil
}

// merge returns the union of label sets, b winning.
func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// scopeArgs labels a test container so that only its test's agent follows it.
func scopeArgs(scope, name string) []string {
	return []string{"--label", "dockscope.scope=" + scope, "--name", name}
}

// uniq makes names unique per run, so a leftover container from an aborted
// run never collides.
func uniq(t *testing.T, base string) string {
	return fmt.Sprintf("ds-%s-%d", base, time.Now().UnixNano()%1e9)
}
