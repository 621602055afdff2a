package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
	"github.com/dockscope/dockscope/bench/internal/promscrape"
)

// soak holds what lives for the whole run.
type soak struct {
	o        *options
	log      *slog.Logger
	runID    string
	tmp      string
	eng      *engine
	agentBin string
	otelcol  string
	image    bool // the image was built: close removes it
	keepTmp  bool

	mu       sync.Mutex // guards the fields below, written by the churn and outage loops
	expected map[string]int
	churn    churnStats
	outages  []outage
	lifetime map[string]lifetime // of each short-lived container, to explain a loss
}

// lifetime is when a short-lived container was started, exited and was
// removed, from the soak's start.
type lifetime struct{ started, exited, removed time.Duration }

type churnStats struct {
	started, skipped, removed int
	failed                    []string // containers that did not start or exit cleanly
}

// newSoak builds the binaries, the image and finds the collector. On error
// the returned soak (if any) still needs close.
func newSoak(ctx context.Context, o *options, log *slog.Logger) (*soak, error) {
	root, err := benchenv.ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "dockscope-soak-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary directory: %w", err)
	}
	s := &soak{o: o, log: log, runID: benchenv.NewRunID(), tmp: tmp, expected: map[string]int{}, lifetime: map[string]lifetime{}}
	log.Info("soak run", "run", s.runID, "tmp", tmp, "duration", o.duration)
	if s.eng, err = newEngine(s.runID); err != nil {
		return s, err
	}
	s.agentBin = o.agentBin
	if s.agentBin == "" {
		s.agentBin = filepath.Join(tmp, "dockscope")
		log.Info("building dockscope")
		if err := benchenv.GoBuild(ctx, root, "./cmd/agent", s.agentBin); err != nil {
			return s, err
		}
	}
	workload := filepath.Join(tmp, "workload")
	log.Info("building the workload image", "image", s.eng.image)
	if err := benchenv.GoBuild(ctx, root, "./test/workload", workload); err != nil {
		return s, err
	}
	if err := benchenv.BuildWorkloadImage(ctx, s.eng.cli, s.eng.image, soakLabel, workload); err != nil {
		return s, err
	}
	s.image = true
	log.Info("building (or finding) the OpenTelemetry Collector")
	cmd := exec.CommandContext(ctx, "sh", filepath.Join(root, "test/otelcol/build.sh"), "--cache")
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return s, fmt.Errorf("building the collector with test/otelcol/build.sh --cache: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	s.otelcol = strings.TrimSpace(lines[len(lines)-1])
	if _, err := os.Stat(s.otelcol); err != nil {
		return s, fmt.Errorf("finding the collector binary: %w", err)
	}
	return s, nil
}

// close removes what the run created: its containers, its image and the
// temporary directory (kept with -keep or after a failure). It runs on a
// fresh context: the run's may have been cancelled by a signal.
func (s *soak) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if s.eng != nil {
		n, err := s.eng.removeOwn(ctx)
		if err != nil {
			s.log.Error("removing the soak's containers", "err", err)
		} else if n > 0 {
			s.log.Info("removed the soak's containers", "containers", n)
		}
		if s.image {
			if err := s.eng.removeImage(ctx); err != nil {
				s.log.Warn("removing the image", "err", err)
			}
		}
	}
	if s.o.keep || s.keepTmp {
		s.log.Info("kept the working directory (agent and collector logs, collector output)", "dir", s.tmp)
	} else if err := os.RemoveAll(s.tmp); err != nil {
		s.log.Warn("removing the temporary directory", "err", err)
	}
}

// goroutinesEarly is when the first goroutine profile is taken: after the
// first outage, once every kind of goroutine has been started.
const goroutinesEarly = 3 * time.Minute

const agentConfig = `agent:
  state_dir: %q
discovery:
  include:
    labels: [%q]
stats:
  source: %s
exporters:
  otlp:
    endpoint: %s
    protocol: %s
`

