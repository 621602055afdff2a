package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	o, err := parseOptions([]string{"-n", "50, 200,500", "-window", "60s", "-stats-source", "cgroup", "-plot", "docs/overhead.svg", "-markdown", "o.md"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.ns, []int{50, 200, 500}) || o.window != time.Minute || o.statsSource != "cgroup" || o.plot != "docs/overhead.svg" || o.markdown != "o.md" {
		t.Errorf("parsed %+v", o)
	}
	o, err = parseOptions(nil)
	if err != nil || !slices.Equal(o.ns, []int{50, 200}) || o.plot != "" || o.parallel != 8 {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "50,x"}, `-n: "x" is not a number of containers`},
		{[]string{"-n", "-5"}, `-n: "-5" is not a number of containers`},
		{[]string{"-n", "50,,200"}, `-n: "" is not a number of containers`},
		{[]string{"-window", "0s"}, "-window must be positive and -scrape-every not negative"},
		{[]string{"-stats-source", "proc"}, `-stats-source must be api, cgroup or auto, not "proc"`},
		{[]string{"-agent-metrics-url", "http://x"}, "-agent-metrics-url only goes with -agent-cmd"},
		{[]string{"-agent-cmd", "x", "-agent-bin", "y"}, "-agent-bin and -agent-cmd exclude each other"},
		{[]string{"-parallel", "0"}, "-parallel must be at least 1"},
		{[]string{"500"}, `unexpected argument "500"`},
	} {
		if _, err := parseOptions(tc.args); err == nil || err.Error() != tc.want {
			t.Errorf("parseOptions(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestFigure(t *testing.T) {
	row := func(n int, agentCPU, base, with float64, hwmMiB float64) result {
		return result{n: n, m: 10, window: time.Minute,
			base:  baseline{took: time.Minute, daemonCPU: base},
			agent: agentWindow{took: time.Minute, agentCPU: agentCPU, daemonCPU: with, hwmKiB: uint64(hwmMiB * 1024), maxRSSKiB: uint64(hwmMiB * 1024)},
		}
	}
	rep := report{agent: "dockscope (stats.source cgroup)", interval: 10 * time.Second, results: []result{
		row(50, 0.16, 4.22, 3.86, 30.7),
		row(200, 0.45, 5.77, 5.75, 34.2),
		{n: 500, m: 10, err: io.EOF}, // failed: no point
		row(500, 1.2, 9.0, 9.3, 41),
	}}
	svg := rep.figure().SVG()

	// Well-formed, and each series has one point per measured row.
	points := map[string]int{}
	var texts []string
	dec := xml.NewDecoder(bytes.NewReader(svg))
	series := ""
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			for _, a := range el.Attr {
				if el.Name.Local == "g" && a.Name.Local == "data-name" {
					series = a.Value
				}
				if el.Name.Local == "polyline" && a.Name.Local == "points" {
					points[series] += len(strings.Fields(a.Value))
				}
			}
			inText = el.Name.Local == "text"
		case xml.CharData:
			if inText {
				texts = append(texts, string(el))
			}
		case xml.EndElement:
			inText = false
		}
	}
	for _, name := range []string{"agent", "daemons Δ (with agent − baseline)", "baseline: no agent", "with the agent", "peak RSS (VmHWM)", "max sampled RSS"} {
		if points[name] != 3 {
			t.Errorf("series %q has %d points, want 3 (%v)", name, points[name], points)
		}
	}
	for _, want := range []string{"idle containers N (+ 10 logging)", "% of one core", "MiB", "500", rep.title()} {
		if !slices.Contains(texts, want) {
			t.Errorf("no text %q", want)
		}
	}
}

