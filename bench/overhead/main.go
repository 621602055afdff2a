// Command overhead measures what dockscope costs a Docker host: its own CPU
// and memory, the extra CPU it makes dockerd and containerd spend, and how
// long a scrape of /metrics takes, for N idle containers plus M that log
// continuously. It prints figures; it is not a pass/fail test.
//
//	go run ./bench/overhead [-n 50,200] [-chatty 10] [-window 60s] [-interval 10s]
//	                        [-markdown FILE] [-plot FILE.svg] [-agent-bin FILE]
//	                        [-agent-cmd "..." [-agent-metrics-url URL]]
//	                        [-compare-cadvisor FILE [-cadvisor-args "..."]]
//
// For each N it starts the containers (-parallel at a time, each create or
// start tried up to three times), measures the daemon alone over one
// window (the baseline), starts the agent, waits until it follows every
// container and one stats interval more, measures a second window, then
// stops the agent and removes the containers. Every container and image it
// creates is labelled dockscope.bench=1 and removed on exit, including on
// SIGINT/SIGTERM.
//
// With -compare-cadvisor, each row then measures cAdvisor (the binary that
// bench/compare/cadvisor builds) over the same containers and baseline:
// dockscope is stopped, cAdvisor started with -docker_only and its
// housekeeping at dockscope's stats interval, given the time to follow every
// container and one interval more, and measured over a window of the same
// length, scraped as often. A second table puts both side by side with
// their cost per series.
//
// Several N (-n 50,200,500) are rows of one run. -plot FILE.svg draws them:
// the agent's CPU and the daemons' extra CPU, the daemons' CPU without the
// agent (the baseline) and with it, and the agent's peak RSS, against N.
//
// Run it on an otherwise idle host: the daemon figures include whatever
// else the daemon does meanwhile.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
	"github.com/dockscope/dockscope/internal/procfs"
)

