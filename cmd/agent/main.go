// Command agent is dockscope: it follows the local Docker Engine and exports
// every container's metrics to Prometheus and OTLP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/dockscope/dockscope/collector"
	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/exporters/otlp"
	promexp "github.com/dockscope/dockscope/exporters/prometheus"
	"github.com/dockscope/dockscope/pipeline"
)

// version and revision are set at build time by the Makefile and
// scripts/build-image.sh with -ldflags "-X main.version=… -X main.revision=…",
// so that a build without VCS stamping (-buildvcs=false, a source tarball,
// a container build without .git) still says which release and commit it
// is. buildInfo falls back to what the Go toolchain recorded.
var version, revision string

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2 // bad flags or configuration
)

// memoryHeadroom is what the Go runtime may use beyond the log buffer
// before it collects harder: the agent's own state at a few hundred
// containers, the batch being sent and the scrape buffers.
const memoryHeadroom = 24 << 20

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// flags are the command line; values given explicitly override the file.
type flags struct {
	configFile, listenAddress, webConfigFile, logLevel, logFormat string
	check, printDefault, showVersion, pprof, healthcheck          bool
	set                                                           map[string]bool
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	f := &flags{set: make(map[string]bool)}
	fs := flag.NewFlagSet("dockscope", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.configFile, "config.file", os.Getenv("DOCKSCOPE_CONFIG_FILE"), "YAML configuration file; defaults apply without one (env DOCKSCOPE_CONFIG_FILE)")
	fs.BoolVar(&f.check, "config.check", false, "validate the configuration and exit")
	fs.BoolVar(&f.printDefault, "print-default-config", false, "print the default configuration file, with comments, and exit")
	fs.BoolVar(&f.showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&f.healthcheck, "healthcheck", false, "ask the agent running with this configuration whether it is ready (its /readyz); exit 0 if so, 1 if not (a HEALTHCHECK for the scratch image)")
	fs.StringVar(&f.listenAddress, "web.listen-address", "", "address for /metrics, /healthz and /readyz (overrides web.listen_address; default :9817)")
	fs.StringVar(&f.webConfigFile, "web.config.file", "", "exporter-toolkit web configuration for TLS and basic auth (overrides web.config_file)")
	fs.BoolVar(&f.pprof, "web.enable-pprof", false, "serve Go profiles at /debug/pprof/, and POST /debug/free-os-memory, on the metrics endpoint (for diagnosing the agent's own cost)")
	fs.StringVar(&f.logLevel, "log.level", "", "debug, info, warn or error (overrides agent.log_level)")
	fs.StringVar(&f.logFormat, "log.format", "", "logfmt or json (overrides agent.log_format)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return f, nil
}

// loadConfig reads the file and applies the flags that override it.
func (f *flags) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(f.configFile)
	if err != nil {
		return nil, err
	}
	if f.set["web.listen-address"] {
		cfg.Web.ListenAddress = f.listenAddress
	}
	if f.set["web.config.file"] {
		cfg.Web.ConfigFile = f.webConfigFile
	}
	if f.set["log.level"] {
		cfg.Agent.LogLevel = f.logLevel
	}
	if f.set["log.format"] {
		cfg.Agent.LogFormat = f.logFormat
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("after applying command-line flags: %w", err)
	}
	return cfg, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "dockscope:", err)
		return exitUsage
	}
	build := buildInfo()
	switch {
	case f.showVersion:
		fmt.Fprintf(stdout, "dockscope %s (revision %s, %s)\n", build.Version, build.Revision, build.GoVersion)
		return exitOK
	case f.printDefault:
		_, _ = stdout.Write(config.DefaultYAML())
		return exitOK
	}

	cfg, err := f.loadConfig()
	if err != nil {
		reportConfigError(stderr, err)
		return exitUsage
	}
	if f.healthcheck {
		if err := promexp.ProbeReady(context.Background(), cfg.Web.ListenAddress, cfg.Web.ConfigFile != ""); err != nil {
			fmt.Fprintln(stderr, "dockscope:", err)
			return exitFailed
		}
		fmt.Fprintln(stdout, "ready")
		return exitOK
	}
	if f.check {
		if err := checkComponents(cfg, f); err != nil {
			fmt.Fprintln(stderr, "dockscope: invalid configuration:", err)
			return exitUsage
		}
		name := f.configFile
		if name == "" {
			name = "(defaults, no file)"
		}
		fmt.Fprintf(stdout, "configuration OK: %s\n", name)
		return exitOK
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// The store and telemetry outlive reloads, so counters do not reset and
	// series do not vanish when the configuration is reloaded.
	st := agentState{store: pipeline.NewStore(), tel: pipeline.NewTelemetry(), build: build, pprof: f.pprof, configFile: f.configFile, stderr: stderr}
	cur, err := buildComponents(cfg, st, nil)
	if err != nil {
		newLogger(cfg.Agent, stderr).Error("dockscope stopped", "err", err)
		return exitFailed
	}
	return serve(ctx, cur, hup, f.loadConfig, st)
}

