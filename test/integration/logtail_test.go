//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// countingProxy forwards a unix socket to the Docker socket and counts the
// logs requests that pass through it (the agent's own connections and the
// Docker client's pooled ones alike).
type countingProxy struct {
	ln   net.Listener
	logs atomic.Int64
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   []net.Conn
}

func startCountingProxy(t *testing.T, path, target string) *countingProxy {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.cs = append(p.cs, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { io.Copy(up, &logsCounter{r: c, n: &p.logs}); up.Close() })
			p.wg.Go(func() { io.Copy(c, up); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.cs {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// logsCounter counts request lines "GET /v1.xx/containers/<id>/logs?" in
// what the client sends.
type logsCounter struct {
	r    io.Reader
	n    *atomic.Int64
	tail []byte // the end of the last read, for a request line cut across reads
}

func (l *logsCounter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	buf := append(l.tail, p[:n]...)
	last := 0
	for {
		i := bytes.Index(buf[last:], []byte("/logs?"))
		if i < 0 {
			break
		}
		start := bytes.LastIndex(buf[:last+i], []byte("GET /"))
		if start >= 0 && !bytes.Contains(buf[start:last+i], []byte("\n")) {
			l.n.Add(1)
		}
		last += i + len("/logs?")
	}
	keep := max(0, len(buf)-256, last)
	l.tail = append(l.tail[:0], buf[keep:]...)
	return n, err
}

// dockerdCPU is dockerd's user+system CPU time so far, in seconds.
func dockerdCPU(t *testing.T) float64 {
	t.Helper()
	pid, err := os.ReadFile("/var/run/docker.pid")
	if err != nil {
		t.Skipf("dockerd's pid: %v", err)
	}
	stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/stat")
	if err != nil {
		t.Skipf("dockerd's CPU time: %v", err)
	}
	// Fields after the command (which may hold spaces): utime is the
	// 14th field of the line, stime the 15th.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// TestLogTailCrashLoopCostsDockerdLittle follows a container that exits at
// once under `--restart always` for a minute: every follow stream ends at
// once (the container is in its restart backoff or already gone), which
// made the agent reopen it in a loop (42 dockerd CPU-seconds a minute).
// Now the agent waits for each run: under 100 logs requests and under one
// dockerd CPU-second in the minute, and the reopens counted.
//
// A crash loop costs dockerd CPU of its own (each restart), and dockerd
// may be shared: the agent's share is dockerd's CPU in the minute after a
// followed container was created, less its CPU in the minute after an
// identical container nobody follows was created just before, with the
// agent running in both. A pair whose baseline says dockerd was busy with
// other work is measured again.
func TestLogTailCrashLoopCostsDockerdLittle(t *testing.T) {
	col := harness.Otelcol(t)
	scope := "logtail-crashloop"
	sock := filepath.Join(t.TempDir(), "docker.sock")
	proxy := startCountingProxy(t, sock, "/var/run/docker.sock")
	a := startAgent(t, agentOpts{scope: scope, extra: logsConfig(col, 100), env: []string{"DOCKER_HOST=unix://" + sock}})
	crashLoop := func(scope, name string) string {
		return harness.RunContainer(t, append(scopeArgs(scope, name), "--restart", "always", harness.WorkloadImage(t),
			"log", "-lines", "1", "-then", "exit")...)
	}
	const window = 60 * time.Second
	// An unfollowed crash loop costs dockerd about 0.6 CPU-seconds in its
	// first minute here; much more means other work.
	const busy = 1.5

	for attempt := 1; ; attempt++ {
		cpu0 := dockerdCPU(t)
		unfollowed := crashLoop("logtail-nobody", uniq(t, "crashloop-alone"))
		time.Sleep(window)
		baseline := dockerdCPU(t) - cpu0
		harness.Docker(t, "rm", "-f", unfollowed)

		cpu0, reqs0, reopens0 := dockerdCPU(t), proxy.logs.Load(), reopens(t, a)
		name := uniq(t, "crashloop")
		id := crashLoop(scope, name)
		time.Sleep(window)
		followed, reqs := dockerdCPU(t)-cpu0, proxy.logs.Load()-reqs0
		restarts := harness.Docker(t, "inspect", "-f", "{{.RestartCount}}", name)
		reopened := reopens(t, a) - reopens0
		shippedRuns := len(shipped(t, col, name))
		harness.Docker(t, "rm", "-f", id)
		cost := followed - baseline
		t.Logf("attempt %d: crash-looping container (%s restarts) followed for %s: %d logs requests, %v counted in dockscope_log_stream_reopens_total, %d runs' lines shipped; dockerd %.2f CPU-seconds, %.2f in the same minute of an unfollowed one: %.2f for following",
			attempt, restarts, window, reqs, reopened, shippedRuns, followed, baseline, cost)
		if (baseline > busy || cost < -0.3) && attempt < 3 {
			t.Logf("dockerd was busy with other work (baseline %.2f CPU-seconds): measuring again", baseline)
			continue
		}
		if reqs >= 100 {
			t.Errorf("%d logs requests in a minute for one crash-looping container, want fewer than 100", reqs)
		}
		if baseline > busy || cost < -0.3 {
			t.Logf("dockerd stayed busy with other work: its CPU says nothing about the agent; the request count stands for it")
		} else if cost >= 1 {
			t.Errorf("following the crash loop cost dockerd %.2f CPU-seconds in a minute, want under 1", cost)
		}
		if reopened <= 0 {
			t.Errorf("dockscope_log_stream_reopens_total rose by %v, want > 0", reopened)
		}
		if shippedRuns < 2 {
			t.Errorf("%d records shipped for %s restarts", shippedRuns, restarts)
		}
		return
	}
}

func reopens(t *testing.T, a *agent) float64 {
	t.Helper()
	s, _ := a.scrape(t).Find("dockscope_log_stream_reopens_total", nil)
	return s.Value
}

// TestLogTailUnacknowledgedJobsAreReadAfterSIGKILL runs 20 short jobs while
// the backend refuses every log export, SIGKILLs the agent once it has read
// them all, and starts it again with the backend back: every job's lines
// arrive, each exactly once. The jobs had exited and nothing of theirs was
// acknowledged: before, the next agent took them for containers that
// exited before it watched, and skipped them.
func TestLogTailUnacknowledgedJobsAreReadAfterSIGKILL(t *testing.T) {
	col := harness.Otelcol(t)
	b := newFaultyBackend()
	b.set(refuseNoDelay)
	endpoint := startHTTPFaultProxy(t, col, b)
	scope := "logtail-jobs"
	stateDir := filepath.Join(t.TempDir(), "state")
	a := startAgent(t, agentOpts{scope: scope, extra: logsConfigTo(endpoint, "http/protobuf", 100), stateDir: stateDir})

	const jobs, lines = 20, 50
	names := make([]string, jobs)
	for i := range names {
		names[i] = uniq(t, fmt.Sprint("job", i))
		harness.RunContainer(t, append(scopeArgs(scope, names[i]), harness.WorkloadImage(t),
			"log", "-lines", strconv.Itoa(lines), "-then", "exit")...)
	}
	harness.WaitFor(t, 60*time.Second, 500*time.Millisecond, func() (bool, string) {
		read := 0.0
		for _, n := range names {
			v, _ := a.value(t, "dockscope_container_log_lines_total", n, map[string]string{"outcome": "read"})
			read += v
		}
		return read >= jobs*lines, fmt.Sprintf("%v of %d lines read", read, jobs*lines)
	})
	for _, n := range names {
		if s := harness.Docker(t, "inspect", "-f", "{{.State.Status}}", n); s != "exited" {
			t.Fatalf("job %s is %s", n, s)
		}
	}
	if len(b.attemptsUnder(refuseNoDelay)) == 0 {
		t.Fatal("the agent never tried to export: the test proves nothing")
	}
	a.proc.Kill()
	for _, n := range names {
		if got := shipped(t, col, n); len(got) != 0 {
			t.Fatalf("%s: %d lines delivered before the kill", n, len(got))
		}
	}

	b.set(passThrough)
	restartAgent(t, a)
	for _, n := range names {
		checkNumbered(t, n, waitShipped(t, col, n, lines, 60*time.Second), lines, 0, 0)
	}
}
