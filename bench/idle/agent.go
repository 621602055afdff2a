package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
)

// writeConfig writes the agent's configuration: the fake engine, logs and
// events (unless !logs) exported over OTLP/HTTP to the sink, stats and
// resyncs rare so that only following costs anything.
func writeConfig(path, dir, sock, sinkURL string, port int, logs bool) error {
	cfg := fmt.Sprintf(`agent:
  state_dir: %q
  log_level: warn
docker:
  host: "unix://%s"
discovery:
  resync_interval: 1h
stats:
  interval: 1h
  source: api
logs:
  enabled: %t
  events: true
web:
  listen_address: "127.0.0.1:%d"
exporters:
  otlp:
    endpoint: %q
    protocol: http/protobuf
`, dir+"/state", sock, logs, port, sinkURL)
	return os.WriteFile(path, []byte(cfg), 0o644)
}

// agentProc is the agent under test, in a process group of its own.
type agentProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

func startAgent(bin, config, logPath string) (*agentProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the agent log: %w", err)
	}
	cmd := exec.Command(bin, "-config.file", config, "-web.enable-pprof")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The environment's OTLP and Docker settings must not override the
	// configuration.
	for _, kv := range os.Environ() {
		if !hasAnyPrefix(kv, "OTEL_", "DOCKER_", "GOMEMLIMIT=", "GOGC=", "GOMAXPROCS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	a := &agentProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		a.waitErr = cmd.Wait()
		logf.Close()
		close(a.done)
	}()
	return a, nil
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if len(s) >= len(p) && s[:len(p)] == p {
			return true
		}
	}
	return false
}

// exitErr says whether the agent has exited, and how.
func (a *agentProc) exitErr() error {
	select {
	case <-a.done:
		return fmt.Errorf("the agent exited early (%v); its log %s:\n%s", a.waitErr, a.logPath, benchenv.Tail(a.logPath, 20))
	default:
		return nil
	}
}

// stop sends SIGTERM to the agent's group and waits; after grace, SIGKILL.
func (a *agentProc) stop(grace time.Duration) error {
	select {
	case <-a.done:
		return nil
	default:
	}
	pgid := a.cmd.Process.Pid // Setpgid made the agent its group's leader
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping the agent: %w", err)
	}
	select {
	case <-a.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-a.done
	return fmt.Errorf("the agent did not exit within %s of SIGTERM and was killed", grace)
}

// sink stands in for an OTLP/HTTP backend: it takes every request and
// answers 200 with an empty (valid) protobuf response.
type sink struct {
	url      string
	srv      *http.Server
	requests atomic.Int64
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the OTLP sink: %w", err)
	}
	s := &sink{url: "http://" + ln.Addr().String()}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.requests.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) close() { _ = s.srv.Close() }