// serve runs the components until a signal ends the process or one of them
// fails. SIGHUP builds the next configuration's components while the
// running ones go on, and swaps them only when all were built: a reload
// that fails for any reason (file, TLS, listener, exporter, log state)
// leaves the running configuration serving.
func serve(ctx context.Context, cur *components, hup <-chan os.Signal, load func() (*config.Config, error), st agentState) int {
	defer func() { cur.web.stop() }()
	r := cur.start(ctx, st)
	for {
		select {
		case <-ctx.Done():
			if err := r.stop(); err != nil {
				cur.logger.Error("dockscope stopped", "err", err)
				return exitFailed
			}
			cur.logger.Info("dockscope stopped")
			return exitOK
		case <-r.done:
			if r.err == nil {
				// The signal's cancellation reached the components first.
				cur.logger.Info("dockscope stopped")
				return exitOK
			}
			cur.logger.Error("dockscope stopped", "err", r.err)
			return exitFailed
		case <-hup:
		}
		next, err := reload(load, st, cur)
		if err != nil {
			cur.logger.Error("configuration reload failed; keeping the running configuration", "err", err)
			st.tel.SetConfigReload(false, time.Now())
			continue
		}
		cur.logger.Info("configuration loaded; restarting components")
		if err := r.stop(); err != nil {
			// The previous components have stopped all the same; the new
			// ones take over.
			cur.logger.Error("stopping the previous configuration's components", "err", err)
		}
		prevWeb := cur.web
		cur = next
		r = cur.start(ctx, st)
		// Only now that the new components run is the reload a success.
		st.tel.SetConfigReload(true, time.Now())
		cur.logger.Info("configuration reloaded")
		if prevWeb != cur.web {
			// After the new server serves: the old one may take a few
			// seconds to finish its responses.
			prevWeb.stop()
		}
	}
}

// reload loads the configuration and builds its components next to the
// running ones (cur).
func reload(load func() (*config.Config, error), st agentState, cur *components) (*components, error) {
	cfg, err := load()
	if err != nil {
		return nil, err
	}
	return buildComponents(cfg, st, cur)
}

// checkComponents refuses, for --config.check, what building the
// components would refuse at start or at a reload, short of binding the
// listen address (an agent already running holds it) and of opening the
// log state.
func checkComponents(cfg *config.Config, f *flags) error {
	st := agentState{store: pipeline.NewStore(), tel: pipeline.NewTelemetry(), build: buildInfo(), pprof: f.pprof}
	if err := promexp.CheckServer(webOptions(cfg.Web, st, slog.New(slog.DiscardHandler))); err != nil {
		return err
	}
	if cfg.Exporters.OTLP.Enabled(os.Getenv) {
		exp, err := otlp.NewMetricsExporter(context.Background(), otlp.MetricsOptions{Config: cfg.Exporters.OTLP, Interval: time.Minute})
		if err != nil {
			return fmt.Errorf("OTLP metrics exporter: %w", err)
		}
		_ = exp.Close()
	}
	if cfg.Logs.Enabled && otlp.LogsEnabled(cfg.Exporters.OTLP, os.Getenv) {
		exp, err := otlp.NewLogExporter(otlp.LogOptions{Config: cfg.Exporters.OTLP, Batch: cfg.Logs.Batch})
		if err != nil {
			return fmt.Errorf("OTLP log exporter: %w", err)
		}
		_ = exp.Close()
	}
	return nil
}

