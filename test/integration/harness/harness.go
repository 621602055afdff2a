// Package harness holds the helpers of dockscope's integration tests
// (test/integration, build tag "integration"): building static binaries,
// making test images without a registry, running containers and processes,
// scraping and parsing Prometheus metrics, and running a real Prometheus and a
// real OpenTelemetry Collector.
//
// Every helper takes a testing.TB, fails the test on an unexpected error and
// registers its own cleanup. It needs only the standard library, a Docker
// Engine, and what scripts/setup.sh installs (prometheus, the test collector).
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const modulePath = "github.com/dockscope/dockscope"

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// RepoRoot returns the directory holding the dockscope module's go.mod,
// searched upwards from the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && isModule(b, modulePath) {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = fmt.Errorf("no go.mod of module %s above the working directory", modulePath)
				return
			}
			dir = parent
		}
	})
	if rootErr != nil {
		t.Fatalf("harness: RepoRoot: %v", rootErr)
	}
	return rootDir
}

func isModule(gomod []byte, path string) bool {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == path
		}
	}
	return false
}

var (
	binMu    sync.Mutex // also serialises builds: the machines have few cores
	binCache = map[string]binResult{}
)

type binResult struct {
	path string
	err  error
}

// BuildStatic builds the main package pkg (a path relative to the repository
// root such as "./cmd/agent", or an import path) with CGO_ENABLED=0 and
// returns the binary's path. Each package is built once per test process,
// into RunDir's bin/, which Main removes (or else the next test process that
// builds something, when this one was killed).
func BuildStatic(t testing.TB, pkg string) string {
	t.Helper()
	// Where the tests run without Go (the cgroup v2 VM of
	// scripts/cgroupv2-vm.sh), the binaries were built beforehand.
	if dir := os.Getenv(BinDirEnv); dir != "" {
		p := filepath.Join(dir, filepath.Base(strings.TrimRight(pkg, "/.")))
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("harness: %s=%s has no binary for %s: %v", BinDirEnv, dir, pkg, err)
		}
		return p
	}
	root := RepoRoot(t)
	binMu.Lock()
	defer binMu.Unlock()
	r, ok := binCache[pkg]
	if !ok {
		r = buildStatic(root, pkg)
		binCache[pkg] = r
	}
	if r.err != nil {
		t.Fatalf("harness: building %s: %v", pkg, r.err)
	}
	return r.path
}

func buildStatic(root, pkg string) binResult {
	dir, err := runDir()
	if err != nil {
		return binResult{err: err}
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return binResult{err: err}
	}
	name := filepath.Base(strings.TrimRight(pkg, "/."))
	if name == "" || name == "." || name == string(filepath.Separator) {
		name = "bin"
	}
	out := filepath.Join(bin, fmt.Sprintf("%s-%d", name, len(binCache)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin(), "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return binResult{err: fmt.Errorf("go build -o %s %s: %v\n%s", out, pkg, err, b)}
	}
	return binResult{path: out}
}

// runDirPrefix: RunDir is $TMPDIR/dockscope-test-<pid>.
const runDirPrefix = "dockscope-test-"

var (
	runDirMu   sync.Mutex
	runDirPath string
)

// RunDir returns this run's directory, $TMPDIR/dockscope-test-<pid>: the
// binaries BuildStatic makes, the whole output of a process of a failed test,
// what a test keeps for debugging (profiles). Main removes it after a
// successful run and keeps it, saying so, after a failed one.
func RunDir(t testing.TB) string {
	t.Helper()
	d, err := runDir()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return d
}

func runDir() (string, error) {
	runDirMu.Lock()
	defer runDirMu.Unlock()
	if runDirPath != "" {
		return runDirPath, nil
	}
	removeStaleBinDirs()
	d := filepath.Join(os.TempDir(), runDirPrefix+strconv.Itoa(os.Getpid()))
	// A dead run's with a reused pid.
	if err := os.RemoveAll(d); err != nil {
		return "", fmt.Errorf("making the run's directory: %w", err)
	}
	// Traversable by the other users some tests run the agent as.
	if err := os.Mkdir(d, 0o755); err != nil {
		return "", fmt.Errorf("making the run's directory: %w", err)
	}
	runDirPath = d
	return d, nil
}

// existingRunDir is RunDir if this run made one and it is not empty.
func existingRunDir() string {
	runDirMu.Lock()
	defer runDirMu.Unlock()
	if runDirPath == "" {
		return ""
	}
	if ents, err := os.ReadDir(runDirPath); err != nil || len(ents) == 0 {
		return ""
	}
	return runDirPath
}

func removeRunDir() {
	runDirMu.Lock()
	defer runDirMu.Unlock()
	if runDirPath != "" {
		os.RemoveAll(runDirPath)
	}
}

func removeRunBinaries() {
	runDirMu.Lock()
	defer runDirMu.Unlock()
	if runDirPath != "" {
		os.RemoveAll(filepath.Join(runDirPath, "bin"))
	}
}

// removeStaleBinDirs removes the binaries of test processes that no longer
// run (killed before Main could), and their directory when nothing else is
// in it; what a failed run kept for debugging stays.
func removeStaleBinDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), runDirPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), runDirPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(filepath.Join(d, "bin"))
			os.Remove(d) // only if empty
		}
	}
}

