package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
	"github.com/dockscope/dockscope/bench/internal/promscrape"

	"github.com/dockscope/dockscope/internal/procfs"
)

type scenarioResult struct {
	n, lines int
	// raw[0] is read before the agent runs, raw[1] after them; the ceiling
	// is the faster of the two.
	raw  [2]rawResult
	runs []agentResult // compression none, then gzip
	err  error
}

func (s scenarioResult) ceiling() float64 {
	return max(s.raw[0].linesPerSec, s.raw[1].linesPerSec)
}

type rawResult struct {
	ok          bool
	wall        float64 // seconds
	bytes       int64
	lines       int64 // bytes / frame size
	linesPerSec float64
	dockerdCPU  float64
	curlCPU     float64
	hostBusy    float64 // cores
}

type agentResult struct {
	compression string // "none" or "gzip"; "cmd" for -agent-cmd
	cmd         bool   // an -agent-cmd run: no agent counters, only the sink's count
	incomplete  bool   // -agent-done-after passed before the sink had every record
	ok          bool
	err         error
	wall        float64 // agent start → every record delivered
	firstSent   float64 // agent start → first record delivered
	linesPerSec float64
	agentCPU    float64
	dockerdCPU  float64
	sinkCPU     float64
	hostBusy    float64
	peakRSS     uint64 // max VmRSS sampled
	hwm         uint64 // VmHWM at the end
	maxQueue    float64
	sent        float64 // after a pause at the end
	received    float64
	accepted    float64 // by the sink
	perfReport  string
}

func (b *bench) scenario(ctx context.Context, n int, dockerd int) (scenarioResult, error) {
	res := scenarioResult{n: n, lines: b.o.lines}
	w := workload{
		key:   fmt.Sprintf("%s-c%d-l%d-b%d", b.o.mode, n, b.o.lines, b.o.lineBytes),
		n:     n,
		lines: b.o.lines, lineBytes: b.o.lineBytes, mode: b.o.mode, runID: b.runID,
	}
	b.keys = append(b.keys, w.key)
	progress("=== scenario: %d container(s) × %d lines (%s)", n, b.o.lines, w.key)
	ids, started, err := prepare(ctx, w)
	if err != nil {
		return res, err
	}
	expected := int64(n) * int64(b.o.lines)

	progress("raw API read with curl (before the agent)")
	res.raw[0], err = rawRead(ctx, ids, dockerd, b.o.lineBytes, expected)
	if err != nil {
		return res, err
	}
	if b.o.agentCmd != "" {
		progress("agent command run")
		r, err := b.cmdRun(ctx, w, ids, expected, dockerd)
		if err != nil {
			if ctx.Err() != nil {
				return res, err
			}
			progress("agent command run FAILED: %v", err)
			r.err = err
			b.failed = true
		}
		res.runs = append(res.runs, r)
	}
	for _, comp := range b.compressions() {
		progress("agent run, compression %s, protocol %s", comp, b.o.protocol)
		r, err := b.agentRun(ctx, w, started, expected, comp, dockerd)
		r.compression = comp
		if err != nil {
			if ctx.Err() != nil {
				return res, err
			}
			progress("agent run (%s) FAILED: %v", comp, err)
			r.err = err
			b.failed = true
		}
		res.runs = append(res.runs, r)
	}
	progress("raw API read with curl (after the agent)")
	res.raw[1], err = rawRead(ctx, ids, dockerd, b.o.lineBytes, expected)
	if err != nil {
		return res, err
	}
	if !b.o.keep {
		if err := removeScenario(context.WithoutCancel(ctx), w.key); err != nil {
			progress("removing the containers: %v", err)
		}
	}
	for _, r := range res.runs {
		if r.err != nil && r.cmd {
			return res, fmt.Errorf("agent command run: %w", r.err)
		}
		if r.err != nil {
			return res, fmt.Errorf("agent run with compression %s: %w", r.compression, r.err)
		}
	}
	return res, nil
}