// run is the soak itself; see the package documentation.
func (s *soak) run(ctx context.Context) (*result, error) {
	o := s.o
	res := &result{o: o, runID: s.runID}
	col, err := newCollector(s.otelcol, s.tmp)
	if err != nil {
		return nil, err
	}
	s.log.Info("starting the collector", "grpc", col.grpcAddr, "http", col.httpAddr)
	if err := col.start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err := col.stop(); err != nil {
			s.log.Warn("stopping the collector", "err", err)
		}
	}()

	// The agent.
	stateDir := filepath.Join(s.tmp, "state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the agent's state directory: %w", err)
	}
	endpoint := "http://" + col.httpAddr
	if o.protocol == "grpc" {
		endpoint = "http://" + col.grpcAddr
	}
	cfgPath := filepath.Join(s.tmp, "agent.yml")
	cfg := fmt.Sprintf(agentConfig, stateDir, runLabel+"="+s.runID, o.statsSource, endpoint, o.protocol)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("writing the agent configuration: %w", err)
	}
	port, err := benchenv.FreePort()
	if err != nil {
		return nil, err
	}
	web := fmt.Sprintf("127.0.0.1:%d", port)
	// pprof only for the goroutine profiles fetched early and at the end.
	agent, err := startProcess("the agent", filepath.Join(s.tmp, "agent.log"), s.agentBin,
		"--config.file", cfgPath, "--web.listen-address", web, "--web.enable-pprof")
	if err != nil {
		return nil, err
	}
	agentStopped := false
	defer func() {
		if !agentStopped {
			_ = agent.stop(30 * time.Second)
		}
	}()
	metricsURL := "http://" + web + "/metrics"
	goroutinesURL := "http://" + web + "/debug/pprof/goroutine?debug=1"
	if err := waitReady(ctx, agent, "http://"+web+"/readyz"); err != nil {
		s.keepTmp = true
		return nil, err
	}
	s.log.Info("dockscope ready", "pid", agent.pid(), "metrics", metricsURL)

	csvw, err := createCSV(o.csvPath)
	if err != nil {
		return nil, err
	}
	defer csvw.close()

	// Steady loggers, for the whole run.
	steadyIDs := map[string]string{} // name → id
	for i := range o.steady {
		name := fmt.Sprintf("dockscope-soak-%s-steady-%d", s.runID, i)
		id, err := s.eng.start(ctx, name, []string{"log", "-lines", "1000000000", "-rate", strconv.FormatFloat(o.steadyRate, 'f', -1, 64),
			"-line-bytes", strconv.Itoa(o.lineBytes), "-stderr-every", "5", "-then", "sleep"})
		if err != nil {
			return nil, err
		}
		steadyIDs[name] = id
	}

	start := time.Now()
	res.start = start
	// The sampler runs until the drain is over; it owns the CSV writes.
	sampCtx, stopSampling := context.WithCancel(ctx)
	var samplerWG sync.WaitGroup
	var samples []sample // written by the sampler, read after samplerWG.Wait
	var phaseMu sync.Mutex
	phase := "soak"
	setPhase := func(p string) {
		phaseMu.Lock()
		phase = p
		phaseMu.Unlock()
	}
	samplerWG.Go(func() {
		tick := time.NewTicker(o.sampleEvery)
		defer tick.Stop()
		for {
			smp := readSample(sampCtx, agent.pid(), metricsURL)
			smp.elapsed = smp.at.Sub(start).Round(time.Second)
			phaseMu.Lock()
			smp.phase = phase
			phaseMu.Unlock()
			smp.collectorUp = col.up()
			s.mu.Lock()
			smp.churnStarted = s.churn.started
			s.mu.Unlock()
			if sampCtx.Err() != nil {
				return
			}
			samples = append(samples, smp)
			if err := csvw.write(smp.csvRow()); err != nil {
				s.log.Error("writing a sample", "err", err)
			}
			if res.earlyGoroutines == nil && smp.elapsed >= goroutinesEarly {
				// Once the soak is in its stride: the baseline a growth is
				// measured from.
				if g, err := fetchGoroutines(sampCtx, goroutinesURL, filepath.Join(s.tmp, "goroutines-early.txt")); err == nil {
					res.earlyGoroutines = g
				} else {
					s.log.Warn("fetching the goroutine profile", "err", err)
				}
			}
			if len(samples)%6 == 1 {
				s.log.Info("sample", "elapsed", smp.elapsed, "rss_mib", fmt.Sprintf("%.1f", smp.rssMiB),
					"goroutines", smp.goroutines, "fds", smp.fds, "containers", smp.containers,
					"sent", smp.sent, "collector_up", smp.collectorUp)
			}
			select {
			case <-sampCtx.Done():
				return
			case <-tick.C:
			}
		}
	})
	defer func() {
		stopSampling()
		samplerWG.Wait()
	}()

	// The soak phase: churn and outages until the duration is over, the
	// agent dies, or a signal comes.
	phaseCtx, endPhase := context.WithTimeout(ctx, o.duration)
	var loops sync.WaitGroup
	loops.Go(func() { s.churnLoop(phaseCtx, ctx, start) })
	if o.outageEvery > 0 {
		loops.Go(func() { s.outageLoop(phaseCtx, ctx, col, start) })
	}
	var agentDied error
	select {
	case <-phaseCtx.Done():
	case <-agent.done:
		agentDied = agent.exited()
	}
	endPhase()
	s.log.Info("soak phase over: waiting for the last short-lived containers and the collector")
	loops.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if agentDied != nil {
		s.keepTmp = true
		return nil, fmt.Errorf("the agent died during the soak: %w", agentDied)
	}
	res.soakEnd = time.Now()
	setPhase("drain")
	if err := col.start(ctx); err != nil { // an outage may have been cut short
		return nil, err
	}

	// The steady containers stop; their Docker logs say what they wrote.
	for name, id := range steadyIDs {
		if err := s.eng.stop(ctx, id); err != nil {
			return nil, err
		}
		n, last, err := s.eng.loggedLines(ctx, id)
		if err != nil {
			return nil, err
		}
		if n != last {
			res.notes = append(res.notes, fmt.Sprintf("%s: Docker's log holds %d lines, the last numbered %d", name, n, last))
		}
		s.mu.Lock()
		s.expected[name] = last
		s.mu.Unlock()
	}

	// Drain: wait until the collector holds every line, or nothing more
	// arrives for a while.
	s.mu.Lock()
	expected := make(map[string]int, len(s.expected))
	for k, v := range s.expected {
		expected[k] = v
	}
	s.mu.Unlock()
	var v verdict
	lastProgress, delivered := time.Now(), -1
	for {
		t := newTally()
		for _, f := range col.outputs() {
			if err := t.addFile(f); err != nil {
				return nil, err
			}
		}
		v = t.check(expected)
		if v.lost == 0 {
			break
		}
		if v.delivered > delivered {
			delivered, lastProgress = v.delivered, time.Now()
		}
		if time.Since(lastProgress) > o.drainTimeout {
			s.log.Warn("giving up waiting for the last lines", "after", o.drainTimeout, "verdict", v.String())
			break
		}
		if err := benchenv.Sleep(ctx, 5*time.Second); err != nil {
			return nil, err
		}
		if err := agent.exited(); err != nil {
			s.keepTmp = true
			return nil, err
		}
	}
	res.drainEnd = time.Now()
	// Let a last export or duplicate arrive, take the final sample, and read
	// the agent's own counters before it stops.
	if err := benchenv.Sleep(ctx, 2*o.sampleEvery); err != nil {
		return nil, err
	}
	stopSampling()
	samplerWG.Wait()
	if g, err := fetchGoroutines(ctx, goroutinesURL, filepath.Join(s.tmp, "goroutines-end.txt")); err == nil {
		res.lateGoroutines = g
	} else {
		res.notes = append(res.notes, err.Error())
	}
	if m, err := promscrape.Scrape(ctx, metricsURL, 5*time.Second); err == nil {
		res.agentCounters = m
	} else {
		res.notes = append(res.notes, "the final scrape of the agent failed: "+err.Error())
	}
	agentStopped = true
	if err := agent.stop(30 * time.Second); err != nil {
		res.notes = append(res.notes, fmt.Sprintf("the agent did not stop cleanly: %v; its log: %s", err, agent.logPath))
		res.agentFailed = true
		s.keepTmp = true
	}
	res.agentLog = summarizeLog(agent.logPath)
	if err := col.stop(); err != nil {
		res.notes = append(res.notes, err.Error())
	}

	// The final count, with the collector flushed.
	t := newTally()
	for _, f := range col.outputs() {
		if err := t.addFile(f); err != nil {
			return nil, err
		}
	}
	res.verdict = t.check(expected)
	res.events, res.other = t.events, t.other
	res.samples = samples
	s.mu.Lock()
	res.churn, res.outages = s.churn, s.outages
	for _, name := range res.verdict.lostNames {
		if lt, ok := s.lifetime[name]; ok {
			res.notes = append(res.notes, explainLoss(name, lt, s.outages))
		}
	}
	s.mu.Unlock()
	res.steady = len(steadyIDs)
	if !res.ok() {
		s.keepTmp = true
	}

	fig := figure(fmt.Sprintf("dockscope soak: %s, %d short-lived containers, %d steady loggers, collector stopped %d× for %s",
		o.duration, res.churn.started, res.steady, len(res.outages), o.outage), samples, res.outages)
	if err := os.WriteFile(o.plotPath, fig.SVG(), 0o644); err != nil {
		return res, fmt.Errorf("writing the plot: %w", err)
	}
	s.log.Info("wrote the samples and the plot", "csv", o.csvPath, "plot", o.plotPath)
	return res, nil
}

