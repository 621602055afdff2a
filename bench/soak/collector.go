package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
)

// collectorConfig: logs go to the file exporter as OTLP/JSON, one export
// request per line, which the soak counts at the end; metrics (the agent
// pushes them too) only to the debug exporter, to keep the file small.
const collectorConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
exporters:
  file:
    path: %q
    format: json
    flush_interval: 100ms
  debug:
    verbosity: basic
service:
  telemetry:
    logs:
      level: info
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
    metrics:
      receivers: [otlp]
      exporters: [debug]
`

// collector is the real OpenTelemetry Collector the agent ships to, which
// the soak stops and starts again to play a flaky backend.
type collector struct {
	bin, config string
	grpcAddr    string // host:port
	httpAddr    string // host:port
	output      string // the current run's file exporter output
	logPath     string

	mu   sync.Mutex
	proc *process // nil while stopped
	// earlier holds the outputs of previous runs: the file exporter
	// truncates its file when it starts, so start moves the old one aside.
	earlier []string
	starts  int
}

func newCollector(bin, dir string) (*collector, error) {
	gp, err := benchenv.FreePort()
	if err != nil {
		return nil, err
	}
	hp, err := benchenv.FreePort()
	if err != nil {
		return nil, err
	}
	if hp == gp {
		if hp, err = benchenv.FreePort(); err != nil {
			return nil, err
		}
	}
	c := &collector{
		bin:      bin,
		config:   filepath.Join(dir, "collector.yml"),
		grpcAddr: fmt.Sprintf("127.0.0.1:%d", gp),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", hp),
		output:   filepath.Join(dir, "collector-output.jsonl"),
		logPath:  filepath.Join(dir, "collector.log"),
	}
	cfg := fmt.Sprintf(collectorConfig, c.grpcAddr, c.httpAddr, c.output)
	if err := os.WriteFile(c.config, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("writing the collector configuration: %w", err)
	}
	return c, nil
}

// start starts the collector (unless it runs) and waits until both
// receivers accept connections.
func (c *collector) start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		return nil
	}
	if c.starts > 0 {
		prev := fmt.Sprintf("%s.%d", c.output, len(c.earlier))
		if err := os.Rename(c.output, prev); err == nil {
			c.earlier = append(c.earlier, prev)
		} else if !os.IsNotExist(err) {
			return fmt.Errorf("moving the collector's output aside: %w", err)
		}
	}
	p, err := startProcess("the collector", c.logPath, c.bin, "--config", c.config)
	if err != nil {
		return err
	}
	c.proc = p
	c.starts++
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if err := p.exited(); err != nil {
			c.proc = nil
			return err
		}
		if listening(c.grpcAddr) && listening(c.httpAddr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the collector to listen on %s and %s: %w", c.grpcAddr, c.httpAddr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func listening(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// stop stops the collector with SIGTERM, which makes it flush the file
// exporter; it is harmless when stopped.
func (c *collector) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return nil
	}
	err := c.proc.stop(30 * time.Second)
	c.proc = nil
	if err != nil {
		return fmt.Errorf("stopping the collector: %w", err)
	}
	return nil
}

func (c *collector) up() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc != nil && c.proc.exited() == nil
}

// outputs lists every run's output file, oldest first.
func (c *collector) outputs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(append([]string(nil), c.earlier...), c.output)
}