// compressions lists dockscope's runs of a scenario: none and gzip, or
// none with -agent-cmd, which replaces them.
func (b *bench) compressions() []string {
	if b.o.agentCmd != "" {
		return nil
	}
	return []string{"none", "gzip"}
}

// rawRead reads every container's whole log at once, one curl each, the way
// the agent asks for it (both streams, timestamps), and discards it.
func rawRead(ctx context.Context, ids []string, dockerd, lineBytes int, expected int64) (rawResult, error) {
	var r rawResult
	cpu0, err := procfs.CPUSeconds(dockerd)
	if err != nil {
		return r, err
	}
	h0, _ := procfs.ReadHostTicks()
	t0 := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, id := range ids {
		wg.Go(func() {
			url := fmt.Sprintf("http://x/%s/containers/%s/logs?stdout=1&stderr=1&timestamps=1", apiVersion, id)
			cmd := exec.CommandContext(ctx, "curl", "-s", "--fail", "--unix-socket", dockerSock, url, "-o", "/dev/null", "-w", "%{size_download}")
			out, err := cmd.Output()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("curl %s: %w", url, err)
				}
				return
			}
			n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			r.bytes += n
			r.curlCPU += cmd.ProcessState.UserTime().Seconds() + cmd.ProcessState.SystemTime().Seconds()
		})
	}
	wg.Wait()
	took := time.Since(t0)
	if firstErr != nil {
		return r, firstErr
	}
	cpu1, _ := procfs.CPUSeconds(dockerd)
	h1, _ := procfs.ReadHostTicks()
	r.hostBusy = procfs.BusyCores(h0, h1, took)
	r.wall = took.Seconds()
	r.dockerdCPU = cpu1 - cpu0
	// One frame per line: 8-byte header, 30-byte timestamp and a space,
	// the line, its newline.
	frame := int64(8 + 31 + lineBytes + 1)
	r.lines = r.bytes / frame
	if r.bytes != expected*frame {
		progress("WARNING: curl read %d bytes, expected %d (%d lines of %d-byte frames); counting %d lines",
			r.bytes, expected*frame, expected, frame, r.lines)
	}
	r.linesPerSec = float64(r.lines) / r.wall
	r.ok = true
	progress("raw: %d lines in %.2f s = %.0f lines/s; dockerd %.2f CPU-s (%.2f cores), curl %.2f CPU-s, host busy %.2f cores",
		r.lines, r.wall, r.linesPerSec, r.dockerdCPU, r.dockerdCPU/r.wall, r.curlCPU, r.hostBusy)
	return r, nil
}

func freePorts(n int) ([]int, error) {
	ps := make([]int, n)
	for i := range ps {
		p, err := benchenv.FreePort()
		if err != nil {
			return nil, err
		}
		for j := range i {
			if ps[j] == p { // the kernel may hand the same one back
				return freePorts(n)
			}
		}
		ps[i] = p
	}
	return ps, nil
}

// process is a child (agent, sink, perf) that stops with SIGTERM.
type process struct {
	name   string
	cmd    *exec.Cmd
	log    *os.File
	group  bool // signals go to the process group: an -agent-cmd and whatever its sh -c started
	exited chan struct{}
	err    error
}

func startProcess(ctx context.Context, name, logPath string, sig os.Signal, argv ...string) (*process, error) {
	return start(ctx, name, logPath, sig, false, argv)
}

// startGroup starts argv as the leader of a new process group, so that
// stopping it stops its children too.
func startGroup(ctx context.Context, name, logPath string, sig os.Signal, argv ...string) (*process, error) {
	return start(ctx, name, logPath, sig, true, argv)
}

