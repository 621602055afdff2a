//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// logsConfig points the agent's OTLP exporter (logs and metrics) at the
// test collector over OTLP/HTTP, with small batches.
func logsConfig(col *harness.Collector, batch int) string {
	return logsConfigProto(col, batch, "http/protobuf")
}

// logsConfigProto is logsConfig over the given protocol.
func logsConfigProto(col *harness.Collector, batch int, protocol string) string {
	endpoint := col.HTTPEndpoint
	if protocol == "grpc" {
		endpoint = "http://" + col.GRPCEndpoint
	}
	return logsConfigTo(endpoint, protocol, batch)
}

// logsConfigTo points the agent's OTLP exporter at any endpoint.
func logsConfigTo(endpoint, protocol string, batch int) string {
	return fmt.Sprintf(`exporters:
  otlp:
    endpoint: %s
    protocol: %s
    interval: 60s
    retry:
      initial_interval: 200ms
      max_interval: 1s
logs:
  batch:
    max_records: %d
    timeout: 200ms
`, endpoint, protocol, batch)
}

// startLogAgent starts an agent shipping logs to col, keeping its
// checkpoints in stateDir (so a test can restart it on the same state).
func startLogAgent(t *testing.T, col *harness.Collector, scope, stateDir string, batch int) *agent {
	t.Helper()
	return startAgent(t, agentOpts{scope: scope, extra: logsConfig(col, batch), stateDir: stateDir})
}

// restartAgent starts a stopped agent again with the same configuration.
func restartAgent(t *testing.T, old *agent) *agent {
	t.Helper()
	bin := harness.BuildStatic(t, "./cmd/agent")
	addr := strings.TrimPrefix(old.url, "http://")
	// The same Engine as before: the first agent's DOCKER_HOST.
	p := harness.StartProcess(t, bin, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=", "DOCKER_HOST=" + harness.DockerHost()},
		"--config.file", old.cfgPath, "--web.listen-address", addr, "--log.level", "debug")
	a := &agent{proc: p, url: old.url, cfgPath: old.cfgPath}
	harness.WaitFor(t, 20*time.Second, 100*time.Millisecond, func() (bool, string) {
		code, body := a.get("/readyz")
		return code == 200, fmt.Sprintf("/readyz: %d %s", code, body)
	})
	return a
}

// shipped returns the bodies the collector received for a container, in
// arrival order, with their streams.
type shippedLine struct {
	body, stream string
	truncated    bool
}

func shipped(t *testing.T, col *harness.Collector, container string) []shippedLine {
	t.Helper()
	var out []shippedLine
	for _, r := range col.LogRecords(t) {
		if r.Resource.Str("container.name") != container || r.EventName != "" {
			continue // another container's, or a lifecycle event
		}
		out = append(out, shippedLine{body: r.BodyString(), stream: r.Attrs.Str("log.iostream"), truncated: r.Attrs.Has("log.truncated")})
	}
	return out
}

// waitShipped waits until at least n records of the container arrived.
func waitShipped(t *testing.T, col *harness.Collector, container string, n int, timeout time.Duration) []shippedLine {
	t.Helper()
	var got []shippedLine
	harness.WaitFor(t, timeout, 500*time.Millisecond, func() (bool, string) {
		got = shipped(t, col, container)
		return len(got) >= n, fmt.Sprintf("%s: %d of %d records shipped", container, len(got), n)
	})
	return got
}

// checkNumbered checks that lines 1..n of the workload's `log` output each
// arrived exactly once (beyond maxDup duplicated lines), on the right
// stream when stderrEvery > 0.
func checkNumbered(t *testing.T, container string, got []shippedLine, n, stderrEvery, maxDup int) {
	t.Helper()
	c := newLineCount(container, stderrEvery)
	for _, l := range got {
		c.add(t, l.body, l.stream)
	}
	c.check(t, n, maxDup)
}

// lineCount counts how often each numbered line of one container's `log`
// output arrived.
type lineCount struct {
	container   string
	stderrEvery int
	seen        map[int]int
}

func newLineCount(container string, stderrEvery int) *lineCount {
	return &lineCount{container: container, stderrEvery: stderrEvery, seen: map[int]int{}}
}

