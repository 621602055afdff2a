package main

import (
	"bytes"
	"encoding/xml"
	"io"
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
