package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// What a new user meets first: the start-up log, --config.check and
// --version.

// unsetOTLPEnv makes sure no OTLP endpoint comes from the environment.
func unsetOTLPEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		t.Setenv(name, "")
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
	}
}

// waitLog waits for a line of the agent's log containing want.
func (a *reloadAgent) waitLog(want string) string {
	a.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l := lastLine(a.stderr.String(), want); l != "" {
			return l
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("no log line with %q:\n%s", want, a.stderr)
		}
	}
}

// TestLogsNotShippedIsSaidAndOTLPSelfMetricsFollow: without an OTLP
// endpoint the start-up log says plainly that container logs are not
// shipped and why, and /metrics has none of the OTLP and log paths'
// self-metrics; a reload that sets an endpoint brings both paths and their
// series, and one that removes it again takes them away.
func TestLogsNotShippedIsSaidAndOTLPSelfMetricsFollow(t *testing.T) {
	unsetOTLPEnv(t)
	otlpSeries := []string{`dockscope_records_sent_total{stage="otlp_metrics"}`, `dockscope_records_sent_total{stage="logs"}`,
		`dockscope_export_failures_total{exporter="otlp"}`, "dockscope_log_queue_bytes", "dockscope_log_gaps_total"}
	served := func(a *reloadAgent) (on, off []string) {
		body := a.scrape(a.addr, "/metrics")
		for _, s := range otlpSeries {
			if strings.Contains(body, "\n"+s+" ") {
				on = append(on, s)
			} else {
				off = append(off, s)
			}
		}
		return on, off
	}

	a := startReloadAgent(t)
	line := a.waitLog("container logs are not shipped")
	for _, want := range []string{"level=INFO", `msg="container logs are not shipped: no OTLP endpoint is set"`, "exporters.otlp.endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if !strings.Contains(line, want) {
			t.Errorf("start-up line %q lacks %q", line, want)
		}
	}
	t.Log(line)
	if on, _ := served(a); len(on) > 0 {
		t.Errorf("without OTLP /metrics serves %v", on)
	}

	a.write(agentConfig(t, a.addr, "exporters:\n  otlp:\n    endpoint: http://127.0.0.1:1\n"))
	before := strings.Count(a.stderr.String(), "container logs are not shipped")
	a.reload()
	a.waitLog("shipping container logs over OTLP")
	if n := strings.Count(a.stderr.String(), "container logs are not shipped"); n != before {
		t.Errorf("with an endpoint the agent still says logs are not shipped:\n%s", a.stderr)
	}
	if _, off := served(a); len(off) > 0 {
		t.Errorf("with OTLP on /metrics lacks %v", off)
	}

	a.write(agentConfig(t, a.addr, ""))
	a.reload()
	if n := strings.Count(a.stderr.String(), "container logs are not shipped"); n != before+1 {
		t.Errorf("after the endpoint was removed the agent said %d times that logs are not shipped, want %d", n, before+1)
	}
	if on, _ := served(a); len(on) > 0 {
		t.Errorf("after OTLP was turned off /metrics serves %v", on)
	}

	a.write(agentConfig(t, a.addr, "logs:\n  enabled: false\n"))
	a.reload()
	a.waitLog("container logs are not collected: logs.enabled is false")
}

// TestConfigCheckReportsEveryProblem: one run of --config.check names
// every problem of the file with its line and key, suggests the key a typo
// meant, and exits 2.
func TestConfigCheckReportsEveryProblem(t *testing.T) {
	p := writeFile(t, `stats:
  intervall: 15s
  concurrency: many
web:
  telemetry_path: metrics
`)
	code, stdout, stderr := runAgentCLI("--config.file", p, "--config.check")
	if code != exitUsage {
		t.Fatalf("exit code %d, want %d; stdout %q", code, exitUsage, stdout)
	}
	want := "dockscope: invalid configuration: 3 problems:\n" +
		"  " + p + `:2: stats.intervall: unknown key; did you mean "interval"?` + "\n" +
		"  " + p + `:3: stats.concurrency: cannot parse "many" as an integer` + "\n" +
		"  " + p + `:5: web.telemetry_path: must start with "/", got "metrics"` + "\n"
	if stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
	// Started with it, the agent says the same and does not start.
	if code, _, startErr := runAgentCLI("--config.file", p); code != exitUsage || startErr != want {
		t.Errorf("start: exit %d, stderr:\n%s", code, startErr)
	}
}