// add counts one record; anything but a numbered line on its stream fails.
func (c *lineCount) add(t *testing.T, body, stream string) {
	t.Helper()
	f := strings.Fields(body)
	if len(f) < 2 || f[0] != "line" {
		t.Fatalf("%s: unexpected record %q", c.container, body)
	}
	i, err := strconv.Atoi(f[1])
	if err != nil || i < 1 {
		t.Fatalf("%s: unexpected record %q", c.container, body)
	}
	wantStream := "stdout"
	if c.stderrEvery > 0 && i%c.stderrEvery == 0 {
		wantStream = "stderr"
	}
	if stream != wantStream {
		t.Fatalf("%s: line %d on %s, want %s", c.container, i, stream, wantStream)
	}
	c.seen[i]++
}

// check fails unless lines 1..n each arrived, none beyond n, and at most
// maxDup repeated; it returns how many repeated.
func (c *lineCount) check(t *testing.T, n, maxDup int) int {
	t.Helper()
	dups, err := c.verify(n, maxDup)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d lines, none lost, %d duplicated", c.container, n, dups)
	return dups
}

// verify is check without the test: it says what is wrong, if anything.
func (c *lineCount) verify(n, maxDup int) (dups int, err error) {
	missing := 0
	var ranges []string // the first missing runs, to tell a lost batch from scattered loss
	for i := 1; i <= n; i++ {
		switch k := c.seen[i]; {
		case k == 0:
			missing++
			if c.seen[i-1] != 0 || i == 1 {
				j := i
				for j < n && c.seen[j+1] == 0 {
					j++
				}
				if len(ranges) < 10 {
					ranges = append(ranges, fmt.Sprintf("%d-%d", i, j))
				}
			}
		case k > 1:
			dups += k - 1
		}
	}
	for i := range c.seen {
		if i > n {
			return dups, fmt.Errorf("%s: line %d arrived, but the container wrote %d lines", c.container, i, n)
		}
	}
	if missing > 0 || dups > maxDup {
		return dups, fmt.Errorf("%s: %d of %d lines missing (%v), %d duplicated (at most %d allowed)", c.container, missing, n, ranges, dups, maxDup)
	}
	return dups, nil
}

// lineCounts follows a collector's output incrementally and counts every
// container's numbered lines: for tests shipping far more lines than
// re-reading the whole output at each poll would allow.
type lineCounts struct {
	tail        *harness.LogTail
	stderrEvery int
	by          map[string]*lineCount
	events      map[string][]string // lifecycle events' names by container
}

func newLineCounts(col *harness.Collector, stderrEvery int) *lineCounts {
	return &lineCounts{tail: col.Tail(), stderrEvery: stderrEvery, by: map[string]*lineCount{}, events: map[string][]string{}}
}

// poll counts the records that arrived since the last poll.
func (lc *lineCounts) poll(t *testing.T) {
	t.Helper()
	for _, r := range lc.tail.Next(t) {
		name := r.Resource.Str("container.name")
		if r.EventName != "" {
			lc.events[name] = append(lc.events[name], r.EventName)
			continue
		}
		c := lc.by[name]
		if c == nil {
			c = newLineCount(name, lc.stderrEvery)
			lc.by[name] = c
		}
		c.add(t, r.BodyString(), r.Attrs.Str("log.iostream"))
	}
}

// get returns a container's count, empty if nothing arrived.
func (lc *lineCounts) get(name string) *lineCount {
	if c := lc.by[name]; c != nil {
		return c
	}
	return newLineCount(name, lc.stderrEvery)
}

// unique is how many distinct lines arrived.
func (c *lineCount) unique() int { return len(c.seen) }

// wait polls until n distinct lines of every named container arrived.
func (lc *lineCounts) wait(t *testing.T, names []string, n int, timeout time.Duration) {
	t.Helper()
	harness.WaitFor(t, timeout, 500*time.Millisecond, func() (bool, string) {
		lc.poll(t)
		for _, name := range names {
			if got := lc.get(name).unique(); got < n {
				return false, fmt.Sprintf("%s: %d of %d lines shipped", name, got, n)
			}
		}
		return true, ""
	})
}

