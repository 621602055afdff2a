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
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/dockscope/dockscope/collector"
	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/exporters/otlp"
	promexp "github.com/dockscope/dockscope/exporters/prometheus"
	"github.com/dockscope/dockscope/pipeline"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

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
		fmt.Fprintln(stderr, "dockscope: invalid configuration:", err)
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
	store := pipeline.NewStore()
	tel := pipeline.NewTelemetry()
	var web *webServer
	defer func() {
		if web != nil {
			web.stop()
		}
	}()
	for {
		logger := newLogger(cfg.Agent, stderr)
		procs := setMaxProcs(cfg.Agent.MaxProcs, os.Getenv("GOMAXPROCS") != "")
		logger.Info("starting dockscope", "version", build.Version, "config", f.configFile, "gomaxprocs", procs)
		// The listener survives reloads that leave the web section alone,
		// so Prometheus never sees a refused scrape because of a SIGHUP.
		if web == nil || web.cfg != cfg.Web {
			if web != nil {
				web.stop()
			}
			if web, err = startWeb(cfg.Web, f.pprof, tel, store, build, logger); err != nil {
				logger.Error("dockscope stopped", "err", err)
				return exitFailed
			}
		}
		next, err := runAgent(ctx, cfg, hup, f, agentState{store: store, tel: tel, build: build, logger: logger, web: web})
		if err != nil {
			logger.Error("dockscope stopped", "err", err)
			return exitFailed
		}
		if next == nil {
			logger.Info("dockscope stopped")
			return exitOK
		}
		cfg = next
	}
}

// webServer is the HTTP endpoint and the goroutine serving it, owned by run.
type webServer struct {
	cfg    config.WebConfig
	srv    *promexp.Server
	cancel context.CancelFunc
	done   chan struct{} // closed when serving ends; err is set before
	err    error
}

func startWeb(cfg config.WebConfig, pprof bool, tel *pipeline.Telemetry, store *pipeline.Store, build promexp.BuildInfo, logger *slog.Logger) (*webServer, error) {
	srv, err := promexp.NewServer(promexp.ServerOptions{
		ListenAddress: cfg.ListenAddress,
		MetricsPath:   cfg.TelemetryPath,
		WebConfigFile: cfg.ConfigFile,
		EnablePprof:   pprof,
		Collectors:    []promexp.Collector{promexp.NewSelfCollector(tel, store, build)},
		Logger:        logger.With("component", "web"),
		Version:       build.Version,
	})
	if err != nil {
		return nil, err
	}
	logger.Info("serving metrics", "address", srv.Addr().String(), "path", cfg.TelemetryPath)
	ctx, cancel := context.WithCancel(context.Background())
	w := &webServer{cfg: cfg, srv: srv, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.err = srv.Run(ctx)
	}()
	return w, nil
}

func (w *webServer) stop() {
	w.cancel()
	<-w.done
}