// churnLoop starts a short-lived container every churnEvery until phaseCtx
// ends. Each one is followed by a goroutine of the loop's that waits for its
// exit, records how many lines it wrote and removes it; those run on runCtx
// so that the containers in flight at the end of the phase finish cleanly,
// and the loop returns only after all of them.
func (s *soak) churnLoop(phaseCtx, runCtx context.Context, start time.Time) {
	o := s.o
	if o.churnEvery == 0 {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, o.churnParallel)
	tick := time.NewTicker(o.churnEvery)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-phaseCtx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			// The daemon is slower than the churn: skip rather than pile up.
			s.mu.Lock()
			s.churn.skipped++
			s.mu.Unlock()
			continue
		}
		name := fmt.Sprintf("dockscope-soak-%s-churn-%05d", s.runID, i)
		lines := 1 + i%o.churnLines
		wg.Go(func() {
			defer func() { <-sem }()
			s.churnOne(runCtx, name, lines, start)
		})
	}
}

func (s *soak) churnOne(ctx context.Context, name string, lines int, start time.Time) {
	var lt lifetime
	defer func() {
		s.mu.Lock()
		s.lifetime[name] = lt
		s.mu.Unlock()
	}()
	fail := func(err error) {
		s.mu.Lock()
		s.churn.failed = append(s.churn.failed, err.Error())
		s.mu.Unlock()
		s.log.Warn("short-lived container", "name", name, "err", err)
	}
	s.mu.Lock()
	s.churn.started++
	s.mu.Unlock()
	lt.started = time.Since(start)
	id, err := s.eng.start(ctx, name, []string{"log", "-lines", strconv.Itoa(lines),
		"-line-bytes", strconv.Itoa(s.o.lineBytes), "-stderr-every", "3", "-then", "exit"})
	if err != nil {
		fail(err)
		if id == "" {
			return
		}
	} else {
		code, err := s.eng.wait(ctx, id)
		lt.exited = time.Since(start)
		switch {
		case err != nil:
			fail(err)
		case code != 0:
			fail(fmt.Errorf("exited with code %d", code))
		default:
			s.mu.Lock()
			s.expected[name] = lines
			s.mu.Unlock()
		}
	}
	if err := benchenv.Sleep(ctx, s.o.churnRemoveAfter); err != nil {
		return // close removes it
	}
	if err := s.eng.remove(ctx, id); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("removing a short-lived container", "name", name, "err", err)
		}
		return
	}
	lt.removed = time.Since(start)
	s.mu.Lock()
	s.churn.removed++
	s.mu.Unlock()
}