func TestLogsEveryLineOnceFromTenContainers(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "logs-many"
	// Over gRPC (with gzip, the default); the other tests use HTTP.
	startAgent(t, agentOpts{scope: scope, extra: logsConfigProto(col, 2048, "grpc")})
	const containers, lines, stderrEvery = 10, 10000, 3
	names := make([]string, containers)
	for i := range names {
		names[i] = uniq(t, fmt.Sprintf("many%d", i))
		harness.RunContainer(t, append(scopeArgs(scope, names[i]), harness.WorkloadImage(t),
			"log", "-lines", strconv.Itoa(lines), "-stderr-every", strconv.Itoa(stderrEvery), "-line-bytes", "70", "-then", "exit")...)
	}
	var wg sync.WaitGroup
	for _, name := range names {
		got := waitShipped(t, col, name, lines, 90*time.Second)
		wg.Go(func() { checkNumbered(t, name, got, lines, stderrEvery, 0) })
	}
	wg.Wait()
	// The Resource is the metrics' one.
	for _, r := range col.LogRecords(t) {
		if r.Resource.Str("container.name") == names[0] {
			if !r.Resource.Has("container.id") || r.Resource.Str("container.image.name") != harness.ImageRef("dockscope-workload") || !r.Resource.Has("host.name") {
				t.Fatalf("log resource lacks container identity: %v", r.Resource)
			}
			if r.Time.IsZero() || r.ObservedTime.IsZero() {
				t.Fatalf("record without timestamps: %+v", r.LogRecord)
			}
			break
		}
	}
}

func TestLogsLongLineTTYAndShortLived(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "logs-shapes"
	startLogAgent(t, col, scope, "", 512)

	long := uniq(t, "long")
	harness.RunContainer(t, append(scopeArgs(scope, long), harness.WorkloadImage(t), "log", "-lines", "3", "-line-bytes", "102400", "-then", "exit")...)
	tty := uniq(t, "tty")
	// Podman stores a TTY's output in pieces as conmon reads them from the
	// terminal (anywhere in a line, a few KiB at most), not cut at Docker's
	// 16 KiB, and its API puts a timestamp before each piece of the raw
	// stream: where a line was cut cannot be told there, so its lines carry
	// timestamps inside. The TTY part is Docker's only.
	ttyOn := !harness.IsPodman()
	if ttyOn {
		harness.RunContainer(t, append(scopeArgs(scope, tty), "-t", harness.WorkloadImage(t), "log", "-lines", "50", "-line-bytes", "20000", "-then", "exit")...)
	} else {
		t.Log("TTY part skipped on Podman: its TTY log stream has a timestamp wherever conmon's read cut a line")
	}
	short := uniq(t, "short")
	started := time.Now()
	harness.RunContainer(t, append(scopeArgs(scope, short), harness.WorkloadImage(t), "log", "-lines", "1000", "-stderr-every", "2", "-then", "exit")...)
	t.Logf("short-lived container ran for %v including docker run", time.Since(started))

	got := waitShipped(t, col, long, 3, 30*time.Second)
	for i, l := range got {
		if len(l.body) != 102400 || l.truncated || !strings.HasPrefix(l.body, fmt.Sprintf("line %d ", i+1)) {
			t.Fatalf("100 KiB line %d arrived as %d bytes (truncated %v): %.30q", i+1, len(l.body), l.truncated, l.body)
		}
	}
	if len(got) != 3 {
		t.Fatalf("100 KiB lines arrived as %d records, want 3", len(got))
	}

	if ttyOn {
		ttyGot := waitShipped(t, col, tty, 50, 30*time.Second)
		for _, l := range ttyGot {
			if len(l.body) != 20000 || strings.ContainsAny(l.body, "\r\n") || l.stream != "stdout" {
				t.Fatalf("TTY line: %d bytes, stream %s, CR/LF %v", len(l.body), l.stream, strings.ContainsAny(l.body, "\r\n"))
			}
		}
		checkNumbered(t, tty, ttyGot, 50, 0, 0)
	}

	checkNumbered(t, short, waitShipped(t, col, short, 1000, 30*time.Second), 1000, 2, 0)

	// A stopped container's last line without a newline is still a line.
	noNL := uniq(t, "nonl")
	harness.RunContainer(t, append(scopeArgs(scope, noNL), harness.WorkloadImage(t), "log", "-lines", "5", "-no-final-newline", "-then", "exit")...)
	checkNumbered(t, noNL, waitShipped(t, col, noNL, 5, 30*time.Second), 5, 0, 0)
}

