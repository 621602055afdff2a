package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Targets (design: the agent's per-line cost must be a small fraction of
// dockerd's).
const (
	targetPctOfRaw   = 90.0
	targetCPUPerM    = 1.5
	targetRSSMiB     = 100.0
	mib              = 1 << 20
	naCell           = "–"
	compressionNone  = 0
	compressionGzip  = 1
	compressionCount = 2
)

type table struct {
	header []string
	rows   [][]string
}

func (t table) text() string {
	w := make([]int, len(t.header))
	for i, h := range t.header {
		w[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			w[i] = max(w[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		for i, c := range cells {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := w[i] - utf8.RuneCountInString(c)
			if i == 0 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString(strings.Repeat(" ", pad) + c)
			}
		}
		b.WriteString("\n")
	}
	line(t.header)
	sep := make([]string, len(w))
	for i := range w {
		sep[i] = strings.Repeat("-", w[i])
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}

func (t table) markdown() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.header, " | ") + " |\n|")
	for i := range t.header {
		if i == 0 {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

func scenarioName(r scenarioResult) string {
	return fmt.Sprintf("%d × %s lines", r.n, humanCount(r.lines))
}

func humanCount(n int) string {
	switch {
	case n >= 1000000 && n%100000 == 0:
		return fmt.Sprintf("%gM", float64(n)/1e6)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// runCount is how many agent runs a scenario has: none and gzip for
// dockscope, one for -agent-cmd.
func runCount(cmd bool) int {
	if cmd {
		return 1
	}
	return compressionCount
}

func runOf(r scenarioResult, i int) (agentResult, bool) {
	if i >= len(r.runs) || !r.runs[i].ok {
		return agentResult{}, false
	}
	return r.runs[i], true
}

func pair(r scenarioResult, cmd bool, f func(agentResult) string) string {
	cells := make([]string, runCount(cmd))
	for i := range cells {
		cells[i] = naCell
		if a, ok := runOf(r, i); ok {
			cells[i] = f(a)
		}
	}
	return strings.Join(cells, " / ")
}

func peakMiB(a agentResult) float64 { return float64(max(a.peakRSS, a.hwm)) / mib }

func cpuPerM(a agentResult, lines int64) float64 { return a.agentCPU / (float64(lines) / 1e6) }

func (r scenarioResult) expected() int64 { return int64(r.n) * int64(r.lines) }

func summary(results []scenarioResult, cmd bool) table {
	t := table{header: []string{"scenario", "raw API lines/s", "agent lines/s (none / gzip)",
		"% of raw (none / gzip)", "agent CPU-s per M lines (none / gzip)", "peak RSS MiB (none / gzip)"}}
	if cmd {
		t.header = []string{"scenario", "raw API lines/s", "command lines/s", "% of raw", "command CPU-s per M lines", "peak RSS MiB"}
	}
	for _, r := range results {
		raw := naCell
		if r.ceiling() > 0 {
			raw = fmt.Sprintf("%.0f", r.ceiling())
		}
		t.rows = append(t.rows, []string{
			scenarioName(r), raw,
			pair(r, cmd, func(a agentResult) string {
				if a.incomplete {
					return fmt.Sprintf("%.0f (incomplete)", a.linesPerSec)
				}
				return fmt.Sprintf("%.0f", a.linesPerSec)
			}),
			pair(r, cmd, func(a agentResult) string {
				if r.ceiling() == 0 {
					return naCell
				}
				return fmt.Sprintf("%.0f %%", 100*a.linesPerSec/r.ceiling())
			}),
			pair(r, cmd, func(a agentResult) string { return fmt.Sprintf("%.2f", cpuPerM(a, r.expected())) }),
			pair(r, cmd, func(a agentResult) string { return fmt.Sprintf("%.1f", peakMiB(a)) }),
		})
	}
	return t
}

func details(results []scenarioResult) table {
	t := table{header: []string{"scenario", "run", "lines/s", "wall s", "1st record s", "agent CPU-s (cores)",
		"dockerd CPU-s (cores)", "sink CPU-s (cores)", "curl CPU-s", "host busy cores",
		"VmRSS max / VmHWM MiB", "max queue MiB", "read / delivered / sink accepted"}}
	for _, r := range results {
		for i, raw := range r.raw {
			if !raw.ok {
				continue
			}
			name := "raw API, before"
			if i == 1 {
				name = "raw API, after"
			}
			t.rows = append(t.rows, []string{scenarioName(r), name, fmt.Sprintf("%.0f", raw.linesPerSec),
				fmt.Sprintf("%.2f", raw.wall), naCell, naCell,
				fmt.Sprintf("%.2f (%.2f)", raw.dockerdCPU, raw.dockerdCPU/raw.wall), naCell,
				fmt.Sprintf("%.2f", raw.curlCPU), fmt.Sprintf("%.2f", raw.hostBusy), naCell, naCell,
				fmt.Sprintf("%d lines", raw.lines)})
		}
		for _, a := range r.runs {
			name := "agent, " + a.compression
			counts := fmt.Sprintf("%.0f / %.0f / %.0f", a.received, a.sent, a.accepted)
			if a.cmd {
				// Only the sink counts another shipper's records.
				name, counts = "command", fmt.Sprintf("%s / %s / %.0f", naCell, naCell, a.accepted)
			}
			if !a.ok {
				t.rows = append(t.rows, []string{scenarioName(r), name, "FAILED", naCell, naCell,
					naCell, naCell, naCell, naCell, naCell, naCell, naCell, naCell})
				continue
			}
			t.rows = append(t.rows, []string{scenarioName(r), name,
				fmt.Sprintf("%.0f", a.linesPerSec), fmt.Sprintf("%.2f", a.wall), fmt.Sprintf("%.2f", a.firstSent),
				fmt.Sprintf("%.2f (%.2f)", a.agentCPU, a.agentCPU/a.wall),
				fmt.Sprintf("%.2f (%.2f)", a.dockerdCPU, a.dockerdCPU/a.wall),
				fmt.Sprintf("%.2f (%.2f)", a.sinkCPU, a.sinkCPU/a.wall), naCell,
				fmt.Sprintf("%.2f", a.hostBusy),
				fmt.Sprintf("%.1f / %.1f", float64(a.peakRSS)/mib, float64(a.hwm)/mib),
				fmt.Sprintf("%.1f", a.maxQueue/mib),
				counts})
		}
	}
	return t
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// targets lists each target with every scenario's figure and verdict.
func targets(results []scenarioResult, cmd bool) []string {
	run, runs := "compression none", "both runs"
	if cmd {
		run, runs = "the command", "the command"
	}
	var pct, cpu, rss []string
	for _, r := range results {
		name := scenarioName(r)
		if a, ok := runOf(r, compressionNone); ok && r.ceiling() > 0 {
			p := 100 * a.linesPerSec / r.ceiling()
			pct = append(pct, fmt.Sprintf("%s: %.0f %% %s", name, p, verdict(p >= targetPctOfRaw)))
			c := cpuPerM(a, r.expected())
			cpu = append(cpu, fmt.Sprintf("%s: %.2f %s", name, c, verdict(c <= targetCPUPerM)))
		} else {
			pct = append(pct, name+": no result")
			cpu = append(cpu, name+": no result")
		}
		var peak float64
		n := 0
		for i := range runCount(cmd) {
			if a, ok := runOf(r, i); ok {
				peak = max(peak, peakMiB(a))
				n++
			}
		}
		if n > 0 {
			rss = append(rss, fmt.Sprintf("%s: %.1f MiB %s", name, peak, verdict(peak <= targetRSSMiB)))
		} else {
			rss = append(rss, name+": no result")
		}
	}
	return []string{
		fmt.Sprintf("agent ≥ %.0f %% of the raw API rate (%s): %s", targetPctOfRaw, run, strings.Join(pct, "; ")),
		fmt.Sprintf("agent ≤ %.1f CPU-s per million lines (%s): %s", targetCPUPerM, run, strings.Join(cpu, "; ")),
		fmt.Sprintf("agent peak RSS ≤ %.0f MiB (%s, max of sampled VmRSS and VmHWM): %s", targetRSSMiB, runs, strings.Join(rss, "; ")),
	}
}

func title(o *options) string {
	if o.agentCmd != "" {
		return "log throughput of another shipper"
	}
	return "dockscope log throughput"
}

func preamble(o *options, e environment) []string {
	agent := "OTLP " + o.protocol
	if o.agentCmd != "" {
		agent = fmt.Sprintf("the command `%s`", o.agentCmd)
	}
	return []string{
		fmt.Sprintf("%s — %s, Docker %s, kernel %s, %s CPUs", title(o), e.date, e.docker, e.kernel, e.cpus),
		fmt.Sprintf("%d-byte lines; %s to an OpenTelemetry Collector (otlp receiver → debug exporter); mode %s",
			o.lineBytes, agent, o.mode),
		fmt.Sprintf("load average before %s, after %s; %d other running containers at the start; took %s",
			e.loadBefore, e.loadAfter, e.foreign, e.took.Round(1e9)),
	}
}

const notes = `raw API lines/s: the faster of two parallel curl reads of every container's whole log (before and after the agent runs).
agent lines/s: all lines / time from the agent's start until its last record was acknowledged by the sink (polled every 200 ms, interpolated within the last interval).
agent CPU-s: the agent process's user+system time up to that moment, startup included.`

const cmdNotes = `command lines/s: all lines / time from the command's start until the sink had accepted as many log records as lines were written (polled every -poll, interpolated); which lines arrived is not checked.
command CPU-s: user+system time of the command's whole process tree up to that moment (sh, the shipper, children, reaped ones included), startup included.
peak RSS: the larger of the tree's summed VmRSS (sampled) and its summed VmHWM at the end (an upper bound for a tree of several processes).`

func notesFor(o *options) string {
	if o.agentCmd != "" {
		return cmdNotes
	}
	return notes
}

func renderText(o *options, e environment, results []scenarioResult) string {
	var b strings.Builder
	b.WriteString("\n" + strings.Join(preamble(o, e), "\n") + "\n\n")
	cmd := o.agentCmd != ""
	b.WriteString(summary(results, cmd).text())
	b.WriteString("\ntargets:\n")
	for _, t := range targets(results, cmd) {
		b.WriteString("  " + t + "\n")
	}
	b.WriteString("\n" + details(results).text())
	b.WriteString("\n" + notesFor(o) + "\n")
	for _, r := range results {
		for _, a := range r.runs {
			if a.perfReport != "" {
				fmt.Fprintf(&b, "perf profile of %s, %s: %s\n", scenarioName(r), a.compression, a.perfReport)
			}
		}
		if r.err != nil {
			fmt.Fprintf(&b, "%s: ERROR: %v\n", scenarioName(r), r.err)
		}
	}
	return b.String()
}

func renderMarkdown(o *options, e environment, results []scenarioResult) string {
	var b strings.Builder
	b.WriteString("# " + title(o) + "\n\n")
	for _, l := range preamble(o, e) {
		b.WriteString(l + "  \n")
	}
	cmd := o.agentCmd != ""
	b.WriteString("\n" + summary(results, cmd).markdown())
	b.WriteString("\nTargets:\n\n")
	for _, t := range targets(results, cmd) {
		b.WriteString("- " + t + "\n")
	}
	b.WriteString("\n" + details(results).markdown() + "\n")
	for _, l := range strings.Split(notesFor(o), "\n") {
		b.WriteString("- " + l + "\n")
	}
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(&b, "\n**%s: error:** %v\n", scenarioName(r), r.err)
		}
	}
	return b.String()
}