type options struct {
	ns                []int
	chatty            int
	window, interval  time.Duration
	statsSource       string
	settle            time.Duration
	scrapeEvery       time.Duration
	parallel          int
	agentBin          string
	agentCmd          string
	agentMetricsURL   string
	compareCadvisor   string
	cadvisorArgs      string
	followAll         bool
	markdown          string
	plot              string
	keepImage         bool
	agentStopGrace    time.Duration
	agentStartTimeout time.Duration
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("overhead", flag.ContinueOnError)
	ns := fs.String("n", "50,200", "comma-separated numbers of idle containers, one row each")
	fs.IntVar(&o.chatty, "chatty", 10, "containers logging 20 lines/s each, added to every N")
	fs.DurationVar(&o.window, "window", 60*time.Second, "length of each measurement window")
	fs.DurationVar(&o.interval, "interval", 10*time.Second, "dockscope's stats.interval")
	fs.StringVar(&o.statsSource, "stats-source", "auto", "dockscope's stats.source: api, cgroup or auto")
	fs.DurationVar(&o.settle, "settle", 10*time.Second, "pause after the containers are running, before the baseline")
	// More often than Prometheus' usual 15 s, so that the scrapes' share of
	// the agent's CPU is, if anything, overstated.
	fs.DurationVar(&o.scrapeEvery, "scrape-every", 5*time.Second, "scrape the agent this often during the window (0: never)")
	fs.IntVar(&o.parallel, "parallel", 8, "containers started or removed at once")
	fs.StringVar(&o.agentBin, "agent-bin", "", "dockscope binary to run (default: build ./cmd/agent into a temporary directory)")
	fs.StringVar(&o.agentCmd, "agent-cmd", "", "benchmark this command line (run with sh -c) instead of dockscope")
	fs.StringVar(&o.agentMetricsURL, "agent-metrics-url", "", "with -agent-cmd: the metrics URL to scrape during the window")
	fs.StringVar(&o.compareCadvisor, "compare-cadvisor", "", "after dockscope, measure this cAdvisor binary over the same containers (see bench/compare/cadvisor)")
	fs.StringVar(&o.cadvisorArgs, "cadvisor-args", "", "with -compare-cadvisor: more flags for cAdvisor, after -docker_only -housekeeping_interval <interval> -port <free port>")
	fs.BoolVar(&o.followAll, "follow-all", false, "let dockscope follow every container on the host, not only the benchmark's")
	fs.StringVar(&o.markdown, "markdown", "", "also write the table as Markdown to this file")
	fs.StringVar(&o.plot, "plot", "", "also write an SVG plot of agent CPU, daemons' CPU (baseline and with the agent) and agent RSS against N to this file")
	fs.BoolVar(&o.keepImage, "keep-image", false, "keep the workload image at the end")
	fs.DurationVar(&o.agentStopGrace, "agent-stop-grace", 10*time.Second, "wait this long after SIGTERM before killing the agent")
	fs.DurationVar(&o.agentStartTimeout, "agent-start-timeout", 2*time.Minute, "longest wait for the agent to be ready and follow every container")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for f := range strings.SplitSeq(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-n: %q is not a number of containers", f)
		}
		o.ns = append(o.ns, n)
	}
	switch {
	case o.chatty < 0:
		return nil, errors.New("-chatty must not be negative")
	case o.window <= 0 || o.scrapeEvery < 0:
		return nil, errors.New("-window must be positive and -scrape-every not negative")
	case o.interval <= 0:
		return nil, errors.New("-interval must be positive")
	case o.statsSource != "api" && o.statsSource != "cgroup" && o.statsSource != "auto":
		return nil, fmt.Errorf("-stats-source must be api, cgroup or auto, not %q", o.statsSource)
	case o.agentMetricsURL != "" && o.agentCmd == "":
		return nil, errors.New("-agent-metrics-url only goes with -agent-cmd")
	case o.agentBin != "" && o.agentCmd != "":
		return nil, errors.New("-agent-bin and -agent-cmd exclude each other")
	case o.compareCadvisor != "" && o.agentCmd != "":
		return nil, errors.New("-compare-cadvisor goes with dockscope, not with -agent-cmd")
	case o.cadvisorArgs != "" && o.compareCadvisor == "":
		return nil, errors.New("-cadvisor-args only goes with -compare-cadvisor")
	case o.parallel < 1:
		return nil, errors.New("-parallel must be at least 1")
	}
	return o, nil
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	o, err := parseOptions(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "overhead:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	started := time.Now()

	// The first SIGINT/SIGTERM cancels ctx, which unwinds the run through its
	// cleanups; a second one kills the benchmark outright.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		signal.Stop(sigs)
		log.Warn("interrupted: stopping the agent and removing the benchmark's containers (again to abandon them)", "signal", sig)
		cancel()
	}()

	b, err := newBench(ctx, o, log)
	if err != nil {
		log.Error("setting up", "err", err)
		if b != nil {
			b.close()
		}
		return 1
	}
	defer b.close()

	rep := report{agent: b.agentName(), interval: o.interval, compared: o.compareCadvisor != ""}
	if o.agentCmd != "" {
		rep.interval = 0
	}
	for _, n := range o.ns {
		r := b.measureN(ctx, n)
		rep.results = append(rep.results, r)
		if ctx.Err() != nil {
			break
		}
		if r.err != nil {
			log.Error("measuring", "n", n, "err", r.err)
			b.keepTmp = true // the agent's log is there
		}
	}
	if ctx.Err() != nil {
		return 130
	}

	fmt.Println()
	rep.writeText(os.Stdout)
	if o.markdown != "" {
		if err := writeMarkdownFile(o.markdown, rep); err != nil {
			log.Error("writing the Markdown report", "err", err)
			return 1
		}
		log.Info("wrote the Markdown report", "file", o.markdown)
	}
	if o.plot != "" {
		if err := writePlotFile(o.plot, rep); err != nil {
			log.Error("writing the plot", "err", err)
			return 1
		}
		log.Info("wrote the plot", "file", o.plot)
	}
	log.Info("done", "took", time.Since(started).Round(time.Second))
	for _, r := range rep.results {
		if r.err != nil {
			return 1
		}
	}
	return 0
}

func writeMarkdownFile(path string, rep report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	rep.writeMarkdown(f)
	return f.Close()
}

// bench holds what lives for the whole run.
type bench struct {
	o        *options
	log      *slog.Logger
	eng      *engine
	tmp      string
	runID    string
	agentBin string
	keepTmp  bool
}