// agentState is what survives configuration reloads.
type agentState struct {
	store      *pipeline.Store
	tel        *pipeline.Telemetry
	build      promexp.BuildInfo
	pprof      bool
	configFile string
	stderr     io.Writer
}

// components are one configuration's parts, built (and checked) by
// buildComponents before any of them runs.
type components struct {
	cfg        *config.Config
	logger     *slog.Logger
	web        *webServer // the previous configuration's when its web section is the same
	logs       *logPath   // nil when logs are off
	metrics    *otlp.MetricsExporter
	coll       *collector.Collector
	containers *promexp.ContainerCollector
}

// buildComponents builds cfg's components; prev, when not nil, is the
// running configuration, whose listener and log checkpoints are taken over
// rather than opened a second time. On error nothing of prev is touched and
// whatever was built is released.
func buildComponents(cfg *config.Config, st agentState, prev *components) (_ *components, err error) {
	c := &components{cfg: cfg, logger: newLogger(cfg.Agent, st.stderr)}
	var undo []func()
	defer func() {
		if err != nil {
			for _, u := range slices.Backward(undo) {
				u()
			}
		}
	}()

	// The listener survives reloads that leave the web section alone, so
	// Prometheus never sees a refused scrape because of a SIGHUP.
	if prev != nil && prev.web.cfg == cfg.Web {
		c.web = prev.web
	} else {
		var inherit net.Listener
		if prev != nil && prev.web.cfg.ListenAddress == cfg.Web.ListenAddress {
			if inherit, err = prev.web.srv.ShareListener(); err != nil {
				return nil, err
			}
		}
		if c.web, err = newWeb(cfg.Web, inherit, st, c.logger); err != nil {
			return nil, err
		}
		web := c.web
		undo = append(undo, web.stop)
	}

	var prevCps *pipeline.Checkpointer
	if prev != nil && prev.logs != nil && prev.cfg.Agent.StateDir == cfg.Agent.StateDir {
		prevCps = prev.logs.checkpoints
	}
	if c.logs, err = newLogPath(cfg, st, prevCps, c.logger); err != nil {
		return nil, err
	}
	if c.logs != nil {
		exp := c.logs.exporter
		undo = append(undo, func() { _ = exp.Close() })
	}

	if cfg.Exporters.OTLP.Enabled(os.Getenv) {
		interval := cfg.Exporters.OTLP.Interval
		if interval == 0 {
			interval = cfg.Stats.Interval
		}
		c.metrics, err = otlp.NewMetricsExporter(context.Background(), otlp.MetricsOptions{
			Config: cfg.Exporters.OTLP, Interval: interval, Store: st.store, Telemetry: st.tel,
			Logger: c.logger.With("component", "otlp"), Version: st.build.Version,
		})
		if err != nil {
			return nil, fmt.Errorf("OTLP metrics exporter: %w", err)
		}
		exp := c.metrics
		undo = append(undo, func() { _ = exp.Close() })
	}

	// Last: a collector built is one that runs (it releases its Docker
	// client when Run ends).
	collOpts := collector.Options{Config: *cfg, Store: st.store, Telemetry: st.tel, Logger: c.logger.With("component", "collector")}
	if c.logs != nil {
		collOpts.Logs = &c.logs.collector
	}
	if c.coll, err = collector.New(collOpts); err != nil {
		return nil, err
	}
	if cfg.Exporters.Prometheus.Enabled {
		c.containers = promexp.NewContainerCollector(st.store).WithMachine(promexp.MachineOptions{
			Telemetry: st.tel, Build: st.build, VersionInfo: cfg.Exporters.Prometheus.CadvisorVersionInfo,
		})
	}
	return c, nil
}

// running is a started set of components.
type running struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when every component has returned; err set before
	err    error
}

