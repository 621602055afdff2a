// Command soak runs dockscope for a long time against a host that keeps
// changing and a backend that keeps failing, and reports whether its
// memory, goroutines and file descriptors stay flat and whether every log
// line arrived exactly once. It is not a timing benchmark: its figures do
// not depend on how busy the host is.
//
//	go run ./bench/soak [-duration 30m] [-csv FILE] [-plot FILE.svg]
//	                    [-churn-every 2s] [-churn-lines 10] [-steady 4] [-steady-rate 10]
//	                    [-outage-every 2m] [-outage 20s] [-protocol http/protobuf|grpc]
//
// It builds dockscope from ./cmd/agent, the workload image (FROM scratch,
// like the other benchmarks) and the OpenTelemetry Collector of
// test/otelcol, then runs, for -duration:
//
//   - dockscope following only this run's containers, shipping their logs
//     over OTLP to the collector, whose file exporter writes every record
//     it accepts as OTLP/JSON;
//   - churn: every -churn-every a container starts, prints 1 to
//     -churn-lines numbered lines ("line <n> ...", every third on stderr)
//     and exits; -churn-remove-after later it is removed;
//   - -steady containers printing -steady-rate numbered lines a second for
//     the whole run;
//   - a flaky backend: every -outage-every the collector is stopped
//     (SIGTERM) for -outage, then started again on the same ports;
//   - every -sample-every, the agent's RSS (VmRSS and VmHWM from
//     /proc/<pid>/status), goroutines (go_goroutines from its /metrics),
//     open file descriptors (entries of /proc/<pid>/fd), threads and a few
//     of its own counters, as one CSV row.
//
// Then it stops the churn and the steady containers (reading from their
// Docker logs how many lines each wrote), waits until the collector holds
// every line or nothing more arrives for -drain-timeout, stops the agent
// and the collector, and counts the records of each container in the
// collector's output: every line number must be there exactly once. It
// writes the plot, prints a summary, and exits 1 if a line was lost or
// duplicated or the agent failed.
//
// Every container carries the labels dockscope.soak=1 and
// dockscope.soak.run=<run id>, the image is dockscope-soak-workload:<run
// id>; both are removed at the end, also after SIGINT/SIGTERM (a second
// signal abandons the cleanup). Only this run's containers are ever
// removed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	duration         time.Duration
	csvPath          string
	plotPath         string
	sampleEvery      time.Duration
	churnEvery       time.Duration
	churnLines       int
	churnRemoveAfter time.Duration
	churnParallel    int
	steady           int
	steadyRate       float64
	lineBytes        int
	outageEvery      time.Duration
	outage           time.Duration
	drainTimeout     time.Duration
	protocol         string
	statsSource      string
	agentBin         string
	keep             bool
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 30*time.Minute, "how long the soak runs (the drain at the end comes on top)")
	fs.StringVar(&o.csvPath, "csv", "soak.csv", "write the samples to this CSV file")
	fs.StringVar(&o.plotPath, "plot", "soak.svg", "write a plot of RSS, goroutines and open fds over time to this SVG file")
	fs.DurationVar(&o.sampleEvery, "sample-every", 10*time.Second, "how often the agent is sampled")
	fs.DurationVar(&o.churnEvery, "churn-every", 2*time.Second, "start a short-lived container this often")
	fs.IntVar(&o.churnLines, "churn-lines", 10, "a short-lived container prints 1 to this many lines (container i prints 1 + i mod churn-lines)")
	fs.DurationVar(&o.churnRemoveAfter, "churn-remove-after", 5*time.Second, "remove a short-lived container this long after it exited")
	fs.IntVar(&o.churnParallel, "churn-parallel", 8, "most short-lived containers alive at once; a start that would exceed it is skipped")
	fs.IntVar(&o.steady, "steady", 4, "containers logging for the whole run")
	fs.Float64Var(&o.steadyRate, "steady-rate", 10, "lines per second of each steady container")
	fs.IntVar(&o.lineBytes, "line-bytes", 80, "bytes per line, newline excluded")
	fs.DurationVar(&o.outageEvery, "outage-every", 2*time.Minute, "stop the collector this often (0: never)")
	fs.DurationVar(&o.outage, "outage", 20*time.Second, "for this long")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 3*time.Minute, "at the end, give up waiting for the last lines after this long without progress")
	fs.StringVar(&o.protocol, "protocol", "http/protobuf", "the agent's OTLP protocol: http/protobuf or grpc")
	fs.StringVar(&o.statsSource, "stats-source", "auto", "the agent's stats.source: api, cgroup or auto")
	fs.StringVar(&o.agentBin, "agent-bin", "", "dockscope binary to run (default: build ./cmd/agent)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory (agent and collector logs, collector output) at the end")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.duration <= 0:
		return nil, errors.New("-duration must be positive")
	case o.sampleEvery <= 0:
		return nil, errors.New("-sample-every must be positive")
	case o.churnEvery < 0 || o.churnRemoveAfter < 0:
		return nil, errors.New("-churn-every and -churn-remove-after must not be negative")
	case o.churnLines < 1:
		return nil, errors.New("-churn-lines must be at least 1")
	case o.churnParallel < 1:
		return nil, errors.New("-churn-parallel must be at least 1")
	case o.steady < 0 || o.steadyRate <= 0:
		return nil, errors.New("-steady must not be negative and -steady-rate must be positive")
	case o.lineBytes < 16 || o.lineBytes > 16000:
		// Longer lines would be split by Docker into several frames.
		return nil, errors.New("-line-bytes must be from 16 to 16000")
	case o.outageEvery < 0 || (o.outageEvery > 0 && (o.outage <= 0 || o.outage >= o.outageEvery)):
		return nil, errors.New("-outage must be positive and shorter than -outage-every")
	case o.drainTimeout <= 0:
		return nil, errors.New("-drain-timeout must be positive")
	case o.protocol != "http/protobuf" && o.protocol != "grpc":
		return nil, fmt.Errorf("-protocol must be http/protobuf or grpc, not %q", o.protocol)
	case o.statsSource != "api" && o.statsSource != "cgroup" && o.statsSource != "auto":
		return nil, fmt.Errorf("-stats-source must be api, cgroup or auto, not %q", o.statsSource)
	case o.csvPath == "" || o.plotPath == "":
		return nil, errors.New("-csv and -plot must name files")
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
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	// The first SIGINT/SIGTERM cancels ctx, which unwinds the run through
	// its cleanups; a second one kills the program outright.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-sigs:
			signal.Stop(sigs)
			log.Warn("interrupted: stopping the agent and the collector, removing the soak's containers (again to abandon them)", "signal", sig)
			cancel()
		case <-ctx.Done():
			signal.Stop(sigs)
		}
	}()

	s, err := newSoak(ctx, o, log)
	if err != nil {
		log.Error("setting up", "err", err)
		if s != nil {
			s.close()
		}
		return 1
	}
	res, err := s.run(ctx)
	s.close()
	if ctx.Err() != nil {
		return 130
	}
	if err != nil {
		log.Error("soak failed", "err", err)
		return 1
	}
	fmt.Print(res.summary())
	if !res.ok() {
		return 1
	}
	return 0
}
