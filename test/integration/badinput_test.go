//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// TestBadInputFromTheEngine feeds the agent what real hosts produce and
// exporters often choke on: odd label keys and values, a container with
// 10,000 labels, a name reused after removal, and events of containers that
// are gone before the agent can inspect them. Nothing may crash, no stale
// series may stay, and the exposition must stay valid.
func TestBadInputFromTheEngine(t *testing.T) {
	t.Parallel()
	scope := "badinput"
	a := startAgent(t, agentOpts{scope: scope, discovery: `  label_allowlist: ["odd.*", "team"]
`})

	// Odd label keys and values, allow-listed: sanitised names, escaped values.
	odd := uniq(t, "odd")
	harness.RunContainer(t, append(scopeArgs(scope, odd),
		"--label", `odd.key-with/slash=va"l\ue`,
		"--label", "odd.ünïcode=line1\nline2",
		"--label", "odd.bytes=\xff\xfe",
		"--label", "odd.empty=",
		harness.WorkloadImage(t), "sleep")...)

	// 10,000 labels (none allow-listed but team).
	var labels strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&labels, "big.label.%d=value-%d\n", i, i)
	}
	labels.WriteString("team=big\n")
	labelFile := filepath.Join(t.TempDir(), "labels")
	if err := os.WriteFile(labelFile, []byte(labels.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	big := uniq(t, "big")
	harness.RunContainer(t, append(scopeArgs(scope, big), "--label-file", labelFile, harness.WorkloadImage(t), "sleep")...)

	series, seriesLabels := sampledSeries()
	a.waitValue(t, 20*time.Second, series, odd, seriesLabels, func(float64) bool { return true })
	a.waitValue(t, 20*time.Second, series, big, seriesLabels, func(float64) bool { return true })
	m := a.scrape(t)
	s, _ := m.Find("container_info", map[string]string{"name": odd})
	for k, want := range map[string]string{
		"container_label_odd_key_with_slash": `va"l\ue`,
		"container_label_odd__n_code":        "line1\nline2", // one "_" per rune
		"container_label_odd_bytes":          "\ufffd\ufffd",
	} {
		if got, ok := s.Labels[k]; !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q; labels %v", k, got, ok, want, s.Labels)
		}
	}
	s, _ = m.Find("container_info", map[string]string{"name": big})
	if s.Labels["container_label_team"] != "big" {
		t.Errorf("the 10,000-label container's allow-listed label: %v", s.Labels)
	}
	for k := range s.Labels {
		if strings.HasPrefix(k, "container_label_big_") {
			t.Fatalf("a label that is not allow-listed was exported: %s", k)
		}
	}
	_, body := a.get("/metrics")
	harness.CheckMetrics(t, body)

	// A name reused after removal: the old container's series go, the new
	// one's come, never both.
	reused := uniq(t, "reused")
	first := harness.RunContainer(t, append(scopeArgs(scope, reused), harness.WorkloadImage(t), "sleep")...)
	a.waitValue(t, 20*time.Second, "container_info", reused, map[string]string{"id": harness.CgroupID(first)}, func(float64) bool { return true })
	harness.Docker(t, "rm", "-f", first)
	second := harness.RunContainer(t, append(scopeArgs(scope, reused), harness.WorkloadImage(t), "sleep")...)
	harness.WaitFor(t, 20*time.Second, 200*time.Millisecond, func() (bool, string) {
		infos := a.scrape(t).FindAll("container_info", map[string]string{"name": reused})
		return len(infos) == 1 && infos[0].Labels["id"] == harness.CgroupID(second), fmt.Sprintf("container_info of %s: %v", reused, infos)
	})
	if n := len(a.scrape(t).FindAll("container_cpu_usage_seconds_total", map[string]string{"id": harness.CgroupID(first)})); n != 0 {
		t.Errorf("the removed container still has %d CPU series", n)
	}

	// Containers gone before the agent can inspect them (--rm, exiting at
	// once): their events find nothing; no series may be left behind.
	var gone []string
	for range 5 {
		name := uniq(t, "gone")
		gone = append(gone, name)
		harness.Docker(t, append(append([]string{"run", "--rm", "--label", harness.TestLabel}, scopeArgs(scope, name)...), harness.WorkloadImage(t), "exit", "-code", "0")...)
	}
	time.Sleep(2 * time.Second) // the events, and a stats round, have been handled
	harness.WaitFor(t, 15*time.Second, 500*time.Millisecond, func() (bool, string) {
		m := a.scrape(t)
		for _, name := range gone {
			if infos := m.FindAll("container_info", map[string]string{"name": name}); len(infos) != 0 {
				return false, fmt.Sprintf("%s is gone but exported: %v", name, infos)
			}
		}
		return true, ""
	})

	if code, body := a.get("/readyz"); code != 200 {
		t.Errorf("/readyz after bad input: %d %s", code, body)
	}
	out := a.proc.Output()
	if strings.Contains(out, "panic") || strings.Contains(out, "level=ERROR") {
		t.Errorf("the agent logged a panic or an error:\n%s", out)
	}
}
