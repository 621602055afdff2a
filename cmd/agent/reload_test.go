package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// reloadAgent is an agent run by serve, as run does, on a configuration
// file the test rewrites between SIGHUPs.
type reloadAgent struct {
	t       *testing.T
	cfgPath string
	addr    string // the first configuration's listen address
	hup     chan os.Signal
	tel     *pipeline.Telemetry
	stderr  *syncBuffer
	cancel  context.CancelFunc
	exit    chan int
}

// agentConfig is a configuration that needs no Docker Engine to start: the
// collector retries its (missing) socket in the background.
func agentConfig(t *testing.T, listen, web string) string {
	return fmt.Sprintf("agent:\n  state_dir: %s\ndocker:\n  host: unix://%s/no-docker.sock\nweb:\n  listen_address: %q\n%s",
		t.TempDir(), t.TempDir(), listen, web)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startReloadAgent(t *testing.T) *reloadAgent {
	t.Helper()
	a := &reloadAgent{t: t, addr: freeAddr(t), hup: make(chan os.Signal, 1), exit: make(chan int, 1), stderr: &syncBuffer{}}
	a.cfgPath = filepath.Join(t.TempDir(), "dockscope.yml")
	a.write(agentConfig(t, a.addr, ""))
	f := &flags{configFile: a.cfgPath, set: map[string]bool{}}
	cfg, err := f.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	st := agentState{store: pipeline.NewStore(), tel: pipeline.NewTelemetry(), build: buildInfo(), stderr: a.stderr}
	a.tel = st.tel
	cur, err := buildComponents(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() { a.exit <- serve(ctx, cur, a.hup, f.loadConfig, st) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-a.exit:
			if code != exitOK {
				t.Errorf("agent exited %d:\n%s", code, a.stderr)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("agent did not stop")
		}
	})
	a.waitScrape(a.addr, "/metrics")
	return a
}

func (a *reloadAgent) write(cfg string) {
	a.t.Helper()
	if err := os.WriteFile(a.cfgPath, []byte(cfg), 0o644); err != nil {
		a.t.Fatal(err)
	}
}

// reload sends SIGHUP and waits until the agent has dealt with it.
func (a *reloadAgent) reload() {
	a.t.Helper()
	_, before := a.tel.ConfigReload()
	time.Sleep(1100 * time.Millisecond) // the reload time has a one-second resolution
	a.hup <- syscall.SIGHUP
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, at := a.tel.ConfigReload(); at.After(before) {
			return
		}
		select {
		case code := <-a.exit:
			a.t.Fatalf("agent exited %d on SIGHUP:\n%s", code, a.stderr)
		default:
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("SIGHUP not handled:\n%s", a.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scrape returns the body of a 200 answer, or fails.
func (a *reloadAgent) scrape(addr, path string) string {
	a.t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		a.t.Fatalf("scraping %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		a.t.Fatalf("scraping %s%s: %s", addr, path, resp.Status)
	}
	return string(body)
}

func (a *reloadAgent) waitScrape(addr, path string) {
	a.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s%s never answered: %v", addr, path, err)
		}
	}
}

func (a *reloadAgent) reloadGauge(addr, path string) string {
	a.t.Helper()
	for _, l := range strings.Split(a.scrape(addr, path), "\n") {
		if v, ok := strings.CutPrefix(l, "dockscope_config_last_reload_successful "); ok {
			return v
		}
	}
	a.t.Fatal("no dockscope_config_last_reload_successful")
	return ""
}

// TestReloadKeepsRunningConfigurationOnError: a reload that cannot build
// one of its components — a web config whose TLS key is missing, a
// telemetry path the HTTP server cannot route, a listen address in use —
// leaves the running configuration serving, reports the failure in the
// gauge and logs it; a good reload after it takes effect.
func TestReloadKeepsRunningConfigurationOnError(t *testing.T) {
	a := startReloadAgent(t)
	dir := t.TempDir()
	webCfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webCfg, []byte("tls_server_config:\n  cert_file: "+dir+"/cert.pem\n  key_file: "+dir+"/key.pem\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	for _, tc := range []struct{ name, listen, web, log string }{
		{"TLS file missing", a.addr, fmt.Sprintf("  config_file: %s\n", webCfg), "cert.pem"},
		{"unroutable telemetry path", a.addr, "  telemetry_path: /metrics/{node\n", "web.telemetry_path"},
		{"listen address in use", busy.Addr().String(), "", busy.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.t = t
			a.write(agentConfig(t, tc.listen, tc.web))
			a.reload()
			if got := a.reloadGauge(a.addr, "/metrics"); got != "0" {
				t.Errorf("dockscope_config_last_reload_successful %s after a failed reload, want 0", got)
			}
			t.Log(lastLine(a.stderr.String(), "reload failed"))
			if out := a.stderr.String(); !strings.Contains(out, "configuration reload failed; keeping the running configuration") || !strings.Contains(out, tc.log) {
				t.Errorf("the failure naming %q was not logged:\n%s", tc.log, out)
			}
		})
	}

	// A good reload moves the endpoint: a new address and path.
	a.t = t
	addr := freeAddr(t)
	a.write(agentConfig(t, addr, "  telemetry_path: /m\n"))
	a.reload()
	if got := a.reloadGauge(addr, "/m"); got != "1" {
		t.Errorf("dockscope_config_last_reload_successful %s after a good reload, want 1", got)
	}
	// The previous server finishes its responses after the new one runs.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + a.addr + "/metrics")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the previous address still answers after a reload moved the endpoint")
		}
	}
}