// outageLoop stops the collector for o.outage every o.outageEvery until
// phaseCtx ends; an outage in progress then is ended early (on runCtx, so
// that the drain has a backend).
func (s *soak) outageLoop(phaseCtx, runCtx context.Context, col *collector, start time.Time) {
	for {
		if err := benchenv.Sleep(phaseCtx, s.o.outageEvery-s.o.outage); err != nil {
			return
		}
		down := time.Now()
		s.log.Info("stopping the collector", "for", s.o.outage)
		if err := col.stop(); err != nil {
			s.log.Warn("stopping the collector", "err", err)
		}
		_ = benchenv.Sleep(phaseCtx, s.o.outage)
		if err := col.start(runCtx); err != nil {
			if runCtx.Err() == nil {
				s.log.Error("starting the collector again", "err", err)
			}
			return
		}
		s.mu.Lock()
		s.outages = append(s.outages, outage{from: down.Sub(start), to: time.Since(start)})
		s.mu.Unlock()
		s.log.Info("collector started again")
	}
}

// explainLoss places a short-lived container with lost lines against the
// collector's outages: a loss while the backend was down is a different
// story from one while it was up.
func explainLoss(name string, lt lifetime, outages []outage) string {
	at := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	where := "the collector was up"
	for _, o := range outages {
		if lt.started <= o.to && lt.removed >= o.from {
			where = fmt.Sprintf("the collector was down from %s to %s", at(o.from), at(o.to))
		}
	}
	return fmt.Sprintf("%s started at %s, exited at %s, was removed at %s (from the soak's start); %s",
		name, at(lt.started), at(lt.exited), at(lt.removed), where)
}

// waitReady polls url until it answers 200, the agent exits, or a minute
// passes.
func waitReady(ctx context.Context, p *process, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if err := p.exited(); err != nil {
			return err
		}
		if _, err := promscrape.Scrape(ctx, url, 5*time.Second); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", url, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
