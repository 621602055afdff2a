//go:build integration

package integration

import (
	"bytes"
	"cmp"
	"context"
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

// DockerPidFileEnv names the pid file of the daemon under test; unset, it is
// dockerd's default, /var/run/docker.pid. `make integration-engine28` sets it
// to the second Engine's.
const dockerPidFileEnv = "DOCKSCOPE_TEST_DOCKER_PIDFILE"

// restartDockerd stops the daemon under test and brings it back the way it
// was running, under whatever supervised it (supervision): systemd
// (systemctl restart docker), Debian's init script (service docker restart),
// a supervising parent such as runit, s6 or supervisord (it starts dockerd
// again by itself; the test waits for that). Where nothing supervises it (a
// second Engine of scripts/engine28.sh, a dockerd started by hand or by a CI
// image's entrypoint) the test starts it again itself, with its own command
// line, environment, working directory and log file, in a session of its own
// so that it outlives the test process; the test's log says so. The daemon is
// found by its pid file, never by process name: with two Engines on the
// machine, a name finds either. It skips the test, with the reason, where
// none of this is possible.
func restartDockerd(t *testing.T) {
	t.Helper()
	harness.SkipOnPodman(t, "Podman has no daemon to restart: `podman system service` only serves the API, and containers (under conmon) and their logs go on without it; TestDaemonOutageAndRecovery covers the API going away")
	if os.Geteuid() != 0 {
		t.Skip("restarting dockerd needs root")
	}
	pidFile := os.Getenv(dockerPidFileEnv)
	if pidFile == "" {
		if !harness.IsDefaultEngine() {
			t.Skipf("%s is not the machine's Engine and %s is not set: no way to find its daemon", harness.DockerHost(), dockerPidFileEnv)
		}
		pidFile = "/var/run/docker.pid"
	}
	d, err := findDockerd(pidFile)
	if err != nil {
		t.Skipf("no dockerd to restart (remote engine?): %v", err)
	}
	parent := d.ppid
	if parent == os.Getpid() {
		parent = 1 // relaunched by this process before: as orphaned as it was
	}
	way := supervision(d.pid, parent, systemdMainPID(), initScriptPID())
	t.Logf("restarting dockerd (pid %d, pid file %s): %s", d.pid, pidFile, way)
	switch way {
	case viaSystemd, viaInitScript:
		cmd := exec.Command("systemctl", "restart", "docker")
		if way == viaInitScript {
			cmd = exec.Command("service", "docker", "restart")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
		waitDockerd(t)
		return
	}
	if err := syscall.Kill(d.pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stopping dockerd (pid %d): %v", d.pid, err)
	}
	harness.WaitFor(t, 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		return syscall.Kill(d.pid, 0) != nil, fmt.Sprintf("dockerd (pid %d) still running", d.pid)
	})
	if way == viaSupervisor {
		deadline := time.Now().Add(supervisorRestartWait)
		for time.Now().Before(deadline) {
			if n, err := findDockerd(pidFile); err == nil && n.pid != d.pid {
				t.Logf("dockerd back under its supervisor (pid %d, parent %d)", n.pid, n.ppid)
				waitDockerd(t)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("its parent (pid %d) did not start dockerd again within %v: starting it here", d.ppid, supervisorRestartWait)
	}
	relaunchDockerd(t, d)
	waitDockerd(t)
}

// supervisorRestartWait is how long a supervising parent (runit's runsv
// restarts a service after 1 s) gets to start dockerd again.
const supervisorRestartWait = 20 * time.Second

// relaunchDockerd starts dockerd again as d ran: same command line,
// environment (a second Engine's PATH finds its own containerd and runc),
// working directory and log file.
func relaunchDockerd(t *testing.T, d dockerdProc) {
	t.Helper()
	logPath := d.logFile
	if logPath == "" {
		// Its output went to a terminal or a pipe that is gone.
		logPath = relaunchedLog
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(d.args[0], d.args[1:]...)
	cmd.Env, cmd.Dir = d.env, d.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: the daemon must outlive this test process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dockerd again (%v): %v", d.args, err)
	}
	t.Logf("nothing supervises dockerd: started it again here (pid %d, was %d), %q, log %s", cmd.Process.Pid, d.pid, strings.Join(d.args, " "), logPath)
	cmd.Process.Release()
}

// relaunchedLog takes a relaunched dockerd's output when it had no log file:
// not under /tmp, since the daemon outlives the test run.
const relaunchedLog = "/var/log/dockerd-restarted-by-dockscope-tests.log"

// restartWay is how the daemon under test comes back after a restart.
type restartWay int

const (
	relaunch      restartWay = iota // nothing supervises it: the test starts it again
	viaSystemd                      // systemctl restart docker
	viaInitScript                   // service docker restart (Debian's /etc/init.d/docker)
	viaSupervisor                   // its parent starts it again by itself
)

func (w restartWay) String() string {
	return [...]string{
		relaunch:      "nothing supervises it, so the test starts it again with its own command line",
		viaSystemd:    "systemd runs it: systemctl restart docker",
		viaInitScript: "its init script runs it: service docker restart",
		viaSupervisor: "its parent supervises it: stopping it and waiting for the parent to start it again",
	}[w]
}

// supervision tells how the dockerd with pid and parent ppid comes back:
// systemdMainPID is docker.service's main pid, initScriptPID the pid in the
// init script's pid file (0: none). A dockerd whose parent is pid 1 and
// neither of those was started by hand (or by an entrypoint) and orphaned.
func supervision(pid, ppid, systemdMainPID, initScriptPID int) restartWay {
	switch {
	case pid <= 0:
		return relaunch
	case systemdMainPID == pid:
		return viaSystemd
	case initScriptPID == pid:
		return viaInitScript
	case ppid > 1:
		return viaSupervisor
	}
	return relaunch
}

// systemdMainPID is docker.service's main pid, 0 without systemd.
func systemdMainPID() int {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return 0
	}
	out, err := exec.Command("systemctl", "show", "--property", "MainPID", "--value", "docker.service").Output()
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return pid
}

// initScriptPID is the pid Debian's /etc/init.d/docker started dockerd with
// (start-stop-daemon's pid file), 0 when it did not.
func initScriptPID() int {
	if _, err := os.Stat("/etc/init.d/docker"); err != nil {
		return 0
	}
	b, err := os.ReadFile("/var/run/docker-ssd.pid")
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// dockerdProc is how a running dockerd was started.
type dockerdProc struct {
	pid     int
	ppid    int
	args    []string
	env     []string
	dir     string
	logFile string // its stdout when that is a regular file
}

// findDockerd reads the daemon's pid from pidFile and checks that the process
// is a dockerd (a stale pid file may name a reused pid).
func findDockerd(pidFile string) (dockerdProc, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return dockerdProc{}, fmt.Errorf("reading its pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return dockerdProc{}, fmt.Errorf("pid file %s: %w", pidFile, err)
	}
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	comm, err := os.ReadFile(filepath.Join(proc, "comm"))
	if err != nil {
		return dockerdProc{}, fmt.Errorf("pid %d of %s: %w", pid, pidFile, err)
	}
	if c := strings.TrimSpace(string(comm)); c != "dockerd" {
		return dockerdProc{}, fmt.Errorf("pid %d of %s is %q, not dockerd", pid, pidFile, c)
	}
	d := dockerdProc{pid: pid}
	if stat, err := os.ReadFile(filepath.Join(proc, "stat")); err == nil {
		// pid (comm) state ppid ...; comm may hold spaces, not ")".
		if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 1 {
			d.ppid, _ = strconv.Atoi(f[1])
		}
	}
	raw, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	if err != nil {
		return dockerdProc{}, fmt.Errorf("command line of dockerd (pid %d): %w", pid, err)
	}
	d.args = strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
	if raw, err := os.ReadFile(filepath.Join(proc, "environ")); err == nil && len(raw) > 0 {
		d.env = strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
	}
	d.dir, _ = os.Readlink(filepath.Join(proc, "cwd"))
	if out, err := os.Readlink(filepath.Join(proc, "fd", "1")); err == nil {
		if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() {
			d.logFile = out
		}
	}
	return d, nil
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
	out, err := harness.DockerCommand(context.Background(), "logs", name).CombinedOutput()
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

// TestDockerdSupervision checks how restartDockerd brings each kind of
// daemon back: under the supervisor that runs it, never a second copy beside
// it, and started by the test only where nothing supervises it.
func TestDockerdSupervision(t *testing.T) {
	for _, c := range []struct {
		name                       string
		pid, ppid, systemd, initSc int
		want                       restartWay
	}{
		{"systemd's docker.service", 812, 1, 812, 0, viaSystemd},
		{"systemd runs, but this dockerd was started by hand", 4242, 1, 812, 0, relaunch},
		{"systemd without a running docker.service", 4242, 1, 0, 0, relaunch},
		{"Debian's init script (start-stop-daemon)", 1468, 1, 0, 1468, viaInitScript},
		{"a stale init script pid file", 1468, 1, 0, 977, relaunch},
		{"runit's runsv, s6-supervise, supervisord", 90, 85, 0, 0, viaSupervisor},
		{"orphaned: started by hand or by engine28.sh", 1468, 1, 0, 0, relaunch},
		{"no pid", 0, 0, 0, 0, relaunch},
	} {
		if got := supervision(c.pid, c.ppid, c.systemd, c.initSc); got != c.want {
			t.Errorf("%s: supervision(%d, %d, %d, %d) = %q, want %q", c.name, c.pid, c.ppid, c.systemd, c.initSc, got, c.want)
		}
	}
}

// TestFindDockerdReadsHowItRuns reads the daemon under test from its pid file
// (only reading: nothing is restarted) and checks what restartDockerd would
// use against /proc/<pid>/status and the command line.
func TestFindDockerdReadsHowItRuns(t *testing.T) {
	pidFile := cmp.Or(os.Getenv(dockerPidFileEnv), "/var/run/docker.pid")
	if os.Getenv(dockerPidFileEnv) == "" && !harness.IsDefaultEngine() {
		t.Skipf("%s is not set for %s", dockerPidFileEnv, harness.DockerHost())
	}
	d, err := findDockerd(pidFile)
	if err != nil {
		t.Skipf("no dockerd of %s here: %v", harness.EngineDescription(), err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid))
	if err != nil {
		t.Fatal(err)
	}
	var ppid int
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			ppid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if d.ppid != ppid || ppid == 0 && d.pid != 1 {
		t.Errorf("findDockerd: parent %d, /proc/%d/status says %d", d.ppid, d.pid, ppid)
	}
	if filepath.Base(d.args[0]) != "dockerd" || len(d.env) == 0 || d.dir == "" {
		t.Errorf("findDockerd: args %q, %d environment variables, working directory %q", d.args, len(d.env), d.dir)
	}
	t.Logf("dockerd pid %d, parent %d, log %q: %s", d.pid, d.ppid, d.logFile, supervision(d.pid, d.ppid, systemdMainPID(), initScriptPID()))
}