// stop ends the components and waits for them.
func (r *running) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// start runs the components until ctx is done or one fails; it cannot fail
// itself, everything fallible was done by buildComponents.
func (c *components) start(ctx context.Context, st agentState) *running {
	cfg, logger := c.cfg, c.logger
	procs := setMaxProcs(cfg.Agent.MaxProcs, os.Getenv("GOMAXPROCS") != "")
	logger.Info("starting dockscope", "version", st.build.Version, "revision", st.build.Revision, "config", st.configFile, "gomaxprocs", procs)
	c.web.start()
	c.web.srv.SetSources(c.containers, c.coll.Ready)

	runCtx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return c.coll.Run(gctx) })
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case <-c.web.done:
			return c.web.err
		}
	})
	if c.metrics != nil {
		logger.Info("exporting metrics over OTLP", "protocol", c.metrics.Protocol(), "target", c.metrics.Target())
		g.Go(func() error { return c.metrics.Run(gctx) })
	}
	// What is exported over OTLP decides which self-metrics are served:
	// a user without an endpoint sees no OTLP counters stuck at 0.
	st.tel.SetOTLP(c.metrics != nil, c.logs != nil)
	switch {
	case c.logs != nil: // said below, with the target
	case !cfg.Logs.Enabled:
		logger.Info("container logs are not collected: logs.enabled is false")
	default:
		// Logs leave the agent only over OTLP: say so plainly, or a new
		// user waits for logs that never come.
		logger.Info("container logs are not shipped: no OTLP endpoint is set",
			"hint", "set exporters.otlp.endpoint, or OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, to ship them")
	}
	if c.logs == nil {
		st.tel.SetLogQueue(nil) // a reload may have turned logs off
	} else {
		c.logs.checkpoints.ReportTo(logger.With("component", "checkpoints"), st.tel)
		st.tel.SetLogQueue(c.logs.queue)
		logger.Info("shipping container logs over OTLP", "target", c.logs.exporter.Target(), "state_dir", cfg.Agent.StateDir)
		g.Go(func() error { return c.logs.exporter.Run(gctx, cfg.Exporters.OTLP.Timeout) })
		if os.Getenv("GOMEMLIMIT") == "" {
			// GOMEMLIMIT, when set, is the operator's choice and wins.
			g.Go(func() error {
				followMemoryLimit(gctx, cfg.Logs.BufferBytes, st.store.Len, memoryLimitEvery, debug.SetMemoryLimit)
				return nil
			})
		}
	}
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = g.Wait()
		cancel()
	}()
	return r
}

// webServer is the HTTP endpoint and the goroutine serving it, owned by
// serve; it may outlive the configuration that built it.
type webServer struct {
	cfg     config.WebConfig
	srv     *promexp.Server
	logger  *slog.Logger
	started bool
	cancel  context.CancelFunc
	done    chan struct{} // closed when serving ends; err is set before
	err     error
}

func webOptions(cfg config.WebConfig, st agentState, logger *slog.Logger) promexp.ServerOptions {
	return promexp.ServerOptions{
		ListenAddress: cfg.ListenAddress,
		MetricsPath:   cfg.TelemetryPath,
		WebConfigFile: cfg.ConfigFile,
		EnablePprof:   st.pprof,
		Collectors:    []promexp.Collector{promexp.NewSelfCollector(st.tel, st.store, st.build)},
		Logger:        logger.With("component", "web"),
		Version:       st.build.Version,
	}
}

// newWeb builds the endpoint and binds its address (or takes over
// inherit, the running server's socket) without serving yet.
func newWeb(cfg config.WebConfig, inherit net.Listener, st agentState, logger *slog.Logger) (*webServer, error) {
	opts := webOptions(cfg, st, logger)
	opts.Listener = inherit
	srv, err := promexp.NewServer(opts)
	if err != nil {
		return nil, err
	}
	return &webServer{cfg: cfg, srv: srv, logger: logger, done: make(chan struct{})}, nil
}

// start serves, once; a server kept across a reload is already serving.
func (w *webServer) start() {
	if w.started {
		return
	}
	w.started = true
	w.logger.Info("serving metrics", "address", w.srv.Addr().String(), "path", w.cfg.TelemetryPath)
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		defer close(w.done)
		w.err = w.srv.Run(ctx)
	}()
}