func TestLogsTruncateOverMaxLineBytes(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "logs-trunc"
	startAgent(t, agentOpts{scope: scope, extra: logsConfig(col, 100) + "  max_line_bytes: 10000\n"})
	name := uniq(t, "trunc")
	harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t), "log", "-lines", "3", "-line-bytes", "40000", "-then", "exit")...)
	got := waitShipped(t, col, name, 3, 30*time.Second)
	time.Sleep(time.Second) // a phantom record from the remainder would arrive now
	got = shipped(t, col, name)
	if len(got) != 3 {
		t.Fatalf("%d records for 3 long lines; the cut remainder must not start records", len(got))
	}
	for i, l := range got {
		if len(l.body) != 10000 || !l.truncated || !strings.HasPrefix(l.body, fmt.Sprintf("line %d ", i+1)) {
			t.Fatalf("line %d: %d bytes, truncated=%v", i+1, len(l.body), l.truncated)
		}
	}
}

func TestLogsSurviveAgentSIGKILLAndDowntime(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "logs-kill"
	stateDir := filepath.Join(t.TempDir(), "state")
	const batch = 200
	a := startLogAgent(t, col, scope, stateDir, batch)

	// A steady writer, killed-agent in the middle of it.
	steady := uniq(t, "steady")
	const lines = 6000
	harness.RunContainer(t, append(scopeArgs(scope, steady), harness.WorkloadImage(t),
		"log", "-lines", strconv.Itoa(lines), "-rate", "1500", "-stderr-every", "5", "-then", "sleep")...)
	waitShipped(t, col, steady, 1000, 30*time.Second)
	a.proc.Kill()

	// While no agent runs, a container prints and exits: read stopped
	// (Podman 4.3's follow read of such a log returned a fifth of it).
	whileDown := uniq(t, "down")
	const downLines = 10000
	harness.RunContainer(t, append(scopeArgs(scope, whileDown), harness.WorkloadImage(t),
		"log", "-lines", strconv.Itoa(downLines), "-stderr-every", "3", "-then", "exit")...)
	harness.WaitFor(t, 20*time.Second, 200*time.Millisecond, func() (bool, string) {
		state := harness.Docker(t, "inspect", "-f", "{{.State.Status}}", whileDown)
		return state == "exited", "container state " + state
	})
	time.Sleep(time.Second)

	a = restartAgent(t, a)
	checkNumbered(t, steady, waitShipped(t, col, steady, lines, 60*time.Second), lines, 5, batch)
	checkNumbered(t, whileDown, waitShipped(t, col, whileDown, downLines, 30*time.Second), downLines, 3, 0)

	// A clean stop and start repeats nothing.
	before := len(shipped(t, col, steady))
	if err := a.proc.Stop(); err != nil {
		t.Fatalf("agent stop: %v", err)
	}
	restartAgent(t, a)
	time.Sleep(3 * time.Second)
	if after := len(shipped(t, col, steady)); after != before {
		t.Fatalf("a clean restart shipped %d records again", after-before)
	}
}

func TestLogsBackendDownThenUp(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "logs-backend"
	a := startLogAgent(t, col, scope, "", 500)
	name := uniq(t, "backend")
	const lines = 60000 // 2,000 lines/s for 30 s
	harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t),
		"log", "-lines", strconv.Itoa(lines), "-rate", "2000", "-line-bytes", "100", "-then", "sleep")...)
	waitShipped(t, col, name, 500, 30*time.Second)

	if err := col.Stop(); err != nil {
		t.Logf("collector stop: %v", err)
	}
	var peakRSS int64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		peakRSS = max(peakRSS, rssOf(t, a.proc.Pid()))
		time.Sleep(time.Second)
	}
	col.Start(t)
	// Wait for everything, then say exactly what is missing if not.
	for end := time.Now().Add(90 * time.Second); time.Now().Before(end) && len(shipped(t, col, name)) < lines; {
		time.Sleep(time.Second)
	}
	// A request in flight when the collector went down may have been
	// written by it and still be retried: at most that one batch repeats.
	checkNumbered(t, name, shipped(t, col, name), lines, 0, 500)
	// The default 64 MiB buffer holds these 30 s of logs entirely; what is
	// checked is that memory stays bounded while the backend is away.
	if limit := int64(64+40) << 20; peakRSS > limit {
		t.Fatalf("agent RSS reached %d MiB while the backend was down, want under %d MiB", peakRSS>>20, limit>>20)
	}
	t.Logf("agent peak RSS while the backend was down: %d MiB", peakRSS>>20)
}

