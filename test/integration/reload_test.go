//go:build integration

package integration

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// TestLogsEveryLineOnceAcrossReloads: reloads while a container logs —
// good ones, which rebuild the log path and hand its checkpoints over, and
// a refused one — lose no line and repeat none.
func TestLogsEveryLineOnceAcrossReloads(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "logs-reload"
	a := startLogAgent(t, col, scope, "", 500)
	name := uniq(t, "reload-logs")
	const lines, stderrEvery = 12000, 5
	harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t),
		"log", "-lines", fmt.Sprint(lines), "-rate", "2000", "-stderr-every", fmt.Sprint(stderrEvery), "-then", "sleep")...)

	orig, err := os.ReadFile(a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	reloaded := func(msg string, n int) {
		t.Helper()
		harness.WaitFor(t, 20*time.Second, 100*time.Millisecond, func() (bool, string) {
			return strings.Count(a.proc.Output(), msg) >= n, fmt.Sprintf("%d × %q not logged:\n%s", n, msg, a.proc.Output())
		})
	}
	for i := range 3 {
		time.Sleep(1500 * time.Millisecond)
		// The discovery section is the last one startAgent writes.
		os.WriteFile(a.cfgPath, append(orig, fmt.Sprintf("  label_allowlist: [\"reload%d\"]\n", i)...), 0o644)
		a.proc.Signal(syscall.SIGHUP)
		reloaded("configuration reloaded", i+1)
	}
	os.WriteFile(a.cfgPath, append(orig, "web:\n  telemetry_path: /metrics/{node\n"...), 0o644)
	a.proc.Signal(syscall.SIGHUP)
	reloaded("configuration reload failed", 1)

	checkNumbered(t, name, waitShipped(t, col, name, lines, 60*time.Second), lines, stderrEvery, 0)
	time.Sleep(time.Second) // a repeated record would arrive now
	checkNumbered(t, name, shipped(t, col, name), lines, stderrEvery, 0)
	if s, ok := a.scrape(t).Find("dockscope_config_last_reload_successful", nil); !ok || s.Value != 0 {
		t.Errorf("dockscope_config_last_reload_successful = %v after the refused reload, want 0", s.Value)
	}
}