func TestParseOptionsCadvisor(t *testing.T) {
	o, err := parseOptions([]string{"-compare-cadvisor", "/tmp/cadvisor", "-cadvisor-args", "-storage_duration 1m"})
	if err != nil || o.compareCadvisor != "/tmp/cadvisor" || o.cadvisorArgs != "-storage_duration 1m" {
		t.Fatalf("parsed %+v, %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-compare-cadvisor", "c", "-agent-cmd", "x"}, "-compare-cadvisor goes with dockscope, not with -agent-cmd"},
		{[]string{"-cadvisor-args", "-v 3"}, "-cadvisor-args only goes with -compare-cadvisor"},
	} {
		if _, err := parseOptions(tc.args); err == nil || err.Error() != tc.want {
			t.Errorf("parseOptions(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestCadvisorContainers(t *testing.T) {
	body := []byte(`# HELP container_last_seen Last time a container was seen by the exporter
# TYPE container_last_seen gauge
container_last_seen{id="/",image="",name=""} 1.7e+09 1
container_last_seen{id="/docker/aa",image="w",name="bench-1"} 1.7e+09 1
container_last_seen{id="/docker/bb",image="w",name="bench-2"} 1.7e+09 1
container_last_seen{name="bench-3"} 1.7e+09 1
container_cpu_usage_seconds_total{cpu="total",id="/docker/cc",name="bench-4"} 1
container_last_seen_other{id="/docker/dd",name="bench-5"} 1
container_last_seen{id="/docker/aa",image="w",name="bench-1"} 1.7e+09 1
`)
	// bench-4 and bench-5 are in other families; bench-1 counts once; the
	// root cgroup has no name.
	if got := cadvisorContainers(body); got != 3 {
		t.Errorf("cadvisorContainers = %d, want 3", got)
	}
	if got := cadvisorContainers(nil); got != 0 {
		t.Errorf("empty scrape: %d containers", got)
	}
}

func TestCostPerSeries(t *testing.T) {
	// 0.6 s of CPU over 60 s at a 10 s interval = 0.1 s per interval; over
	// 1000 series, 100 µs each. 40 MiB over 1000 series = 41943 B each.
	a := agentWindow{took: time.Minute, agentCPU: 0.6, hwmKiB: 40 * 1024, series: 1000}
	cpu, rss, ok := a.costPerSeries(10 * time.Second)
	if !ok || math.Abs(cpu-100) > 1e-9 || math.Abs(rss-41943.04) > 1e-6 {
		t.Errorf("costPerSeries = %v µs, %v B, %v", cpu, rss, ok)
	}
	for _, tc := range []struct {
		a        agentWindow
		interval time.Duration
	}{
		{agentWindow{took: time.Minute, agentCPU: 1}, 10 * time.Second}, // no series
		{a, 0}, // -agent-cmd: interval unknown
		{agentWindow{series: 5}, 10 * time.Second}, // not measured
	} {
		if _, _, ok := tc.a.costPerSeries(tc.interval); ok {
			t.Errorf("costPerSeries(%+v, %v) claims a figure", tc.a, tc.interval)
		}
	}
}

func TestCompareReport(t *testing.T) {
	win := func(cpu float64, hwmMiB int, series int, daemons float64, scrapes ...time.Duration) agentWindow {
		return agentWindow{took: time.Minute, agentCPU: cpu, hwmKiB: uint64(hwmMiB) * 1024, maxRSSKiB: uint64(hwmMiB) * 1024,
			series: series, scrapes: scrapes, daemonCPU: daemons}
	}
	rep := report{agent: "dockscope", interval: 10 * time.Second, compared: true, results: []result{
		{n: 200, m: 10, window: time.Minute, base: baseline{took: time.Minute, daemonCPU: 6},
			agent:    win(0.18, 36, 8000, 6.3, 30*time.Millisecond, 40*time.Millisecond, 50*time.Millisecond),
			cadvisor: win(3.6, 90, 16000, 9.0, 300*time.Millisecond, 400*time.Millisecond, 600*time.Millisecond)},
		{n: 1000, m: 10, err: io.EOF}, // failed before either window: no side-by-side row
	}}
	rows := rep.compareRows()
	want := [][]string{
		{"200", "10", "dockscope", "8000", "0.30", "36.0", "40.0", "50.0", "3.8", "4719", "+0.50"},
		{"200", "10", "cAdvisor", "16000", "6.00", "90.0", "400.0", "600.0", "37.5", "5898", "+5.00"},
		{"200", "10", "cAdvisor ÷ dockscope", "×2.0", "×20.0", "×2.5", "×10.0", "×12.0", "×10.0", "×1.2", "-"},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows:\n%q\nwant\n%q", rows, want)
	}
	for i := range want {
		if !slices.Equal(rows[i], want[i]) {
			t.Errorf("row %d:\n got %q\nwant %q", i, rows[i], want[i])
		}
	}

	// The main table keeps its columns and adds the cost per series.
	if got := rep.results[0].cells(rep.interval); len(got) != len(headers) || got[11] != "8000" || got[14] != "3.8" || got[15] != "4719" {
		t.Errorf("cells = %q", got)
	}
	var text, md bytes.Buffer
	rep.writeText(&text)
	rep.writeMarkdown(&md)
	for _, out := range []string{text.String(), md.String()} {
		if !strings.Contains(out, rep.compareTitle()) || !strings.Contains(out, "cAdvisor ÷ dockscope") {
			t.Errorf("no side-by-side table in:\n%s", out)
		}
	}
	// Without -compare-cadvisor, no second table.
	rep.compared = false
	text.Reset()
	rep.writeText(&text)
	if strings.Contains(text.String(), "cAdvisor") {
		t.Errorf("side-by-side table without -compare-cadvisor:\n%s", text.String())
	}
}

func TestTargetLines(t *testing.T) {
	row := func(n int, cpuS float64, hwmMiB int, scrapeMax time.Duration) result {
		return result{n: n, m: 10, window: time.Minute, agent: agentWindow{took: time.Minute, agentCPU: cpuS,
			hwmKiB: uint64(hwmMiB) * 1024, scrapes: []time.Duration{scrapeMax / 2, scrapeMax}}}
	}
	rep := report{interval: 10 * time.Second, results: []result{
		row(200, 0.18, 36, 42*time.Millisecond),   // 0.30 %: all met
		row(1000, 1.5, 130, 310*time.Millisecond), // 2.5 %, 130 MiB, 310 ms: all missed
	}}
	got := strings.Join(rep.targetLines(), "\n")
	for _, want := range []string{
		"Targets at N=200, stats interval 10s: agent CPU ≤ 0.5 % of one core, peak RSS ≤ 45 MiB, scrape ≤ 60 ms.",
		"  agent CPU    0.30 % of one core  met",
		"  peak RSS     36.0 MiB            met",
		"  scrape       42.0 ms (max)        met",
		"Targets at N=1000, stats interval 10s: agent CPU ≤ 2 % of one core, peak RSS ≤ 120 MiB, scrape ≤ 300 ms.",
		"  agent CPU    2.50 % of one core  MISSED",
		"  peak RSS    130.0 MiB            MISSED",
		"  scrape      310.0 ms (max)        MISSED",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no line %q in:\n%s", want, got)
		}
	}
	rep.results = rep.results[:1]
	if got := strings.Join(rep.targetLines(), "\n"); !strings.Contains(got, "(no N=1000 row at a 10s interval to compare)") {
		t.Errorf("missing N=1000 row not said:\n%s", got)
	}
}

func TestLogProblemsKlog(t *testing.T) {
	path := t.TempDir() + "/cadvisor.log"
	log := `I1207 16:00:38.219876    4490 factory.go:222] Registration of the docker container factory successfully
W1207 16:00:38.220828    4490 manager.go:960] Error getting perf_event cgroup path
Info line that starts with I and digits? no
E1207 16:00:39.000000    4490 handler.go:1] failed
Warning: not klog
time=2026-12-07T16:00:40Z level=WARN msg=x
`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	n, first := logProblems(path)
	if n != 3 || !strings.HasPrefix(first, "W1207 16:00:38.220828") {
		t.Errorf("logProblems = %d, %q; want 3, the W1207 line", n, first)
	}
}
