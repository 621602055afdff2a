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
	err    error    // the row could not be measured in full
	notes  []string // things that may skew the row
}

var headers = []string{
	"N", "M", "window",
	"agent CPU s", "agent % core", "peak RSS MiB", "max sampled RSS MiB",
	"daemons CPU s (baseline)", "daemons CPU s (with agent)", "daemons Δ s", "daemons Δ % core",
	"series", "scrape median ms", "scrape max ms",
}

// cells formats a row; "-" marks what was not measured.
func (r result) cells() []string {
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
		return append(c, "-", "-", "-")
	}
	return append(c,
		fmt.Sprint(a.series),
		fmt.Sprintf("%.1f", ms(median(a.scrapes))),
		fmt.Sprintf("%.1f", ms(slices.Max(a.scrapes))),
	)
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

// writeText prints the table for a terminal.
func (rep report) writeText(w io.Writer) {
	fmt.Fprintf(w, "%s\n\n", rep.title())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(headers, "\t")+"\t")
	for _, r := range rep.results {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w)
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
		fmt.Fprintln(w, "| "+strings.Join(r.cells(), " | ")+" |")
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

// targetLines states the targets and, when there is a row to judge, the
// figures against them.
func (rep report) targetLines() []string {
	const n, interval = 200, 10 * time.Second
	lines := []string{fmt.Sprintf("Targets at N=%d, stats interval %s: agent CPU ≤ 0.5 %% of one core, peak RSS ≤ 40 MiB, scrape ≤ 50 ms.", n, interval)}
	var r *result
	for i := range rep.results {
		if rep.results[i].n == n && rep.results[i].agent.took > 0 {
			r = &rep.results[i]
		}
	}
	// An -agent-cmd run (interval 0) is judged too: that is what it is for.
	if r == nil || (rep.interval != interval && rep.interval != 0) {
		return append(lines, "  (no N=200 row at a 10s interval to compare)")
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
		fmt.Sprintf("  agent CPU  %6.2f %% of one core  %s", cpu, verdict(cpu <= 0.5)),
		fmt.Sprintf("  peak RSS   %6.1f MiB            %s", rss, verdict(rss <= 40)))
	if len(r.agent.scrapes) > 0 {
		mx := ms(slices.Max(r.agent.scrapes))
		lines = append(lines, fmt.Sprintf("  scrape     %6.1f ms (max)        %s", mx, verdict(mx <= 50)))
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