// runAgent runs one configuration until a signal ends the process (nil,
// nil) or SIGHUP brings a valid new configuration (next, nil). An invalid
// new configuration is logged and the running one kept.
func runAgent(ctx context.Context, cfg *config.Config, hup <-chan os.Signal, f *flags, st agentState) (*config.Config, error) {
	store, tel, logger, build := st.store, st.tel, st.logger, st.build
	logs, err := newLogPath(cfg, store, tel, logger)
	if err != nil {
		return nil, err
	}
	collOpts := collector.Options{Config: *cfg, Store: store, Telemetry: tel, Logger: logger.With("component", "collector")}
	if logs != nil {
		collOpts.Logs = &logs.collector
	}
	coll, err := collector.New(collOpts)
	if err != nil {
		return nil, err
	}
	var containers *promexp.ContainerCollector
	if cfg.Exporters.Prometheus.Enabled {
		containers = promexp.NewContainerCollector(store)
	}
	st.web.srv.SetSources(containers, coll.Ready)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return coll.Run(gctx) })
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case <-st.web.done:
			return st.web.err
		}
	})
	if cfg.Exporters.OTLP.Enabled(os.Getenv) {
		interval := cfg.Exporters.OTLP.Interval
		if interval == 0 {
			interval = cfg.Stats.Interval
		}
		exp, err := otlp.NewMetricsExporter(gctx, otlp.MetricsOptions{
			Config: cfg.Exporters.OTLP, Interval: interval, Store: store, Telemetry: tel,
			Logger: logger.With("component", "otlp"), Version: build.Version,
		})
		if err != nil {
			cancel()
			_ = g.Wait()
			return nil, err
		}
		logger.Info("exporting metrics over OTLP", "protocol", exp.Protocol(), "interval", interval)
		g.Go(func() error { return exp.Run(gctx) })
	}

	if logs != nil {
		logger.Info("shipping container logs over OTLP", "target", logs.exporter.Target(), "state_dir", cfg.Agent.StateDir)
		g.Go(func() error { return logs.exporter.Run(gctx, cfg.Exporters.OTLP.Timeout) })
		if os.Getenv("GOMEMLIMIT") == "" {
			// GOMEMLIMIT, when set, is the operator's choice and wins.
			g.Go(func() error {
				followMemoryLimit(gctx, cfg.Logs.BufferBytes, store.Len, memoryLimitEvery, debug.SetMemoryLimit)
				return nil
			})
		}
	}

	var next *config.Config
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				c, err := f.loadConfig()
				if err != nil {
					logger.Error("configuration reload failed; keeping the running configuration", "err", err)
					tel.SetConfigReload(false, time.Now())
					continue
				}
				tel.SetConfigReload(true, time.Now())
				logger.Info("configuration reloaded; restarting components")
				next = c
				cancel()
				return nil
			}
		}
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return next, nil
}

// agentState is what survives configuration reloads.
type agentState struct {
	store  *pipeline.Store
	tel    *pipeline.Telemetry
	logger *slog.Logger
	build  promexp.BuildInfo
	web    *webServer
}

// logPath is the log pipeline's wiring: readers (in the collector) push into
// the queue, the exporter drains it and acknowledges to the checkpointer.
type logPath struct {
	collector collector.LogOptions
	exporter  *otlp.LogExporter
}

// newLogPath returns nil when logs are off or no OTLP endpoint is set.
func newLogPath(cfg *config.Config, store *pipeline.Store, tel *pipeline.Telemetry, logger *slog.Logger) (*logPath, error) {
	if !cfg.Logs.Enabled || !otlp.LogsEnabled(cfg.Exporters.OTLP, os.Getenv) {
		return nil, nil
	}
	cps, err := pipeline.OpenCheckpointer(cfg.Agent.StateDir)
	if cps == nil {
		return nil, fmt.Errorf("opening log state in agent.state_dir: %w", err)
	}
	if err != nil {
		logger.Warn("log checkpoints were unreadable; logs are read from the start", "err", err)
	}
	cps.ReportTo(logger.With("component", "checkpoints"), tel)
	overflow := pipeline.Block
	if cfg.Logs.Overflow == "drop" {
		overflow = pipeline.Drop
	}
	queue := pipeline.NewLogQueue(cfg.Logs.BufferBytes, overflow, tel.Stage(pipeline.StageLogs))
	tel.SetLogQueue(queue)
	exp, err := otlp.NewLogExporter(otlp.LogOptions{
		Config: cfg.Exporters.OTLP, Batch: cfg.Logs.Batch, Queue: queue, Acker: cps, Store: store, Telemetry: tel,
		Logger: logger.With("component", "otlp-logs"), Version: version,
	})
	if err != nil {
		return nil, err
	}
	return &logPath{
		collector: collector.LogOptions{Queue: queue, Checkpoints: cps, MaxLineBytes: cfg.Logs.MaxLineBytes},
		exporter:  exp,
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

func buildInfo() promexp.BuildInfo {
	b := promexp.BuildInfo{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				b.Revision = s.Value
			}
		}
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
