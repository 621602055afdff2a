package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one row of the report: one N.
type result struct {
	n, m   int
	window time.Duration
	base   baseline
	agent  agentWindow
	// cadvisor is the -compare-cadvisor window over the same containers
	// (zero without it).
	cadvisor agentWindow
	err      error    // the row could not be measured in full
	notes    []string // things that may skew the row
}

var headers = []string{
	"N", "M", "window",
	"agent CPU s", "agent % core", "peak RSS MiB", "max sampled RSS MiB",
	"daemons CPU s (baseline)", "daemons CPU s (with agent)", "daemons Δ s", "daemons Δ % core",
	"series", "scrape median ms", "scrape max ms",
	"CPU µs/series/interval", "RSS B/series",
}

// cells formats a row; "-" marks what was not measured.
func (r result) cells(interval time.Duration) []string {
	c := []string{fmt.Sprint(r.n), fmt.Sprint(r.m), r.window.String()}
	if r.agent.took == 0 {
		for len(c) < len(headers) {
			c = append(c, "-")
		}
		return c
	}
	a := r.agent
	delta := a.daemonCPU - r.base.daemonCPU
	c = append(c,
		fmt.Sprintf("%.2f", a.agentCPU),
		fmt.Sprintf("%.2f", 100*a.agentCPU/a.took.Seconds()),
		fmt.Sprintf("%.1f", float64(a.hwmKiB)/1024),
		fmt.Sprintf("%.1f", float64(a.maxRSSKiB)/1024),
		fmt.Sprintf("%.2f", r.base.daemonCPU),
		fmt.Sprintf("%.2f", a.daemonCPU),
		fmt.Sprintf("%+.2f", delta),
		fmt.Sprintf("%+.2f", 100*delta/a.took.Seconds()),
	)
	if len(a.scrapes) == 0 {
		return append(c, "-", "-", "-", "-", "-")
	}
	return append(c, a.seriesCells(interval)...)
}

// seriesCells are the series count, scrape median and max, and the cost
// per series.
func (a agentWindow) seriesCells(interval time.Duration) []string {
	c := []string{
		fmt.Sprint(a.series),
		fmt.Sprintf("%.1f", ms(median(a.scrapes))),
		fmt.Sprintf("%.1f", ms(slices.Max(a.scrapes))),
	}
	cpu, rss, ok := a.costPerSeries(interval)
	if !ok {
		return append(c, "-", "-")
	}
	return append(c, fmt.Sprintf("%.1f", cpu), fmt.Sprintf("%.0f", rss))
}

// costPerSeries is the agent's CPU per series per stats interval (µs) and
// its peak RSS per series (bytes): what one more series costs, roughly,
// whatever the agent's series set. ok is false without a series count or an
// interval (-agent-cmd sets its own).
func (a agentWindow) costPerSeries(interval time.Duration) (cpuMicros, rssBytes float64, ok bool) {
	if a.series == 0 || interval <= 0 || a.took <= 0 {
		return 0, 0, false
	}
	intervals := a.took.Seconds() / interval.Seconds()
	cpuMicros = 1e6 * a.agentCPU / intervals / float64(a.series)
	rssBytes = float64(a.hwmKiB) * 1024 / float64(a.series)
	return cpuMicros, rssBytes, true
}

var compareHeaders = []string{
	"N", "M", "agent", "series", "agent % core", "peak RSS MiB",
	"scrape median ms", "scrape max ms", "CPU µs/series/interval", "RSS B/series", "daemons Δ % core",
}

// compareRows puts dockscope and cAdvisor side by side for each row that
// measured both, then the ratio cAdvisor/dockscope.
func (rep report) compareRows() [][]string {
	var rows [][]string
	for _, r := range rep.results {
		if r.agent.took == 0 || r.cadvisor.took == 0 {
			continue
		}
		for _, x := range []struct {
			name string
			a    agentWindow
		}{{"dockscope", r.agent}, {"cAdvisor", r.cadvisor}} {
			a := x.a
			row := []string{fmt.Sprint(r.n), fmt.Sprint(r.m), x.name}
			sc := []string{"-", "-", "-", "-", "-"}
			if len(a.scrapes) > 0 {
				sc = a.seriesCells(rep.interval)
			}
			row = append(row, sc[0],
				fmt.Sprintf("%.2f", 100*a.agentCPU/a.took.Seconds()),
				fmt.Sprintf("%.1f", float64(a.hwmKiB)/1024),
				sc[1], sc[2], sc[3], sc[4],
				fmt.Sprintf("%+.2f", 100*(a.daemonCPU-r.base.daemonCPU)/a.took.Seconds()))
			rows = append(rows, row)
		}
		rows = append(rows, ratioRow(r, rep.interval))
	}
	return rows
}