// rssOf reads a process's resident set size.
func rssOf(t *testing.T, pid int) int64 {
	return procStatus(pid, "VmRSS") << 10
}

// procStatus reads a number of /proc/<pid>/status (memory is in KiB); 0 if
// it cannot.
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.ParseInt(f[0], 10, 64)
			return n
		}
	}
	return 0
}

func TestLogsOptOutUnreadableDriverAndBinary(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "logs-optout"
	a := startLogAgent(t, col, scope, "", 100)

	optOut := uniq(t, "nologs")
	harness.RunContainer(t, append(scopeArgs(scope, optOut), "--label", "dockscope.logs=false", harness.WorkloadImage(t), "log", "-lines", "10")...)
	none := uniq(t, "drivernone")
	harness.RunContainer(t, append(scopeArgs(scope, none), "--log-driver", "none", harness.WorkloadImage(t), "log", "-lines", "10")...)
	// json-file (the default driver) itself replaces invalid UTF-8 with
	// U+FFFD when it stores a line; the local driver keeps the bytes, and
	// then they must reach the backend unchanged (as an OTLP bytes body).
	jsonFile, local := uniq(t, "binjson"), uniq(t, "binlocal")
	harness.RunContainer(t, append(scopeArgs(scope, jsonFile), harness.WorkloadImage(t), "log", "-lines", "20", "-binary-every", "4")...)
	cases := []struct{ name, tail string }{
		{jsonFile, "\uFFFD\uFFFD\x00\x1b"},
		{local, "\xff\xfe\x00\x1b"},
	}
	if harness.IsPodman() {
		// Podman has no local driver; its default, k8s-file, keeps the
		// bytes as they are.
		cases = cases[:1]
		cases[0].tail = "\xff\xfe\x00\x1b"
	} else {
		harness.RunContainer(t, append(scopeArgs(scope, local), "--log-driver", "local", harness.WorkloadImage(t), "log", "-lines", "20", "-binary-every", "4")...)
	}
	for _, tc := range cases {
		got := waitShipped(t, col, tc.name, 20, 30*time.Second)
		for i, l := range got {
			want := fmt.Sprintf("line %d", i+1)
			if (i+1)%4 == 0 {
				want += tc.tail
			}
			if l.body != want {
				t.Fatalf("%s: record %d = %q, want %q", tc.name, i+1, l.body, want)
			}
		}
	}
	// Opted-out containers are still followed for metrics, but ship nothing.
	a.waitValue(t, 10*time.Second, "container_info", optOut, nil, func(float64) bool { return true })
	time.Sleep(2 * time.Second)
	if n := len(shipped(t, col, optOut)); n != 0 {
		t.Errorf("dockscope.logs=false container shipped %d records", n)
	}
	if n := len(shipped(t, col, none)); n != 0 {
		t.Errorf("log driver none shipped %d records", n)
	}
	if c := strings.Count(a.proc.Output(), "log driver cannot be read"); c != 1 {
		t.Errorf("the unreadable log driver was reported %d times, want once", c)
	}
	if s, ok := a.scrape(t).Find("dockscope_logs_unreadable_total", nil); !ok || s.Value != 1 {
		t.Errorf("dockscope_logs_unreadable_total = %v", s.Value)
	}
}