func TestStampedBuild(t *testing.T) {
	vcs := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "feedface"}}}
	module := &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}
	for _, tc := range []struct {
		name, version, revision string
		bi                      *debug.BuildInfo
		wantVersion, wantRev    string
	}{
		{"ldflags win", "v2.0.0", "0ddba11", vcs, "v2.0.0", "0ddba11"},
		{"ldflags without VCS stamping", "v2.0.0", "0ddba11", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "v2.0.0", "0ddba11"},
		{"VCS stamping only", "", "", vcs, "dev", "feedface"},
		{"go install module@version", "", "", module, "v1.4.0", "unknown"},
		{"nothing stamped", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev", "unknown"},
		{"no build info", "", "", nil, "dev", "unknown"},
		{"tarball build: make's empty REVISION", "v2.0.0", "", nil, "v2.0.0", "unknown"},
	} {
		b := stampedBuild(tc.version, tc.revision, tc.bi)
		if b.Version != tc.wantVersion || b.Revision != tc.wantRev || b.GoVersion != runtime.Version() {
			t.Errorf("%s: %+v, want version %s revision %s", tc.name, b, tc.wantVersion, tc.wantRev)
		}
	}
}

// TestVersionOfBuiltBinary builds the agent as the Makefile does, with
// the Go toolchain's VCS stamping off (-buildvcs=false, as in a tarball or
// a container build without .git), and runs --version; then without the
// ldflags, and with VCS stamping but no ldflags (`go build` in a checkout).
func TestVersionOfBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent three times")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The Makefile's own flags, as `make build` would pass them.
	mk := exec.Command("make", "-n", "-s", "build", "VERSION=v9.8.7-test", "REVISION=0123456789abcdef0123456789abcdef01234567")
	mk.Dir = root
	out, err := mk.Output()
	if err != nil {
		t.Skipf("make -n build: %v", err)
	}
	_, rest, ok := strings.Cut(string(out), "-ldflags '")
	ldflags, _, ok2 := strings.Cut(rest, "'")
	if !ok || !ok2 || !strings.Contains(ldflags, "-X main.revision=0123456789abcdef0123456789abcdef01234567") {
		t.Fatalf("make build passes no -X main.revision: %s", out)
	}

	goVersion := runtime.Version()
	dir := t.TempDir()
	build := func(name string, args ...string) string {
		t.Helper()
		bin := filepath.Join(dir, name)
		cmd := exec.Command("go", append(append([]string{"build", "-trimpath", "-o", bin}, args...), "./cmd/agent")...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", args, err, out)
		}
		v, err := exec.Command(bin, "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", name, err)
		}
		return string(v)
	}

	if got, want := build("stamped", "-buildvcs=false", "-ldflags", ldflags), "dockscope v9.8.7-test (revision 0123456789abcdef0123456789abcdef01234567, "+goVersion+")\n"; got != want {
		t.Errorf("built with the Makefile's ldflags and -buildvcs=false: %q, want %q", got, want)
	}
	if got, want := build("bare", "-buildvcs=false"), "dockscope dev (revision unknown, "+goVersion+")\n"; got != want {
		t.Errorf("built with nothing stamped: %q, want %q", got, want)
	}
	// With VCS stamping on and no ldflags, the revision is whatever Go
	// recorded: the commit in a git checkout, nothing in a git worktree
	// (Go looks for a .git directory; a worktree has a .git file) or a
	// tarball.
	got := build("vcs", "-buildvcs=auto")
	meta, err := exec.Command("go", "version", "-m", filepath.Join(dir, "vcs")).Output()
	if err != nil {
		t.Fatal(err)
	}
	// In a checkout Go also stamps the module with a pseudo-version
	// (v0.0.0-<time>-<commit>), which is then the release shown.
	rev, ver := "unknown", "dev"
	for _, l := range strings.Split(string(meta), "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "build\tvcs.revision="); ok {
			rev = v
		}
		if f := strings.Split(l, "\t"); len(f) >= 3 && f[0] == "mod" && f[2] != "(devel)" && f[2] != "" {
			ver = f[2]
		}
	}
	if want := "dockscope " + ver + " (revision " + rev + ", " + goVersion + ")\n"; got != want {
		t.Errorf("built with Go's VCS stamping and no ldflags: %q, want %q", got, want)
	}
	t.Logf("Go's own VCS stamping here: revision %s", rev)
}