// TestReloadChangingTelemetryPathKeepsTheSocket: a reload that changes
// the web section but not the address takes the listening socket over, so
// scrapes go on throughout.
func TestReloadChangingTelemetryPathKeepsTheSocket(t *testing.T) {
	a := startReloadAgent(t)
	// A connection per request: a keep-alive connection that the old
	// server closes as the client reuses it is HTTP's own race (clients
	// retry it); what must not happen is a refused connection.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	stop, failed := make(chan struct{}), make(chan string, 1)
	go func() {
		defer close(failed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := client.Get("http://" + a.addr + "/healthz")
			if err != nil {
				failed <- err.Error()
				return
			}
			resp.Body.Close()
		}
	}()
	a.write(agentConfig(t, a.addr, "  telemetry_path: /m\n"))
	a.reload()
	if got := a.reloadGauge(a.addr, "/m"); got != "1" {
		t.Errorf("dockscope_config_last_reload_successful %s, want 1", got)
	}
	close(stop)
	if msg, ok := <-failed; ok {
		t.Errorf("a request failed during the reload: %s", msg)
	}
}

// TestConfigCheckRefusesWhatReloadRefuses: --config.check builds the web
// endpoint's configuration, so a TLS file the web config names but that
// cannot be read is refused there too.
func TestConfigCheckRefusesWhatReloadRefuses(t *testing.T) {
	dir := t.TempDir()
	webCfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webCfg, []byte("tls_server_config:\n  cert_file: "+dir+"/cert.pem\n  key_file: "+dir+"/key.pem\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ cfg, want string }{
		{"web:\n  config_file: " + webCfg + "\n", "cert.pem"},
		{"web:\n  telemetry_path: /metrics/{node\n", ":2: web.telemetry_path: is not an HTTP path pattern"},
		{"exporters:\n  otlp:\n    endpoint: https://collector:4318\n    tls:\n      ca_file: " + webCfg + "\n", "no PEM certificate"},
	} {
		p := writeFile(t, tc.cfg)
		code, _, stderr := runAgentCLI("--config.file", p, "--config.check")
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d naming %q", tc.cfg, code, stderr, exitUsage, tc.want)
		}
	}
}

// syncBuffer is a log destination the test reads while the agent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func lastLine(out, containing string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], containing) {
			return lines[i]
		}
	}
	return ""
}

// discard releases what buildComponents built, for components never started.
func discard(c *components) {
	c.web.stop()
	if c.logs != nil {
		_ = c.logs.exporter.Close()
	}
	if c.metrics != nil {
		_ = c.metrics.Close()
	}
}

// TestReloadHandsOverLogCheckpoints: the next configuration's log path
// takes over the running checkpointer of the same state_dir (two would
// overwrite each other's positions), opens its own for another directory,
// and a reload given up after the log path was built returns its error
// (undoing what it built, which once dereferenced the discarded result).
func TestReloadHandsOverLogCheckpoints(t *testing.T) {
	unsetEnv := func(name string) {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"} {
		unsetEnv(name)
	}
	stateDir := t.TempDir()
	load := func(stateDir string) *config.Config {
		t.Helper()
		p := writeFile(t, fmt.Sprintf("agent:\n  state_dir: %s\ndocker:\n  host: unix://%s/no-docker.sock\nweb:\n  listen_address: 127.0.0.1:0\nexporters:\n  otlp:\n    endpoint: 127.0.0.1:1\n",
			stateDir, t.TempDir()))
		cfg, err := config.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	st := agentState{store: pipeline.NewStore(), tel: pipeline.NewTelemetry(), build: buildInfo(), stderr: io.Discard}
	cur, err := buildComponents(load(stateDir), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer discard(cur)
	if cur.logs == nil || cur.metrics == nil {
		t.Fatal("logs and OTLP metrics are off; the test needs them on")
	}

	same, err := buildComponents(load(stateDir), st, cur)
	if err != nil {
		t.Fatal(err)
	}
	if same.logs.checkpoints != cur.logs.checkpoints {
		t.Error("a reload with the same state_dir opened a second checkpointer")
	}
	if same.web != cur.web {
		t.Error("a reload with the same web section built a second server")
	}
	same.web = nil // cur's, stopped by cur's discard
	_ = same.logs.exporter.Close()
	_ = same.metrics.Close()

	other, err := buildComponents(load(t.TempDir()), st, cur)
	if err != nil {
		t.Fatal(err)
	}
	if other.logs.checkpoints == cur.logs.checkpoints {
		t.Error("a reload to another state_dir kept the previous checkpointer")
	}
	_ = other.logs.exporter.Close()
	_ = other.metrics.Close()

	// The metrics exporter, built after the log path, fails: the log
	// exporter built before it is closed.
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "carrier-pigeon")
	if _, err := buildComponents(load(stateDir), st, cur); err == nil || !strings.Contains(err.Error(), "carrier-pigeon") {
		t.Fatalf("buildComponents with a bad metrics protocol: %v", err)
	}
}