// newBench builds the binaries and the workload image. On error the
// returned bench (if any) still needs close.
func newBench(ctx context.Context, o *options, log *slog.Logger) (*bench, error) {
	root, err := benchenv.ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "dockscope-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary directory: %w", err)
	}
	b := &bench{o: o, log: log, tmp: tmp, runID: benchenv.NewRunID()}
	log.Info("benchmark run", "run", b.runID, "tmp", tmp)

	b.eng, err = newEngine(b.runID, log)
	if err != nil {
		return b, err
	}
	workload := filepath.Join(tmp, "workload")
	log.Info("building the workload")
	if err := benchenv.GoBuild(ctx, root, "./test/workload", workload); err != nil {
		return b, err
	}
	switch {
	case o.agentCmd != "":
	case o.agentBin != "":
		b.agentBin = o.agentBin
	default:
		b.agentBin = filepath.Join(tmp, "dockscope")
		log.Info("building dockscope")
		if err := benchenv.GoBuild(ctx, root, "./cmd/agent", b.agentBin); err != nil {
			return b, err
		}
	}
	log.Info("building the workload image", "image", imageTag)
	if err := b.eng.buildImage(ctx, workload); err != nil {
		return b, err
	}
	return b, nil
}

func (b *bench) agentName() string {
	if b.o.agentCmd != "" {
		return fmt.Sprintf("`%s`", b.o.agentCmd)
	}
	return "dockscope (stats.source " + b.o.statsSource + ")"
}

// cleanupCtx is for removing things after ctx may have been cancelled by
// a signal: cleanup must still run, but not forever. Removing 500
// containers takes minutes on a busy host.
func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Minute)
}

// close removes everything the run created. The temporary directory stays
// if a row failed, for the agent logs the report points to.
func (b *bench) close() {
	ctx, cancel := cleanupCtx()
	defer cancel()
	if b.keepTmp {
		b.log.Info("keeping the temporary directory", "tmp", b.tmp)
	} else if err := os.RemoveAll(b.tmp); err != nil {
		b.log.Warn("removing the temporary directory", "err", err)
	}
	if b.eng != nil {
		if err := b.eng.removeOwn(ctx, b.o.parallel); err != nil {
			b.log.Error("removing the benchmark's containers", "err", err)
		}
		if !b.o.keepImage {
			b.eng.removeImage(ctx)
		}
	}
}

