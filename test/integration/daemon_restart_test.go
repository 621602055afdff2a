//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// TestDaemonRestartLosesNoLogLine restarts dockerd while the agent is in
// the middle of reading three containers' logs (held back by a stopped
// backend), and checks that every line then arrives once, and that metrics
// resume. It is not parallel: a daemon restart stops every container, so it
// runs alone, before the parallel tests start.
func TestDaemonRestartLosesNoLogLine(t *testing.T) {
	col := harness.Otelcol(t)
	scope := "restart"
	a := startAgent(t, agentOpts{scope: scope, extra: logsConfig(col, 200) + "  max_line_bytes: 16384\n  buffer_bytes: 65536\n" +
		"docker:\n  max_backoff: 2s\n"})
	const lines = 8000
	names := []string{uniq(t, "rs0"), uniq(t, "rs1"), uniq(t, "rs2")}
	for _, n := range names {
		harness.RunContainer(t, append(scopeArgs(scope, n), harness.WorkloadImage(t),
			"log", "-lines", strconv.Itoa(lines), "-stderr-every", "3", "-line-bytes", "70", "-then", "exit")...)
	}
	waitShipped(t, col, names[0], 200, 30*time.Second)
	col.Stop() // the readers fill the 64 KiB buffer and stop mid-stream

	restartDockerd(t)
	harness.WaitFor(t, 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		code, body := a.get("/readyz")
		return code == 200, fmt.Sprintf("/readyz after the daemon restart: %d %s", code, body)
	})
	col.Start(t)
	for _, n := range names {
		// The request in flight when the collector stopped may repeat.
		checkNumbered(t, n, waitShipped(t, col, n, lines, 90*time.Second), lines, 3, 200)
	}
	if s, ok := a.scrape(t).Find("dockscope_event_stream_reconnects_total", nil); !ok || s.Value < 1 {
		t.Errorf("dockscope_event_stream_reconnects_total = %v after a daemon restart", s.Value)
	}
	// Metrics resume: a container started after the restart is followed.
	after := uniq(t, "rsafter")
	harness.RunContainer(t, append(scopeArgs(scope, after), harness.WorkloadImage(t), "sleep")...)
	a.waitValue(t, 15*time.Second, "container_memory_working_set_bytes", after, nil, func(float64) bool { return true })
}
