package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
	"github.com/dockscope/dockscope/bench/internal/promscrape"
	"github.com/dockscope/dockscope/internal/procfs"
)

// placeholderHelp documents the placeholders of -agent-cmd and
// -agent-config, for the package documentation and -help alike.
const placeholderHelp = `{{otlp_http}} (http://127.0.0.1:PORT, OTLP/HTTP base URL), {{otlp_http_logs}} (the same with /v1/logs), ` +
	`{{otlp_grpc}} (127.0.0.1:PORT), {{otlp_http_port}}, {{otlp_grpc_port}}, {{otlp_host}} (127.0.0.1), ` +
	`{{label}} (dockscope.bench.logs=KEY, the label on the scenario's containers), {{label_key}}, {{label_value}}, ` +
	`{{container_ids}} (comma-separated), {{docker_host}} (unix:///var/run/docker.sock), ` +
	`{{dir}} (an empty directory for the run), {{config}} (the expanded -agent-config file)`

var placeholderRE = regexp.MustCompile(`\{\{\s*([A-Za-z0-9_]+)\s*\}\}`)

// expand replaces every {{name}} of text with vars[name]. An unknown name
// is an error, so that a typo does not reach the agent as literal braces.
func expand(text string, vars map[string]string) (string, error) {
	var unknown []string
	out := placeholderRE.ReplaceAllStringFunc(text, func(m string) string {
		name := placeholderRE.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok {
			if !slices.Contains(unknown, name) {
				unknown = append(unknown, name)
			}
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown placeholder(s) %s; known: %s", "{{"+strings.Join(unknown, "}}, {{")+"}}", placeholderHelp)
	}
	return out, nil
}

// cmdVars are the placeholder values of one -agent-cmd run.
func cmdVars(s *sink, key string, ids []string, dir, config string) map[string]string {
	return map[string]string{
		"otlp_http":      fmt.Sprintf("http://127.0.0.1:%d", s.httpPort),
		"otlp_http_logs": fmt.Sprintf("http://127.0.0.1:%d/v1/logs", s.httpPort),
		"otlp_grpc":      fmt.Sprintf("127.0.0.1:%d", s.grpcPort),
		"otlp_http_port": strconv.Itoa(s.httpPort),
		"otlp_grpc_port": strconv.Itoa(s.grpcPort),
		"otlp_host":      "127.0.0.1",
		"label":          logsLabel + "=" + key,
		"label_key":      logsLabel,
		"label_value":    key,
		"container_ids":  strings.Join(ids, ","),
		"docker_host":    "unix://" + dockerSock,
		"dir":            dir,
		"config":         config,
	}
}

// cmdRun measures -agent-cmd on one scenario: it starts a sink and the
// command, and measures from the command's start until the sink has
// accepted expected log records (its otelcol_receiver_accepted_log_records,
// polled every -poll), or -agent-done-after passes, or nothing arrives for
// -stall. Unlike dockscope's runs, which lines arrived is not checked:
// another shipper may add records of its own, so only the count is.
func (b *bench) cmdRun(ctx context.Context, w workload, ids []string, expected int64, dockerd int) (agentResult, error) {
	r := agentResult{compression: "cmd", cmd: true}
	dir := filepath.Join(b.tmp, w.key+"-cmd")
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return r, fmt.Errorf("creating the command's directory: %w", err)
	}
	sk, err := b.startSink(ctx, dir)
	if err != nil {
		return r, err
	}
	defer sk.proc.stop(syscall.SIGTERM)

	vars := cmdVars(sk, w.key, ids, work, "")
	if b.o.agentConfig != "" {
		tmpl, err := os.ReadFile(b.o.agentConfig)
		if err != nil {
			return r, fmt.Errorf("reading -agent-config: %w", err)
		}
		text, err := expand(string(tmpl), vars)
		if err != nil {
			return r, fmt.Errorf("-agent-config %s: %w", b.o.agentConfig, err)
		}
		vars["config"] = filepath.Join(dir, filepath.Base(b.o.agentConfig))
		if err := os.WriteFile(vars["config"], []byte(text), 0o644); err != nil {
			return r, fmt.Errorf("writing the expanded -agent-config: %w", err)
		}
	}
	cmdline, err := expand(b.o.agentCmd, vars)
	if err != nil {
		return r, fmt.Errorf("-agent-cmd: %w", err)
	}

	sinkCPU0, err := procfs.CPUSeconds(sk.proc.pid())
	if err != nil {
		return r, err
	}
	dCPU0, err := procfs.CPUSeconds(dockerd)
	if err != nil {
		return r, err
	}
	h0, _ := procfs.ReadHostTicks()
	logPath := filepath.Join(dir, "agent.log")
	progress("  command: %s", cmdline)
	t0 := time.Now()
	agent, err := startGroup(ctx, "agent command", logPath, syscall.SIGTERM, "sh", "-c", cmdline)
	if err != nil {
		return r, err
	}
	defer agent.stop(syscall.SIGTERM)
	pid := agent.pid()
	fail := func(format string, args ...any) (agentResult, error) {
		msg := fmt.Sprintf(format, args...)
		return r, fmt.Errorf("%s\nlast lines of the command's output (%s):\n%s", msg, logPath, benchenv.Tail(logPath, 15))
	}
	// treeCPU is the command's CPU so far: sh, the agent and every other
	// descendant, reaped children included.
	treeCPU := func() float64 {
		snap, err := procfs.TreeCPU(pid)
		if err != nil {
			return r.agentCPU // gone: keep the last reading
		}
		return procfs.SecondsBetween(nil, snap)
	}

	tick := time.NewTicker(b.o.poll)
	defer tick.Stop()
	var (
		prevT                   = t0
		prevAccepted            float64
		lastProgress, lastMoved = t0, t0
		tDone                   time.Time
	)
	for tDone.IsZero() {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-agent.exited:
			return fail("the command exited after %.1f s with %v, the sink having accepted %.0f of %d records",
				time.Since(t0).Seconds(), agent.err, prevAccepted, expected)
		case <-tick.C:
		}
		now := time.Now()
		if rss, _, err := procfs.TreeMemKiB(pid); err == nil {
			r.peakRSS = max(r.peakRSS, rss<<10)
		}
		r.agentCPU = treeCPU()
		m, err := promscrape.Scrape(ctx, sk.metricsURL, 2*time.Second)
		if err != nil {
			return fail("scraping the sink: %v", err)
		}
		accepted := promscrape.Sum(m, acceptedKey)
		if accepted > 0 && r.firstSent == 0 {
			r.firstSent = now.Sub(t0).Seconds()
		}
		if accepted != prevAccepted {
			lastMoved = now
		}
		switch {
		case accepted >= float64(expected):
			// Place the moment the last record arrived between the last
			// two polls, as for dockscope.
			tDone = now
			if accepted > prevAccepted {
				frac := (float64(expected) - prevAccepted) / (accepted - prevAccepted)
				tDone = prevT.Add(time.Duration(frac * float64(now.Sub(prevT))))
			}
		case b.o.agentDoneAfter > 0 && now.Sub(t0) >= b.o.agentDoneAfter:
			r.incomplete = true
			tDone = now
		case now.Sub(lastMoved) > b.o.stall:
			return fail("stalled: the sink accepted %.0f of %d records, none for %s", accepted, expected, b.o.stall)
		}
		if !tDone.IsZero() {
			if c, err := procfs.CPUSeconds(dockerd); err == nil {
				r.dockerdCPU = c - dCPU0
			}
			if c, err := procfs.CPUSeconds(sk.proc.pid()); err == nil {
				r.sinkCPU = c - sinkCPU0
			}
			h1, _ := procfs.ReadHostTicks()
			r.hostBusy = procfs.BusyCores(h0, h1, now.Sub(t0))
			if _, hwm, err := procfs.TreeMemKiB(pid); err == nil {
				r.hwm = hwm << 10
			}
			break
		}
		if now.Sub(lastProgress) >= 2*time.Second {
			lastProgress = now
			progress("  cmd: sink accepted %.0f/%d (%.0f/s), tree RSS %.1f MiB, %.1f CPU-s",
				accepted, expected, accepted/now.Sub(t0).Seconds(), float64(r.peakRSS)/mib, r.agentCPU)
		}
		prevT, prevAccepted = now, accepted
	}

	r.wall = tDone.Sub(t0).Seconds()
	delivered := float64(expected)
	if r.incomplete {
		delivered = prevAccepted
	}
	r.linesPerSec = delivered / r.wall
	// A pause, then the final count: more than expected means the command
	// ships other records too, or some twice.
	if err := benchenv.Sleep(ctx, time.Second); err != nil {
		return r, err
	}
	if m, err := promscrape.Scrape(ctx, sk.metricsURL, 2*time.Second); err == nil {
		r.accepted = promscrape.Sum(m, acceptedKey)
		if ref := promscrape.Sum(m, refusedKey); ref > 0 {
			progress("WARNING: the sink refused %.0f log records", ref)
		}
	}
	r.ok = true
	progress("command: %.0f records in %.2f s = %.0f records/s; %.2f CPU-s = %.2f CPU-s/M lines; peak tree RSS %.1f MiB (summed VmHWM %.1f); "+
		"dockerd %.2f CPU-s; sink %.2f CPU-s; host busy %.2f cores; sink accepted %.0f in the end (%d lines written)",
		delivered, r.wall, r.linesPerSec, r.agentCPU, r.agentCPU/(float64(expected)/1e6), float64(r.peakRSS)/mib, float64(r.hwm)/mib,
		r.dockerdCPU, r.sinkCPU, r.hostBusy, r.accepted, expected)
	switch {
	case r.incomplete:
		r.err = fmt.Errorf("after -agent-done-after %s the sink had accepted only %.0f of %d records", b.o.agentDoneAfter, prevAccepted, expected)
	case r.accepted > float64(expected):
		progress("NOTE: the sink accepted %.0f records for %d lines: the command ships other records too, or some twice", r.accepted, expected)
	}
	return r, r.err
}