// measureN produces one row: N idle + M chatty containers.
func (b *bench) measureN(ctx context.Context, n int) (r result) {
	o := b.o
	r = result{n: n, m: o.chatty, window: o.window}
	log := b.log.With("n", n, "m", o.chatty)
	fail := func(what string, err error) result {
		r.err = fmt.Errorf("%s: %w", what, err)
		return r
	}

	// Containers: start, wait, and whatever happens remove them afterwards.
	t := time.Now()
	log.Info("starting containers", "parallel", o.parallel)
	defer func() {
		cctx, cancel := cleanupCtx()
		defer cancel()
		t := time.Now()
		if err := b.eng.removeOwn(cctx, o.parallel); err != nil {
			log.Error("removing containers", "err", err)
			r.notes = append(r.notes, "removing containers: "+err.Error())
		}
		log.Info("removed containers", "took", sinceSeconds(t))
	}()
	if err := b.eng.startContainers(ctx, benchSpecs(b.runID, n, o.chatty), o.parallel); err != nil {
		return fail("starting containers", err)
	}
	if err := b.eng.waitRunning(ctx, n+o.chatty, 5*time.Minute); err != nil {
		return fail("waiting for the containers", err)
	}
	log.Info("containers running", "took", sinceSeconds(t), "settle", o.settle)
	if err := benchenv.Sleep(ctx, o.settle); err != nil {
		return fail("settling", err)
	}
	b.noteForeign(ctx, &r, "before the baseline")

	// Baseline: the daemon alone.
	log.Info("measuring the baseline (no agent)", "window", o.window)
	var err error
	if r.base, err = measureBaseline(ctx, o.window); err != nil {
		return fail("measuring the baseline", err)
	}
	log.Info("baseline", "daemons_cpu_s", fmt.Sprintf("%.2f", r.base.daemonCPU))

	// The agent.
	a, s, err := b.startAgent(ctx, n)
	if a != nil {
		defer func() {
			log.Info("stopping the agent")
			if err := a.stop(o.agentStopGrace); err != nil {
				r.notes = append(r.notes, err.Error())
			} else if a.waitErr != nil && o.agentCmd == "" {
				// sh -c dies of the SIGTERM itself, so only dockscope's exit
				// status says something.
				r.notes = append(r.notes, fmt.Sprintf("the agent exited with %v after SIGTERM; log: %s", a.waitErr, a.logPath))
			}
			if n, first := logProblems(a.logPath); n > 0 {
				r.notes = append(r.notes, fmt.Sprintf("the agent logged %d warning/error line(s), the first: %s", n, first))
			}
		}()
	}
	if err != nil {
		return fail("starting the agent", err)
	}
	log.Info("warming up for one stats interval", "interval", o.interval)
	if err := benchenv.Sleep(ctx, o.interval); err != nil {
		return fail("warming up", err)
	}
	b.noteForeign(ctx, &r, "before the agent window")

	log.Info("measuring with the agent", "window", o.window, "pid", a.pid())
	if r.agent, err = measureAgent(ctx, a, o.agentCmd != "", s, o.scrapeEvery, o.window); err != nil {
		return fail("measuring with the agent", err)
	}
	for _, e := range r.agent.scrapeErrs {
		r.notes = append(r.notes, "scrape failed: "+e.Error())
	}
	b.noteForeign(ctx, &r, "after the agent window")
	if o.compareCadvisor != "" {
		// The deferred stop above is then a no-op; it still reports how the
		// agent exited.
		_ = a.stop(o.agentStopGrace)
		var logPath string
		r.cadvisor, logPath, err = b.measureCadvisor(ctx, n)
		if n, first := logProblems(logPath); n > 0 {
			r.notes = append(r.notes, fmt.Sprintf("cAdvisor logged %d warning/error line(s), the first: %s", n, first))
		}
		if err != nil {
			return fail("measuring cAdvisor", err)
		}
		for _, e := range r.cadvisor.scrapeErrs {
			r.notes = append(r.notes, "cAdvisor scrape failed: "+e.Error())
		}
		b.noteForeign(ctx, &r, "after the cAdvisor window")
		log.Info("with cAdvisor",
			"cadvisor_cpu_s", fmt.Sprintf("%.2f", r.cadvisor.agentCPU),
			"peak_rss_mib", fmt.Sprintf("%.1f", float64(r.cadvisor.hwmKiB)/1024),
			"daemons_cpu_s", fmt.Sprintf("%.2f", r.cadvisor.daemonCPU),
			"series", r.cadvisor.series, "scrapes", len(r.cadvisor.scrapes))
	}
	// The daemon figures are only as good as the host is quiet: say how busy
	// it was (the benchmark's containers and the agent included).
	busy := fmt.Sprintf("host CPU busy (all processes): %.2f cores in the baseline, %.2f with the agent", r.base.hostBusy, r.agent.hostBusy)
	if r.cadvisor.took > 0 {
		busy += fmt.Sprintf(", %.2f with cAdvisor", r.cadvisor.hostBusy)
	}
	r.notes = append(r.notes, fmt.Sprintf("%s, of %d; load average at the end %s", busy, runtime.NumCPU(), procfs.LoadAvg()))
	log.Info("with agent",
		"agent_cpu_s", fmt.Sprintf("%.2f", r.agent.agentCPU),
		"peak_rss_mib", fmt.Sprintf("%.1f", float64(r.agent.hwmKiB)/1024),
		"daemons_cpu_s", fmt.Sprintf("%.2f", r.agent.daemonCPU),
		"series", r.agent.series, "scrapes", len(r.agent.scrapes))
	return r
}