func start(ctx context.Context, name, logPath string, sig os.Signal, group bool, argv []string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	p := &process{name: name, cmd: cmd, log: f, group: group, exited: make(chan struct{})}
	if group {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	cmd.Cancel = func() error { return p.signal(sig) }
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) signal(sig os.Signal) error {
	if p.group {
		return syscall.Kill(-p.pid(), sig.(syscall.Signal))
	}
	return p.cmd.Process.Signal(sig)
}

// stop signals the process and waits for it, killing it after stopTimeout.
func (p *process) stop(sig os.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.signal(sig)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		progress("%s did not stop within %s; killing it", p.name, stopTimeout)
		_ = p.signal(syscall.SIGKILL)
		<-p.exited
	}
}

const sinkConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
exporters:
  debug:
    verbosity: basic
service:
  telemetry:
    logs:
      level: info
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %d
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [debug]
    metrics:
      receivers: [otlp]
      exporters: [debug]
`

const agentConfig = `agent:
  state_dir: %q
%sdiscovery:
  include:
    labels: [%q]
logs:
  # Only lines: the sink's record count is checked against them.
  events: false
exporters:
  otlp:
    endpoint: %s
    protocol: %s
    compression: %s
    interval: 60s
`

// waitReady polls url until it answers 200.
func waitReady(ctx context.Context, url string, p *process, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if _, err := promscrape.Scrape(ctx, url, 2*time.Second); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s within %s", p.name, url, within)
		}
	}
}

const (
	sentKey     = `dockscope_records_sent_total{stage="logs"}`
	receivedKey = `dockscope_records_received_total{stage="logs"}`
	queueKey    = `dockscope_log_queue_bytes`
	acceptedKey = `otelcol_receiver_accepted_log_records`
	refusedKey  = `otelcol_receiver_refused_log_records`
)

// sink is the OpenTelemetry Collector that receives an agent run's records.
type sink struct {
	proc               *process
	grpcPort, httpPort int
	metricsURL         string // its own metrics, with the accepted record count
}

// startSink starts a collector with its configuration in dir and waits
// until it serves its metrics. The caller stops it.
func (b *bench) startSink(ctx context.Context, dir string) (*sink, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	s := &sink{grpcPort: ports[0], httpPort: ports[1], metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[2])}
	cfg := filepath.Join(dir, "sink.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, sinkConfig, s.grpcPort, s.httpPort, ports[2]), 0o644); err != nil {
		return nil, fmt.Errorf("writing the sink configuration: %w", err)
	}
	if s.proc, err = startProcess(ctx, "sink", filepath.Join(dir, "sink.log"), syscall.SIGTERM, b.otelcol, "--config", cfg); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, s.metricsURL, s.proc, 30*time.Second); err != nil {
		s.proc.stop(syscall.SIGTERM)
		return nil, fmt.Errorf("%w\n%s", err, benchenv.Tail(filepath.Join(dir, "sink.log"), 20))
	}
	return s, nil
}

// agentRun starts a sink and a fresh agent and measures until the agent
// has delivered expected records.
func (b *bench) agentRun(ctx context.Context, w workload, started time.Time, expected int64, comp string, dockerd int) (agentResult, error) {
	var r agentResult
	dir := filepath.Join(b.tmp, w.key+"-"+comp)
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return r, err
	}
	if w.mode == "exited" {
		// An empty checkpoint file saved before the containers started:
		// to the agent they ran while it was down, so it reads them.
		seed := fmt.Sprintf(`{"version":2,"saved_at":%q,"containers":{}}`,
			started.Add(-time.Second).UTC().Format(time.RFC3339Nano))
		if err := os.WriteFile(filepath.Join(stateDir, "log-checkpoints.json"), []byte(seed), 0o644); err != nil {
			return r, err
		}
	}
	sk, err := b.startSink(ctx, dir)
	if err != nil {
		return r, err
	}
	defer sk.proc.stop(syscall.SIGTERM)
	sink, sinkURL := sk.proc, sk.metricsURL
	web, err := benchenv.FreePort() // after the sink has bound its ports
	if err != nil {
		return r, err
	}

	endpoint := fmt.Sprintf("http://127.0.0.1:%d", sk.httpPort)
	if b.o.protocol == "grpc" {
		endpoint = fmt.Sprintf("http://127.0.0.1:%d", sk.grpcPort)
	}
	agentCfg := filepath.Join(dir, "agent.yml")
	procs := "" // the agent's default
	if b.o.maxProcs >= 0 {
		procs = fmt.Sprintf("  max_procs: %d\n", b.o.maxProcs)
	}
	cfg := fmt.Appendf(nil, agentConfig, stateDir, procs, logsLabel+"="+w.key, endpoint, b.o.protocol, comp)
	if err := os.WriteFile(agentCfg, cfg, 0o644); err != nil {
		return r, err
	}

	sinkCPU0, err := procfs.CPUSeconds(sink.pid())
	if err != nil {
		return r, err
	}
	dCPU0, err := procfs.CPUSeconds(dockerd)
	if err != nil {
		return r, err
	}
	h0, _ := procfs.ReadHostTicks()
	agentLog := filepath.Join(dir, "agent.log")
	t0 := time.Now()
	agent, err := startProcess(ctx, "agent", agentLog, syscall.SIGTERM, b.agent,
		"--config.file", agentCfg, "--web.listen-address", fmt.Sprintf("127.0.0.1:%d", web))
	if err != nil {
		return r, err
	}
	defer agent.stop(syscall.SIGTERM)
	pid := agent.pid()
	agentURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", web)

	var perf *process
	perfData := ""
	if b.o.perfDir != "" {
		if err := os.MkdirAll(b.o.perfDir, 0o755); err != nil {
			return r, err
		}
		perfData = filepath.Join(b.o.perfDir, fmt.Sprintf("perf-%s-%s.data", w.key, comp))
		perf, err = startProcess(ctx, "perf", filepath.Join(dir, "perf.log"), syscall.SIGINT,
			"perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", perfData)
		if err != nil {
			return r, err
		}
		defer perf.stop(syscall.SIGINT)
	}

	fail := func(format string, args ...any) (agentResult, error) {
		msg := fmt.Sprintf(format, args...)
		return r, fmt.Errorf("%s\nlast agent log lines (%s):\n%s", msg, agentLog, benchenv.Tail(agentLog, 15))
	}

	tick := time.NewTicker(b.o.poll)
	defer tick.Stop()
	var (
		prevT                   = t0
		prevSent                float64
		lastProgress, lastMoved = t0, t0
		done                    bool
		tDone                   time.Time
	)
	for !done {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-agent.exited:
			return fail("the agent exited during the run: %v", agent.err)
		case <-tick.C:
		}
		now := time.Now()
		if rss, _, err := memBytes(pid); err == nil {
			r.peakRSS = max(r.peakRSS, rss)
		}
		m, err := promscrape.Scrape(ctx, agentURL, 2*time.Second)
		if err != nil {
			if now.Sub(t0) > 30*time.Second {
				return fail("scraping the agent: %v", err)
			}
			continue // not listening yet
		}
		sent := m[sentKey]
		r.maxQueue = max(r.maxQueue, m[queueKey])
		if sent > 0 && r.firstSent == 0 {
			r.firstSent = now.Sub(t0).Seconds()
		}
		if sent != prevSent {
			lastMoved = now
		}
		if sent >= float64(expected) {
			// The counter moves a batch at a time: place the moment the
			// last record was delivered between the last two polls.
			tDone = now
			if sent > prevSent {
				frac := (float64(expected) - prevSent) / (sent - prevSent)
				tDone = prevT.Add(time.Duration(frac * float64(now.Sub(prevT))))
			}
			done = true
			if c, err := procfs.CPUSeconds(pid); err == nil {
				r.agentCPU = c
			}
			if c, err := procfs.CPUSeconds(dockerd); err == nil {
				r.dockerdCPU = c - dCPU0
			}
			if c, err := procfs.CPUSeconds(sink.pid()); err == nil {
				r.sinkCPU = c - sinkCPU0
			}
			h1, _ := procfs.ReadHostTicks()
			r.hostBusy = procfs.BusyCores(h0, h1, now.Sub(t0))
			break
		}
		if now.Sub(lastMoved) > b.o.stall {
			return fail("stalled: %.0f of %d records delivered, none for %s (read %.0f, queue %.0f bytes)",
				sent, expected, b.o.stall, m[receivedKey], m[queueKey])
		}
		if now.Sub(lastProgress) >= 2*time.Second {
			lastProgress = now
			c, _ := procfs.CPUSeconds(pid)
			progress("  %s: %.0f/%d delivered (%.0f/s), read %.0f, queue %.1f MiB, RSS %.1f MiB, agent %.1f CPU-s",
				comp, sent, expected, sent/now.Sub(t0).Seconds(), m[receivedKey], m[queueKey]/(1<<20),
				float64(r.peakRSS)/(1<<20), c)
		}
		prevT, prevSent = now, sent
	}

	r.wall = tDone.Sub(t0).Seconds()
	r.linesPerSec = float64(expected) / r.wall
	if perf != nil {
		perf.stop(syscall.SIGINT)
		out, err := exec.CommandContext(ctx, "perf", "report", "--stdio", "--no-children", "--percent-limit", "1",
			"--sort", "dso,symbol", "-g", "none", "-i", perfData).Output()
		if err == nil {
			r.perfReport = perfData + ".txt"
			_ = os.WriteFile(r.perfReport, out, 0o644)
		}
	}
	// A pause, then the final counts: nothing may arrive twice.
	time.Sleep(time.Second)
	if _, hwm, err := memBytes(pid); err == nil {
		r.hwm = hwm
	}
	if m, err := promscrape.Scrape(ctx, agentURL, 2*time.Second); err == nil {
		r.sent, r.received = m[sentKey], m[receivedKey]
	}
	sm, err := promscrape.Scrape(ctx, sinkURL, 2*time.Second)
	if err == nil {
		r.accepted = promscrape.Sum(sm, acceptedKey)
		if ref := promscrape.Sum(sm, refusedKey); ref > 0 {
			progress("WARNING: the sink refused %.0f log records", ref)
		}
	}
	progress("agent (%s): %d lines in %.2f s = %.0f lines/s; agent %.2f CPU-s = %.2f CPU-s/M lines (%.2f cores); "+
		"peak RSS %.1f MiB (VmHWM %.1f); dockerd %.2f CPU-s (%.2f cores); sink %.2f CPU-s (%.2f cores); host busy %.2f cores; "+
		"first record after %.2f s; max queue %.1f MiB",
		comp, expected, r.wall, r.linesPerSec, r.agentCPU, r.agentCPU/(float64(expected)/1e6), r.agentCPU/r.wall,
		float64(r.peakRSS)/(1<<20), float64(r.hwm)/(1<<20), r.dockerdCPU, r.dockerdCPU/r.wall, r.sinkCPU, r.sinkCPU/r.wall,
		r.hostBusy, r.firstSent, r.maxQueue/(1<<20))
	progress("agent (%s): at the end read %.0f, delivered %.0f, sink accepted %.0f (expected %d)",
		comp, r.received, r.sent, r.accepted, expected)
	var problems []string
	if r.sent != float64(expected) || r.received != float64(expected) {
		problems = append(problems, fmt.Sprintf("agent read %.0f and delivered %.0f records, expected %d", r.received, r.sent, expected))
	}
	if r.accepted != float64(expected) {
		problems = append(problems, fmt.Sprintf("the sink accepted %.0f records, expected %d", r.accepted, expected))
	}
	if len(problems) > 0 {
		progress("WARNING: %s", strings.Join(problems, "; "))
		r.err = errors.New(strings.Join(problems, "; "))
	}
	if r.sinkCPU/r.wall > 0.8 {
		progress("WARNING: the sink used %.2f cores: it may be what limits the rate", r.sinkCPU/r.wall)
	}
	r.ok = true
	return r, r.err
}