// stop ends serving, or releases the listener of a server never started.
func (w *webServer) stop() {
	if !w.started {
		_ = w.srv.Close()
		return
	}
	w.cancel()
	<-w.done
}

// logPath is the log pipeline's wiring: readers (in the collector) push into
// the queue, the exporter drains it and acknowledges to the checkpointer.
type logPath struct {
	collector   collector.LogOptions
	exporter    *otlp.LogExporter
	queue       *pipeline.LogQueue
	checkpoints *pipeline.Checkpointer
}

// newLogPath returns nil when logs are off or no OTLP endpoint is set. cps,
// when not nil, is the running configuration's checkpointer of the same
// state_dir: two checkpointers of one directory would overwrite each
// other's positions.
func newLogPath(cfg *config.Config, st agentState, cps *pipeline.Checkpointer, logger *slog.Logger) (*logPath, error) {
	if !cfg.Logs.Enabled || !otlp.LogsEnabled(cfg.Exporters.OTLP, os.Getenv) {
		return nil, nil
	}
	if cps == nil {
		var err error
		cps, err = pipeline.OpenCheckpointer(cfg.Agent.StateDir)
		if cps == nil {
			return nil, fmt.Errorf("opening log state in agent.state_dir: %w", err)
		}
		if err != nil {
			logger.Warn("log checkpoints were unreadable and moved aside", "err", err)
		}
	}
	overflow := pipeline.Block
	if cfg.Logs.Overflow == "drop" {
		overflow = pipeline.Drop
	}
	queue := pipeline.NewLogQueue(cfg.Logs.BufferBytes, overflow, st.tel.Stage(pipeline.StageLogs))
	exp, err := otlp.NewLogExporter(otlp.LogOptions{
		Config: cfg.Exporters.OTLP, Batch: cfg.Logs.Batch, Queue: queue, Acker: cps, Store: st.store, Telemetry: st.tel,
		Logger: logger.With("component", "otlp-logs"), Version: st.build.Version,
	})
	if err != nil {
		return nil, fmt.Errorf("OTLP log exporter: %w", err)
	}
	return &logPath{
		collector:   collector.LogOptions{Queue: queue, Checkpoints: cps, MaxLineBytes: cfg.Logs.MaxLineBytes},
		exporter:    exp,
		queue:       queue,
		checkpoints: cps,
	}, nil
}

func newLogger(c config.AgentConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// reportConfigError prints a configuration problem on one line, or every
// problem of a file on a line each, so that one run shows them all.
func reportConfigError(w io.Writer, err error) {
	var problems config.Errors
	if errors.As(err, &problems) && len(problems) > 1 {
		fmt.Fprintf(w, "dockscope: invalid configuration: %d problems:\n", len(problems))
		for _, p := range problems {
			fmt.Fprintln(w, "  "+p.Error())
		}
		return
	}
	fmt.Fprintln(w, "dockscope: invalid configuration:", err)
}

func buildInfo() promexp.BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return stampedBuild(version, revision, bi)
}

// stampedBuild is the agent's version and revision: the ones the build set
// with -ldflags -X, else what the Go toolchain recorded (the module version
// of a `go install …@v1.2.3`, the commit of a build in a git checkout),
// else "dev" and "unknown".
func stampedBuild(version, revision string, bi *debug.BuildInfo) promexp.BuildInfo {
	b := promexp.BuildInfo{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if bi != nil {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && b.Revision == "" {
				b.Revision = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	return b
}

// setMaxProcs applies agent.max_procs unless the GOMAXPROCS environment
// variable is set, and returns the setting in force. 0 restores Go's own
// default, so that a reload that removes the key undoes it.
func setMaxProcs(n int, fromEnv bool) int {
	switch {
	case fromEnv:
	case n > 0:
		runtime.GOMAXPROCS(n)
	default:
		runtime.SetDefaultGOMAXPROCS()
	}
	return runtime.GOMAXPROCS(0)
}