func TestLogsSurviveStreamCuts(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "logs-cut"
	sock := filepath.Join(t.TempDir(), "docker.sock")
	proxy := startSocketProxy(t, sock, harness.DockerSocket(t))
	a := startAgent(t, agentOpts{scope: scope, extra: logsConfig(col, 300) + "docker:\n  max_backoff: 1s\n",
		env: []string{"DOCKER_HOST=unix://" + sock}})
	name := uniq(t, "cut")
	const lines = 15000
	harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t),
		"log", "-lines", strconv.Itoa(lines), "-rate", "3000", "-stderr-every", "7", "-then", "sleep")...)
	for cut := range 2 {
		waitShipped(t, col, name, 3000*(cut+1), 30*time.Second)
		proxy.close() // every stream to the daemon breaks mid-line
		time.Sleep(time.Second)
		proxy = startSocketProxy(t, sock, harness.DockerSocket(t))
	}
	checkNumbered(t, name, waitShipped(t, col, name, lines, 60*time.Second), lines, 7, 0)
	if s, ok := a.scrape(t).Find("dockscope_log_stream_reconnects_total", nil); !ok || s.Value < 1 {
		t.Errorf("dockscope_log_stream_reconnects_total = %v after two cuts", s.Value)
	}
}

func TestLogsGapWhenDockerRotatedAwayWhileDown(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "logs-gap"
	stateDir := filepath.Join(t.TempDir(), "state")
	a := startLogAgent(t, col, scope, stateDir, 200)
	name := uniq(t, "rotate")
	const lines = 24000
	// Docker keeps at most ~2 × 64 KiB of this container's log.
	harness.RunContainer(t, append(scopeArgs(scope, name), "--log-opt", "max-size=64k", "--log-opt", "max-file=2",
		harness.WorkloadImage(t), "log", "-lines", strconv.Itoa(lines), "-rate", "3000", "-line-bytes", "70", "-then", "sleep")...)
	waitShipped(t, col, name, 500, 30*time.Second)
	a.proc.Kill()
	time.Sleep(4 * time.Second) // ~12,000 lines, far more than Docker keeps
	a = restartAgent(t, a)

	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		s, ok := a.scrape(t).Find("dockscope_log_gaps_total", nil)
		return ok && s.Value >= 1, fmt.Sprintf("dockscope_log_gaps_total = %v", s.Value)
	})
	if !strings.Contains(a.proc.Output(), "log gap") {
		t.Error("the gap was not logged")
	}
	// After the gap, shipping goes on to the last line.
	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		got := shipped(t, col, name)
		return len(got) > 0 && strings.HasPrefix(got[len(got)-1].body, fmt.Sprintf("line %d ", lines)), "last line not shipped yet"
	})
}

// TestLogsEveryLineOnceWhenContainerExitsWhileReadBehind: a container
// exits while its log is followed and the agent reads far behind it (the
// backend is away, the buffer small, so the reader waits). Podman 4.3 then
// ended the follow stream without the run's last ~1,800 lines; the agent
// reads the rest without follow, from the last record read.
func TestLogsEveryLineOnceWhenContainerExitsWhileReadBehind(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "logs-behind"
	if err := col.Stop(); err != nil {
		t.Logf("collector stop: %v", err)
	}
	const batch = 500
	a := startAgent(t, agentOpts{scope: scope, extra: logsConfig(col, batch) + "  max_line_bytes: 65536\n  buffer_bytes: 131072\n"})
	name := uniq(t, "behind")
	const lines, stderrEvery = 10000, 4
	harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t),
		"log", "-lines", strconv.Itoa(lines), "-rate", "5000", "-stderr-every", strconv.Itoa(stderrEvery), "-line-bytes", "70", "-then", "exit")...)
	harness.WaitFor(t, 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		state := harness.Docker(t, "inspect", "-f", "{{.State.Status}}", name)
		return state == "exited", "container state " + state
	})
	time.Sleep(2 * time.Second) // the follow stream ends meanwhile, the reader still behind
	// 10,000 lines of ~100 bytes: the reader cannot have got far.
	if s, ok := a.scrape(t).Find("dockscope_log_queue_bytes", nil); !ok || s.Value < 64<<10 {
		t.Fatalf("dockscope_log_queue_bytes = %v with the backend away: the reader was not held up", s.Value)
	}
	col.Start(t)
	checkNumbered(t, name, waitShipped(t, col, name, lines, 60*time.Second), lines, stderrEvery, 0)
	time.Sleep(time.Second) // a repeated record would arrive now
	checkNumbered(t, name, shipped(t, col, name), lines, stderrEvery, 0)
}