// ratioRow is cAdvisor's figure over dockscope's, column by column.
func ratioRow(r result, interval time.Duration) []string {
	d, c := r.agent, r.cadvisor
	ratio := func(cv, dv float64) string {
		if dv <= 0 {
			return "-"
		}
		return fmt.Sprintf("×%.1f", cv/dv)
	}
	msOr0 := func(a agentWindow, f func([]time.Duration) time.Duration) float64 {
		if len(a.scrapes) == 0 {
			return 0
		}
		return ms(f(a.scrapes))
	}
	maxOf := func(ds []time.Duration) time.Duration { return slices.Max(ds) }
	dcpu, drss, dok := d.costPerSeries(interval)
	ccpu, crss, cok := c.costPerSeries(interval)
	perCPU, perRSS := "-", "-"
	if dok && cok {
		perCPU, perRSS = ratio(ccpu, dcpu), ratio(crss, drss)
	}
	return []string{fmt.Sprint(r.n), fmt.Sprint(r.m), "cAdvisor ÷ dockscope",
		ratio(float64(c.series), float64(d.series)),
		ratio(c.agentCPU/c.took.Seconds(), d.agentCPU/d.took.Seconds()),
		ratio(float64(c.hwmKiB), float64(d.hwmKiB)),
		ratio(msOr0(c, median), msOr0(d, median)),
		ratio(msOr0(c, maxOf), msOr0(d, maxOf)),
		perCPU, perRSS, "-"}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report is everything printed at the end.
type report struct {
	agent    string        // what was measured
	interval time.Duration // dockscope's stats interval; 0 for -agent-cmd
	compared bool          // -compare-cadvisor: rows hold a cAdvisor window too
	results  []result
}

// title names what was measured.
func (rep report) title() string {
	interval := "stats interval " + rep.interval.String()
	if rep.interval == 0 {
		interval = "stats interval set by the command"
	}
	return fmt.Sprintf("Overhead of %s (%s; daemons = dockerd + containerd + shims)", rep.agent, interval)
}

// compareTitle heads the side-by-side table.
func (rep report) compareTitle() string {
	return fmt.Sprintf("dockscope and cAdvisor (-docker_only, housekeeping %s) over the same containers, one after the other, each scraped as often", rep.interval)
}

// writeText prints the table for a terminal.
func (rep report) writeText(w io.Writer) {
	fmt.Fprintf(w, "%s\n\n", rep.title())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(headers, "\t")+"\t")
	for _, r := range rep.results {
		fmt.Fprintln(tw, strings.Join(r.cells(rep.interval), "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w)
	if rep.compared {
		fmt.Fprintf(w, "%s\n\n", rep.compareTitle())
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(compareHeaders, "\t")+"\t")
		for _, row := range rep.compareRows() {
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	for _, l := range rep.targetLines() {
		fmt.Fprintln(w, l)
	}
	if notes := rep.notes(); len(notes) > 0 {
		fmt.Fprintln(w, "\nNotes:")
		for _, n := range notes {
			fmt.Fprintln(w, "  - "+n)
		}
	}
}

// writeMarkdown writes the same as a Markdown fragment.
func (rep report) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "%s\n\n", rep.title())
	fmt.Fprintln(w, "| "+strings.Join(headers, " | ")+" |")
	fmt.Fprintln(w, "|"+strings.Repeat("---:|", len(headers)))
	for _, r := range rep.results {
		fmt.Fprintln(w, "| "+strings.Join(r.cells(rep.interval), " | ")+" |")
	}
	if rep.compared {
		fmt.Fprintf(w, "\n%s\n\n", rep.compareTitle())
		fmt.Fprintln(w, "| "+strings.Join(compareHeaders, " | ")+" |")
		fmt.Fprintln(w, "|---:|---:|:---|"+strings.Repeat("---:|", len(compareHeaders)-3))
		for _, row := range rep.compareRows() {
			fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |")
		}
	}
	fmt.Fprintln(w, "\n```")
	for _, l := range rep.targetLines() {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w, "```")
	if notes := rep.notes(); len(notes) > 0 {
		fmt.Fprintln(w, "\nNotes:")
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
}

// target is issue 14's cost limit for one N at a 10 s stats interval.
type target struct {
	n               int
	cpuPct, rssMiB  float64
	scrapeMaxMillis float64
}

var targets = []target{{200, 0.5, 45, 60}, {1000, 2, 120, 300}}

// targetLines states the targets and, for each N that has a row to judge,
// the figures against them.
func (rep report) targetLines() []string {
	const interval = 10 * time.Second
	var lines []string
	for _, t := range targets {
		lines = append(lines, fmt.Sprintf("Targets at N=%d, stats interval %s: agent CPU ≤ %g %% of one core, peak RSS ≤ %g MiB, scrape ≤ %g ms.",
			t.n, interval, t.cpuPct, t.rssMiB, t.scrapeMaxMillis))
		var r *result
		for i := range rep.results {
			if rep.results[i].n == t.n && rep.results[i].agent.took > 0 {
				r = &rep.results[i]
			}
		}
		// An -agent-cmd run (interval 0) is judged too: that is what it is for.
		if r == nil || (rep.interval != interval && rep.interval != 0) {
			lines = append(lines, fmt.Sprintf("  (no N=%d row at a 10s interval to compare)", t.n))
			continue
		}
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "MISSED"
		}
		cpu := 100 * r.agent.agentCPU / r.agent.took.Seconds()
		rss := float64(r.agent.hwmKiB) / 1024
		lines = append(lines,
			fmt.Sprintf("  agent CPU  %6.2f %% of one core  %s", cpu, verdict(cpu <= t.cpuPct)),
			fmt.Sprintf("  peak RSS   %6.1f MiB            %s", rss, verdict(rss <= t.rssMiB)))
		if len(r.agent.scrapes) > 0 {
			mx := ms(slices.Max(r.agent.scrapes))
			lines = append(lines, fmt.Sprintf("  scrape     %6.1f ms (max)        %s", mx, verdict(mx <= t.scrapeMaxMillis)))
		}
	}
	return lines
}

// notes collects every row's caveats and errors, prefixed with its N.
func (rep report) notes() []string {
	var out []string
	for _, r := range rep.results {
		if r.err != nil {
			out = append(out, fmt.Sprintf("N=%d: FAILED: %v", r.n, r.err))
		}
		for _, n := range r.notes {
			out = append(out, fmt.Sprintf("N=%d: %s", r.n, n))
		}
	}
	return out
}
