package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/dockscope/dockscope/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func runAgentCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dockscope.yml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadConfigExitsTwoNamingFileLineAndKey(t *testing.T) {
	p := writeFile(t, "stats:\n  interval: 10s\n  intervall: 5s\n")
	code, _, stderr := runAgentCLI("--config.file", p)
	if code != exitUsage {
		t.Fatalf("exit code %d, want %d", code, exitUsage)
	}
	if want := p + ":3: stats.intervall"; !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q does not name %q", stderr, want)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("want one line, got %q", stderr)
	}
}

func TestMissingConfigFile(t *testing.T) {
	code, _, stderr := runAgentCLI("--config.file", "/nonexistent/dockscope.yml")
	if code != exitUsage || !strings.Contains(stderr, "/nonexistent/dockscope.yml") {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
}

func TestConfigCheck(t *testing.T) {
	p := writeFile(t, "stats:\n  interval: 15s\n")
	code, stdout, stderr := runAgentCLI("--config.file", p, "--config.check")
	if code != exitOK || !strings.Contains(stdout, "configuration OK") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// A flag that breaks an otherwise good file is caught too.
	code, _, stderr = runAgentCLI("--config.file", p, "--config.check", "--web.listen-address", "nonsense")
	if code != exitUsage || !strings.Contains(stderr, "web.listen_address") {
		t.Fatalf("bad flag: code %d, stderr %q", code, stderr)
	}
}

func TestPrintDefaultConfigRoundTrips(t *testing.T) {
	code, stdout, _ := runAgentCLI("--print-default-config")
	if code != exitOK {
		t.Fatalf("exit code %d", code)
	}
	cfg, err := config.Parse([]byte(stdout), "default.yml")
	if err != nil {
		t.Fatalf("printed default config does not parse: %v", err)
	}
	if cfg.Web.ListenAddress != ":9817" || !cfg.Exporters.Prometheus.Enabled {
		t.Errorf("printed defaults differ: %+v", cfg.Web)
	}
}

func TestVersionAndUsage(t *testing.T) {
	if code, stdout, _ := runAgentCLI("--version"); code != exitOK || !strings.HasPrefix(stdout, "dockscope ") {
		t.Errorf("--version: %d %q", code, stdout)
	}
	if code, _, stderr := runAgentCLI("--no-such-flag"); code != exitUsage || !strings.Contains(stderr, "no-such-flag") {
		t.Errorf("unknown flag: %d %q", code, stderr)
	}
	if code, _, _ := runAgentCLI("stray"); code != exitUsage {
		t.Errorf("stray argument: %d", code)
	}
}

func TestSetMaxProcs(t *testing.T) {
	runtime.SetDefaultGOMAXPROCS()
	goDefault := runtime.GOMAXPROCS(0)
	t.Cleanup(runtime.SetDefaultGOMAXPROCS)

	if got := setMaxProcs(1, false); got != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("agent.max_procs 1: GOMAXPROCS %d (returned %d), want 1", runtime.GOMAXPROCS(0), got)
	}
	// The environment variable wins: the setting in force is left alone.
	if got := setMaxProcs(3, true); got != 1 {
		t.Errorf("agent.max_procs 3 with GOMAXPROCS in the environment: %d, want 1 (unchanged)", got)
	}
	// A reload that sets 0 gives Go's default back.
	if got := setMaxProcs(0, false); got != goDefault {
		t.Errorf("agent.max_procs 0: GOMAXPROCS %d, want Go's default %d", got, goDefault)
	}
}
