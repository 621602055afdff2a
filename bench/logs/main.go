// Command logs measures dockscope's log throughput against the ceiling set
// by the Docker Engine API: how fast the agent reads containers' logs and
// delivers them as OTLP log records, what that costs it in CPU and memory,
// and how that compares with reading the same logs with curl.
//
//	go run ./bench/logs [-containers 1,4] [-lines 2000000] [-line-bytes 70]
//	                    [-protocol http/protobuf|grpc] [-mode exited|running]
//	                    [-markdown FILE] [-keep] [-perf DIR]
//	                    [-agent-cmd "..." [-agent-config FILE] [-agent-done-after D]]
//
// For each scenario (a number of containers, each printing -lines lines of
// -line-bytes bytes as fast as it can) it
//
//  1. starts the containers all at once and waits until every line is in
//     Docker's json-file log (-mode exited: the containers have exited;
//     -mode running: each has printed its last line and now idles), so the
//     readers below are never limited by the writers;
//  2. reads every container's log in parallel with curl over the Engine's
//     unix socket (the raw API ceiling, lines/s and dockerd CPU);
//  3. starts an OpenTelemetry Collector (otlp receiver → debug exporter) as
//     the sink and a fresh dockscope, and measures from the agent's start
//     until it has delivered every line (dockscope_records_sent_total
//     {stage="logs"}, polled every 200 ms): lines/s, the agent's CPU seconds
//     per million lines, its peak RSS, dockerd's and the sink's CPU;
//  4. repeats 3 with compression: gzip;
//
// then prints a table with the targets beneath it. Progress goes to stderr.
//
// The agent deliberately does not ship a stopped container that finished
// before it started and that it has no checkpoint for (it would otherwise
// ship every old container on the host at first start); it does ship one
// that finished after its state file was last saved — it was down while the
// container ran. So in -mode exited each agent gets a fresh state directory
// whose checkpoint file is empty and was "saved" just before the containers
// started: the agent restarts and catches up on logs written while it was
// down. -mode running needs no such file: the containers stay up (idle)
// after their last line, and a fresh agent reads running containers' logs
// from their start.
//
// # Another log shipper side by side: -agent-cmd
//
// -agent-cmd "COMMAND LINE" runs another shipper in step 3 instead of
// dockscope (once per scenario, in place of both compression runs), with
// sh -c, as the leader of its own process group (stopped with SIGTERM at
// the end of the run). Before it runs, these placeholders in the command
// line, and in the file given with -agent-config, are replaced:
//
//	{{otlp_http}}       http://127.0.0.1:PORT, the sink's OTLP/HTTP base URL
//	{{otlp_http_logs}}  the same with /v1/logs
//	{{otlp_grpc}}       127.0.0.1:PORT, the sink's OTLP/gRPC address
//	{{otlp_host}}, {{otlp_http_port}}, {{otlp_grpc_port}}
//	{{label}}           dockscope.bench.logs=KEY, the label on the scenario's
//	                    containers ({{label_key}}, {{label_value}} apart)
//	{{container_ids}}   the scenario's container ids, comma-separated
//	{{docker_host}}     unix:///var/run/docker.sock
//	{{dir}}             an empty directory for this run (state, data)
//	{{config}}          where the expanded -agent-config file was written
//
// An unknown placeholder is an error. The shipper must read only the
// scenario's containers (by label or id) and send their lines as OTLP log
// records to the sink, one record per line.
//
// Its delivery cannot be checked line by line as dockscope's is (through
// its own counters and the sink's), so for it the benchmark measures, from
// the command's start until the sink's otelcol_receiver_accepted_log_records
// reaches the number of lines written (polled every -poll, interpolated
// within the last interval): the wall time and so lines/s; the CPU seconds
// of the whole process tree (sh, the shipper and any child, reaped ones
// included); its peak RSS (the tree's summed VmRSS, sampled every -poll,
// and summed VmHWM at the end); dockerd's and the sink's CPU. It fails
// when the command exits or nothing arrives for -stall; after
// -agent-done-after (0: no limit) it stops and reports the records that
// arrived by then, marking the run incomplete. A final count above the
// lines written means the shipper sends other records too (or some twice):
// it is reported, not judged. The shipper must run as a child process: one
// started in a container (docker run) would be measured as the docker CLI.
// With -mode exited a shipper that reads only running containers ships
// nothing; use -mode running for those.
//
// Every container is labelled dockscope.bench=1 and dockscope.bench.logs=KEY
// (KEY names the scenario; the agent follows only that label) and removed at
// the end, also on SIGINT/SIGTERM, unless -keep is given. A later run reuses
// kept containers of the same scenario, so -keep saves the writing phase.
// -perf DIR records each agent run with perf (perf record -g) and writes a
// flat report next to the data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"

	"github.com/dockscope/dockscope/internal/procfs"
)