func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// Main runs the tests and then removes what the run made that outlives a
// test: after a successful run, its images (WorkloadImage's, RunImage's) and
// RunDir; it fails the run if a container or image labelled with RunLabel is
// still there. A failed run (or DOCKSCOPE_TEST_KEEP=1) keeps them and says
// where they are. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
func Main(m *testing.M) int {
	// CI runs the suite against more than one Engine: say which one, and
	// which one failed (asked first: a failed test may have stopped it).
	engine := EngineDescription()
	fmt.Fprintf(os.Stderr, "integration tests against the %s (run %s)\n", engine, RunID())
	code := m.Run()
	removeRunBinaries()
	switch {
	case code != 0:
		fmt.Fprintf(os.Stderr, "integration tests FAILED against the %s\n%s\n", engine, keptMessage())
	case os.Getenv(KeepEnv) == "1":
		fmt.Fprintf(os.Stderr, "%s=1: %s\n", KeepEnv, keptMessage())
	default:
		if err := cleanUpRun(); err != nil {
			fmt.Fprintf(os.Stderr, "integration tests FAILED: cleaning up after the run: %v\n", err)
			return 1
		}
	}
	return code
}

var (
	portMu   sync.Mutex
	portsOut = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that this process has not handed out before.
func FreePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("harness: FreePort: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsOut[port] {
			portsOut[port] = true
			return port
		}
	}
	t.Fatalf("harness: FreePort: no new free port after 100 tries")
	return 0
}

// WaitFor calls cond every interval until it returns true, and fails the test
// with cond's last message if that does not happen within timeout. cond is
// called at once, and once more at the deadline.
func WaitFor(t testing.TB, timeout, interval time.Duration, cond func() (ok bool, msg string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness: condition not met within %v: %s", timeout, msg)
		}
		sleep := interval
		if rest := time.Until(deadline); rest < sleep {
			sleep = rest + time.Millisecond
		}
		time.Sleep(sleep)
	}
}

// StopTimeout is how long Process.Stop waits after SIGTERM before SIGKILL.
const StopTimeout = 10 * time.Second

// Process is a child process started by StartProcess.
type Process struct {
	Name string // base name of the binary, for messages

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // cmd.Wait's result; valid after done is closed
	stop sync.Once
}

// StartProcess starts bin with args, with env added to this process's
// environment. Its stdout and stderr go to one buffer (Output), which is
// logged when the test fails. The process is stopped (SIGTERM, then SIGKILL
// after StopTimeout) when the test ends, and killed if the test process dies.
func StartProcess(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	return StartProcessAs(t, nil, bin, env, args...)
}

// StartProcessAs is StartProcess as another user (cred), for tests of what
// an unprivileged agent meets; nil is this process's user.
func StartProcessAs(t testing.TB, cred *syscall.Credential, bin string, env []string, args ...string) *Process {
	t.Helper()
	noteEngineOnFailure(t)
	p := &Process{
		Name: filepath.Base(bin),
		cmd:  exec.Command(bin, args...),
		out:  &syncBuffer{},
		done: make(chan struct{}),
	}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	// Do not hang in Wait if a grandchild keeps the output pipe open.
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("harness: starting %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		err := p.Stop()
		if t.Failed() {
			// The whole output goes to a file: the log shows only its end.
			full := filepath.Join(RunDir(t), fmt.Sprintf("%s-%s-%d.log", strings.ReplaceAll(t.Name(), "/", "_"), p.Name, p.Pid()))
			if werr := os.WriteFile(full, []byte(p.Output()), 0o644); werr != nil {
				full = werr.Error()
			}
			t.Logf("harness: %s (pid %d, %v) output (all of it in %s):\n%s", p.Name, p.Pid(), exitString(err), full, tail(p.Output(), 64<<10))
		}
	})
	return p
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns everything the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its exit code
// (-1 if it was killed by a signal).
func (p *Process) Exited() (code int, exited bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	default:
		return 0, false
	}
}

// Wait waits up to timeout for the process to exit by itself and returns its
// exit code (-1 if killed by a signal); ok is false on timeout.
func (p *Process) Wait(timeout time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// Signal sends sig to the process (nothing if it has exited).
func (p *Process) Signal(sig os.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// Stop sends SIGTERM, waits up to StopTimeout, then sends SIGKILL, and
// returns the process's exit error (nil for exit code 0). Stopping a process
// that has exited only returns its exit error.
func (p *Process) Stop() error {
	p.stop.Do(func() {
		p.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(StopTimeout):
			p.Signal(syscall.SIGKILL)
		}
	})
	<-p.done
	return p.err
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

func exitString(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit code 0"
	case errors.As(err, &ee):
		return ee.ProcessState.String()
	default:
		return err.Error()
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("[... %d bytes cut ...]\n%s", len(s)-n, s[len(s)-n:])
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// BinDirEnv names a directory of prebuilt static binaries, named after the
// package's last element ("agent", "workload"), that BuildStatic returns
// instead of building.
const BinDirEnv = "DOCKSCOPE_TEST_BIN_DIR"