// startAgent starts dockscope (or -agent-cmd) and waits until it is ready
// to be measured. It returns the process even with an error, to be stopped.
func (b *bench) startAgent(ctx context.Context, n int) (*agentProc, *scraper, error) {
	o := b.o
	dir := filepath.Join(b.tmp, fmt.Sprintf("n%d", n))
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		return nil, nil, fmt.Errorf("creating the agent's directory: %w", err)
	}
	logPath := filepath.Join(dir, "agent.log")

	if o.agentCmd != "" {
		b.log.Info("starting the agent command", "cmd", o.agentCmd, "log", logPath)
		a, err := startAgent([]string{"sh", "-c", o.agentCmd}, logPath)
		if err != nil {
			return nil, nil, err
		}
		// Nothing tells when an arbitrary agent is ready: give it time.
		if err := benchenv.Sleep(ctx, 15*time.Second); err != nil {
			return a, nil, err
		}
		if err := a.exitErr(); err != nil {
			return a, nil, err
		}
		var s *scraper
		if o.agentMetricsURL != "" {
			s = newScraper(o.agentMetricsURL)
		}
		return a, s, nil
	}

	port, err := benchenv.FreePort()
	if err != nil {
		return nil, nil, err
	}
	cfg := filepath.Join(dir, "dockscope.yml")
	if err := writeAgentConfig(cfg, filepath.Join(dir, "state"), b.runID, o.interval, o.statsSource, o.followAll); err != nil {
		return nil, nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	b.log.Info("starting dockscope", "addr", addr, "config", cfg, "log", logPath)
	t := time.Now()
	a, err := startAgent([]string{b.agentBin, "--web.listen-address", addr, "--config.file", cfg}, logPath)
	if err != nil {
		return nil, nil, err
	}
	if err := waitReady(ctx, a, "http://"+addr+"/readyz", o.agentStartTimeout); err != nil {
		return a, nil, err
	}
	b.log.Info("dockscope ready", "took", sinceSeconds(t))
	s := newScraper("http://" + addr + "/metrics")
	want := n + o.chatty
	if err := waitContainers(ctx, a, s, want, !o.followAll, o.agentStartTimeout); err != nil {
		return a, s, err
	}
	b.log.Info("dockscope follows every container", "containers", want, "took", sinceSeconds(t))
	return a, s, nil
}

// measureCadvisor runs the -compare-cadvisor binary as dockscope was run:
// started, given time to follow every container and one interval more, then
// measured over one window while scraped as often.
func (b *bench) measureCadvisor(ctx context.Context, n int) (w agentWindow, logPath string, err error) {
	o := b.o
	port, err := benchenv.FreePort()
	if err != nil {
		return w, "", err
	}
	argv := append([]string{o.compareCadvisor, "-docker_only", "-housekeeping_interval", o.interval.String(),
		"-listen_ip", "127.0.0.1", "-port", fmt.Sprint(port)}, strings.Fields(o.cadvisorArgs)...)
	logPath = filepath.Join(b.tmp, fmt.Sprintf("n%d", n), "cadvisor.log")
	b.log.Info("starting cAdvisor", "argv", argv, "log", logPath)
	t := time.Now()
	a, err := startAgent(argv, logPath)
	if err != nil {
		return w, "", err
	}
	defer func() {
		if stopErr := a.stop(o.agentStopGrace); stopErr != nil {
			b.log.Warn("stopping cAdvisor", "err", stopErr)
		}
	}()
	s := newScraper(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	want := n + o.chatty
	if err := waitCadvisorContainers(ctx, a, s, want, o.agentStartTimeout); err != nil {
		return w, logPath, err
	}
	b.log.Info("cAdvisor follows every container", "containers", want, "took", sinceSeconds(t))
	if err := benchenv.Sleep(ctx, o.interval); err != nil {
		return w, logPath, err
	}
	b.log.Info("measuring with cAdvisor", "window", o.window, "pid", a.pid())
	w, err = measureAgent(ctx, a, false, s, o.scrapeEvery, o.window)
	return w, logPath, err
}

// noteForeign records other running containers: they load the daemon too.
func (b *bench) noteForeign(ctx context.Context, r *result, when string) {
	n, err := b.eng.foreignRunning(ctx)
	if err != nil {
		b.log.Warn("counting other containers", "err", err)
		return
	}
	if n > 0 {
		r.notes = append(r.notes, fmt.Sprintf("%d other container(s) running on the host %s (they load the daemon too)", n, when))
	}
}

// sinceSeconds is a small helper for progress lines.
func sinceSeconds(t time.Time) string {
	return fmt.Sprintf("%.1fs", time.Since(t).Seconds())
}