type options struct {
	containers []int
	lines      int
	lineBytes  int
	protocol   string
	mode       string
	markdown   string
	keep       bool
	perfDir    string
	agentBin   string
	maxProcs   int
	stall      time.Duration
	poll       time.Duration
	// Another shipper instead of dockscope (see the package documentation).
	agentCmd       string
	agentConfig    string
	agentDoneAfter time.Duration
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	cs := fs.String("containers", "1,4", "comma-separated numbers of containers, one scenario each")
	fs.IntVar(&o.lines, "lines", 2000000, "lines each container prints")
	fs.IntVar(&o.lineBytes, "line-bytes", 70, "bytes per line, newline excluded")
	fs.StringVar(&o.protocol, "protocol", "http/protobuf", "OTLP protocol of the agent: http/protobuf or grpc")
	fs.StringVar(&o.mode, "mode", "exited", "exited: containers exit after their last line; running: they idle after it")
	fs.StringVar(&o.markdown, "markdown", "", "also write the tables as Markdown to this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the containers, the image and the working directory (configs, logs) at the end; a later run reuses the containers")
	fs.StringVar(&o.perfDir, "perf", "", "record a CPU profile of each agent run with perf into this directory")
	fs.StringVar(&o.agentBin, "agent-bin", "", "dockscope binary to run (default: build ./cmd/agent)")
	fs.IntVar(&o.maxProcs, "max-procs", -1, "dockscope's agent.max_procs (GOMAXPROCS; 0: Go's default); -1: the agent's default")
	fs.DurationVar(&o.stall, "stall", 60*time.Second, "give up on an agent run when no record is delivered for this long")
	fs.DurationVar(&o.poll, "poll", 200*time.Millisecond, "how often the agent's metrics and RSS are sampled")
	fs.StringVar(&o.agentCmd, "agent-cmd", "", "run this shell command line (sh -c) as the log shipper instead of dockscope; it must ship the "+
		"scenario's lines as OTLP log records to the sink. Placeholders: "+placeholderHelp)
	fs.StringVar(&o.agentConfig, "agent-config", "", "with -agent-cmd: a configuration file for the shipper; its placeholders are replaced and {{config}} names the result")
	fs.DurationVar(&o.agentDoneAfter, "agent-done-after", 0, "with -agent-cmd: stop waiting for the sink to have every record after this long and report what arrived (0: wait, up to -stall without progress)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(*cs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 64 {
			return nil, fmt.Errorf("-containers: %q is not a number from 1 to 64", s)
		}
		o.containers = append(o.containers, n)
	}
	if o.lines < 1 {
		return nil, errors.New("-lines must be at least 1")
	}
	if o.lineBytes < 16 || o.lineBytes > 16000 {
		// Longer lines would be split by Docker, and the raw byte count
		// check below assumes one frame per line.
		return nil, errors.New("-line-bytes must be from 16 to 16000")
	}
	switch o.protocol {
	case "http/protobuf", "grpc":
	default:
		return nil, fmt.Errorf("-protocol must be http/protobuf or grpc, not %q", o.protocol)
	}
	switch o.mode {
	case "exited", "running":
	default:
		return nil, fmt.Errorf("-mode must be exited or running, not %q", o.mode)
	}
	switch {
	case o.agentCmd == "" && (o.agentConfig != "" || o.agentDoneAfter != 0):
		return nil, errors.New("-agent-config and -agent-done-after only go with -agent-cmd")
	case o.agentCmd != "" && (o.agentBin != "" || o.perfDir != "" || o.maxProcs >= 0):
		return nil, errors.New("-agent-cmd excludes -agent-bin, -perf and -max-procs (they are about dockscope)")
	case o.maxProcs < -1:
		return nil, errors.New("-max-procs must be -1 (the agent's default) or more")
	case o.agentDoneAfter < 0:
		return nil, errors.New("-agent-done-after must not be negative")
	case o.agentCmd != "":
		// Catch a bad placeholder now, not after the containers wrote.
		vars := cmdVars(&sink{}, "", nil, "", "")
		if _, err := expand(o.agentCmd, vars); err != nil {
			return nil, fmt.Errorf("-agent-cmd: %w", err)
		}
	}
	return o, nil
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "logs:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once
	}()
	b := &bench{o: o, runID: benchenv.NewRunID()}
	err = b.run(ctx)
	b.cleanup()
	if err != nil {
		progress("FAILED: %v", err)
		os.Exit(1)
	}
}

