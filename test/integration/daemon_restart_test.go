//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// restartDockerd stops the machine's dockerd and starts it again the way it
// was started: with systemctl where systemd runs it, else by re-running its
// own command line. It skips the test, with the reason, where neither is
// possible.
func restartDockerd(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("restarting dockerd needs root")
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		if out, err := exec.Command("systemctl", "restart", "docker").CombinedOutput(); err != nil {
			t.Fatalf("systemctl restart docker: %v\n%s", err, out)
		}
		waitDockerd(t)
		return
	}
	pid, cmdline := findDockerd(t)
	if pid == 0 {
		t.Skip("no dockerd process on this machine to restart (remote engine?)")
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stopping dockerd (pid %d): %v", pid, err)
	}
	harness.WaitFor(t, 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		return syscall.Kill(pid, 0) != nil, fmt.Sprintf("dockerd (pid %d) still running", pid)
	})
	logf, err := os.OpenFile("/tmp/dockerd-restarted.log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: the daemon must outlive this test process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dockerd again (%v): %v", cmdline, err)
	}
	cmd.Process.Release()
	waitDockerd(t)
}

func findDockerd(t *testing.T) (int, []string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if strings.TrimSpace(string(comm)) != "dockerd" {
			continue
		}
		raw, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		return pid, args
	}
	return 0, nil
}

func waitDockerd(t *testing.T) {
	t.Helper()
	harness.WaitFor(t, 90*time.Second, 500*time.Millisecond, func() (bool, string) {
		_, err := harness.TryDocker("info", "--format", "{{.ServerVersion}}")
		return err == nil, fmt.Sprintf("docker info: %v", err)
	})
}

// writtenLines reads back from Docker how many numbered lines a container
// wrote (the last one may lack its newline: the container was killed).
func writtenLines(t *testing.T, name string) int {
	t.Helper()
	out, err := exec.Command("docker", "logs", name).CombinedOutput()
	if err != nil {
		t.Fatalf("docker logs %s: %v\n%s", name, err, out)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "line" {
			if i, err := strconv.Atoi(f[1]); err == nil {
				n = max(n, i)
			}
		}
	}
	return n
}

// TestDaemonRestartLosesNoLogLine restarts dockerd while ten containers
// log (the daemon stops them mid-stream) and checks that every line Docker
// kept arrives exactly once, that events, stats and logs resume, and that
// the agent never stops. It is not parallel: a daemon restart stops every
// container, so it runs alone, before the parallel tests start.
func TestDaemonRestartLosesNoLogLine(t *testing.T) {
	col := harness.Otelcol(t)
	scope := "restart"
	a := startAgent(t, agentOpts{scope: scope, extra: logsConfig(col, 500) + "docker:\n  max_backoff: 2s\n"})
	const containers, stderrEvery = 10, 3
	names := make([]string, containers)
	for i := range names {
		names[i] = uniq(t, fmt.Sprintf("rs%d", i))
		harness.RunContainer(t, append(scopeArgs(scope, names[i]), harness.WorkloadImage(t),
			"log", "-lines", "100000", "-rate", "500", "-stderr-every", strconv.Itoa(stderrEvery), "-line-bytes", "70", "-then", "exit")...)
	}
	counts := newLineCounts(col, stderrEvery)
	counts.wait(t, names, 1000, 30*time.Second)

	restartDockerd(t)
	harness.WaitFor(t, 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		code, body := a.get("/readyz")
		return code == 200, fmt.Sprintf("/readyz after the daemon restart: %d %s", code, body)
	})
	if code, exited := a.proc.Exited(); exited {
		t.Fatalf("the agent exited (%d) with the daemon", code)
	}
	for _, n := range names {
		written := writtenLines(t, n)
		if written >= 100000 {
			t.Fatalf("%s wrote all its lines before the restart: the test did not cut a stream", n)
		}
		counts.wait(t, []string{n}, written, 60*time.Second)
		counts.get(n).check(t, written, 0)
	}
	if s, ok := a.scrape(t).Find("dockscope_event_stream_reconnects_total", nil); !ok || s.Value < 1 {
		t.Errorf("dockscope_event_stream_reconnects_total = %v after a daemon restart", s.Value)
	}
	// Events, stats and logs resume for a container started after the restart.
	after := uniq(t, "rsafter")
	harness.RunContainer(t, append(scopeArgs(scope, after), harness.WorkloadImage(t), "log", "-lines", "300", "-stderr-every", "3", "-then", "sleep")...)
	a.waitValue(t, 15*time.Second, "container_memory_working_set_bytes", after, nil, func(float64) bool { return true })
	counts.wait(t, []string{after}, 300, 30*time.Second)
	counts.get(after).check(t, 300, 0)
	if !slices.Contains(counts.events[after], "container.start") {
		t.Errorf("no container.start event shipped for %s after the restart: %v", after, counts.events[after])
	}
}