// progress writes one timestamped line to stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05.0"), fmt.Sprintf(format, args...))
}

type bench struct {
	o       *options
	runID   string
	root    string // module root
	tmp     string
	agent   string // dockscope binary
	otelcol string
	keys    []string // scenario labels whose containers this run owns
	image   bool     // the image was built by this run
	failed  bool     // keep the temporary directory for inspection
}

func (b *bench) run(ctx context.Context) error {
	start := time.Now()
	env := hostInfo(ctx)
	progress("load before: %s", env.loadBefore)

	root, err := benchenv.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	b.root = root
	if b.tmp, err = os.MkdirTemp("", "dockscope-bench-logs-"); err != nil {
		return err
	}
	if err := b.build(ctx); err != nil {
		return err
	}
	dockerd, err := dockerdPID()
	if err != nil {
		return err
	}

	var results []scenarioResult
	for _, n := range b.o.containers {
		r, err := b.scenario(ctx, n, dockerd)
		if err != nil {
			b.failed = true
			if ctx.Err() != nil {
				return err
			}
			progress("scenario %d×%d: %v", n, b.o.lines, err)
			r.err = err
		}
		results = append(results, r)
	}
	env.loadAfter = procfs.LoadAvg()
	env.took = time.Since(start)
	progress("load after: %s", env.loadAfter)

	text := renderText(b.o, env, results)
	fmt.Print(text)
	if b.o.markdown != "" {
		if err := os.WriteFile(b.o.markdown, []byte(renderMarkdown(b.o, env, results)), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", b.o.markdown, err)
		}
		progress("wrote %s", b.o.markdown)
	}
	for _, r := range results {
		if r.err != nil {
			return errors.New("some runs failed (see above)")
		}
	}
	return nil
}

// build makes the agent, the workload image and the collector.
func (b *bench) build(ctx context.Context) error {
	b.agent = b.o.agentBin
	if b.agent == "" && b.o.agentCmd == "" {
		b.agent = filepath.Join(b.tmp, "dockscope")
		progress("building the agent")
		if err := benchenv.GoBuild(ctx, b.root, "./cmd/agent", b.agent); err != nil {
			return err
		}
	}
	wl := filepath.Join(b.tmp, "image", "workload")
	progress("building the workload image %s", imageTag)
	if err := benchenv.GoBuild(ctx, b.root, "./test/workload", wl); err != nil {
		return err
	}
	if err := buildImage(ctx, filepath.Dir(wl)); err != nil {
		return err
	}
	b.image = true
	progress("building (or finding) the OpenTelemetry Collector")
	cmd := exec.CommandContext(ctx, "sh", filepath.Join(b.root, "test/otelcol/build.sh"), "--cache")
	cmd.Dir = b.root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("test/otelcol/build.sh --cache: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	b.otelcol = strings.TrimSpace(lines[len(lines)-1])
	if _, err := os.Stat(b.otelcol); err != nil {
		return fmt.Errorf("collector binary: %w", err)
	}
	return nil
}

// cleanup removes what the run created: the scenarios' containers and the
// image unless -keep, the temporary directory unless a run failed. It runs
// on a fresh context: the run's may have been cancelled by a signal.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if !b.o.keep {
		for _, k := range b.keys {
			if err := removeScenario(ctx, k); err != nil {
				progress("cleanup: %v", err)
			}
		}
		if b.image {
			removeImage(ctx)
		}
	}
	if b.tmp != "" {
		if b.failed || b.o.keep {
			progress("kept %s for inspection (agent and sink logs)", b.tmp)
		} else {
			os.RemoveAll(b.tmp)
		}
	}
}
