package main

import (
	"bufio"
	"cmp"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dockscope/dockscope/bench/internal/promscrape"
)

// result is what a finished soak found.
type result struct {
	o                        *options
	runID                    string
	start, soakEnd, drainEnd time.Time
	samples                  []sample
	outages                  []outage
	churn                    churnStats
	steady                   int
	verdict                  verdict
	events, other            int                // records that were not numbered lines
	agentCounters            map[string]float64 // the agent's last scrape
	agentFailed              bool
	// The agent's goroutines by start function, early in the soak and at
	// the end of the drain.
	earlyGoroutines, lateGoroutines goroutineCounts
	agentLog                        logSummary
	notes                           []string
}

// ok: every line arrived exactly once and the agent behaved.
func (r *result) ok() bool {
	v := r.verdict
	return v.lost == 0 && v.duplicated == 0 && v.unexpected == 0 && r.other == 0 && !r.agentFailed && len(r.samples) > 0
}

// stats summarises one sampled gauge.
type stats struct {
	first, last, min, max float64
	// Medians of the first and the last tenth of the samples (at least
	// three each): steadier than single samples for telling growth.
	headMedian, tailMedian float64
}

func summarize(samples []sample, v func(sample) float64) (stats, bool) {
	var xs []float64
	for _, s := range samples {
		if x := v(s); !math.IsNaN(x) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return stats{}, false
	}
	k := min(max(len(xs)/10, 3), len(xs))
	return stats{
		first: xs[0], last: xs[len(xs)-1], min: slices.Min(xs), max: slices.Max(xs),
		headMedian: median(xs[:k]), tailMedian: median(xs[len(xs)-k:]),
	}, true
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summary is the report printed at the end.
func (r *result) summary() string {
	var b strings.Builder
	o := r.o
	fmt.Fprintf(&b, "\ndockscope soak (run %s): %s, then %s draining; stats.source %s, OTLP %s\n", r.runID, o.duration,
		r.drainEnd.Sub(r.soakEnd).Round(time.Second), o.statsSource, o.protocol)
	fmt.Fprintf(&b, "short-lived containers: %d started (one every %s, 1–%d lines each), %d removed, %d failed, %d starts skipped (daemon too slow)\n",
		r.churn.started, o.churnEvery, o.churnLines, r.churn.removed, len(r.churn.failed), r.churn.skipped)
	fmt.Fprintf(&b, "steady containers: %d at %g lines/s; collector stopped %d× for %s (every %s)\n",
		r.steady, o.steadyRate, len(r.outages), o.outage, o.outageEvery)
	fmt.Fprintf(&b, "samples: %d, every %s\n\n", len(r.samples), o.sampleEvery)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tfirst\tlast\tmin\tmax\tmedian first 10 %\tmedian last 10 %\t")
	for _, g := range []struct {
		name string
		prec int
		v    func(sample) float64
	}{
		{"RSS MiB", 1, func(s sample) float64 { return s.rssMiB }},
		{"peak RSS (VmHWM) MiB", 1, func(s sample) float64 { return s.hwmMiB }},
		{"goroutines", 0, func(s sample) float64 { return s.goroutines }},
		{"open fds", 0, func(s sample) float64 { return s.fds }},
		{"threads", 0, func(s sample) float64 { return s.threads }},
		{"containers followed", 0, func(s sample) float64 { return s.containers }},
		{"log queue KiB", 1, func(s sample) float64 { return s.queueBytes / 1024 }},
		{"host load (1 min)", 1, func(s sample) float64 { return s.load1 }},
	} {
		st, ok := summarize(r.samples, g.v)
		if !ok {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t\n", g.name)
			continue
		}
		f := func(x float64) string { return strconv.FormatFloat(x, 'f', g.prec, 64) }
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", g.name, f(st.first), f(st.last), f(st.min), f(st.max), f(st.headMedian), f(st.tailMedian))
	}
	tw.Flush()
	if n := len(r.samples); n > 0 && !math.IsNaN(r.samples[n-1].cpuSeconds) {
		last := r.samples[n-1]
		fmt.Fprintf(&b, "agent CPU: %.1f s over %s (%.2f %% of one core)\n", last.cpuSeconds, last.elapsed,
			100*last.cpuSeconds/last.elapsed.Seconds())
	}

	v := r.verdict
	fmt.Fprintf(&b, "\nlines: %s\n", v)
	fmt.Fprintf(&b, "other records: %d lifecycle events, %d neither line nor event\n", r.events, r.other)
	if m := r.agentCounters; m != nil {
		fmt.Fprintf(&b, "agent counters: log records sent %.0f, dropped %.0f; export failures %.0f; log gaps %.0f; resume mismatches %.0f; log stream reconnects %.0f\n",
			m[`dockscope_records_sent_total{stage="logs"}`], m[`dockscope_records_dropped_total{stage="logs"}`],
			promscrape.Sum(m, "dockscope_export_failures_total"), m["dockscope_log_gaps_total"],
			m["dockscope_log_resume_mismatches_total"], m["dockscope_log_stream_reconnects_total"])
	}
	fmt.Fprintf(&b, "agent log: %s\n", r.agentLog)
	if r.earlyGoroutines != nil && r.lateGoroutines != nil {
		diff := goroutineDiff(r.earlyGoroutines, r.lateGoroutines, 8)
		if len(diff) == 0 {
			diff = []string{"none"}
		}
		fmt.Fprintf(&b, "goroutines by start function, after %s → at the end (changed only): %s\n", goroutinesEarly, strings.Join(diff, "; "))
	}
	for _, f := range r.churn.failed[:min(len(r.churn.failed), 5)] {
		fmt.Fprintf(&b, "short-lived container failure: %s\n", f)
	}
	for _, n := range r.notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	if r.ok() {
		b.WriteString("\nRESULT: every line delivered exactly once\n")
	} else {
		b.WriteString("\nRESULT: FAILED (see above)\n")
	}
	return b.String()
}

// logSummary counts the agent's warning and error lines by message.
type logSummary struct {
	warnings, errors int
	byMsg            map[string]int
	err              error
}

func (l logSummary) String() string {
	if l.err != nil {
		return "unreadable: " + l.err.Error()
	}
	if l.warnings+l.errors == 0 {
		return "no warnings or errors"
	}
	type entry struct {
		msg string
		n   int
	}
	var es []entry
	for m, n := range l.byMsg {
		es = append(es, entry{m, n})
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Or(b.n-a.n, strings.Compare(a.msg, b.msg)) })
	var parts []string
	for _, e := range es[:min(len(es), 6)] {
		parts = append(parts, fmt.Sprintf("%d× %q", e.n, e.msg))
	}
	return fmt.Sprintf("%d warnings, %d errors: %s", l.warnings, l.errors, strings.Join(parts, ", "))
}

// summarizeLog reads the agent's logfmt log.
func summarizeLog(path string) logSummary {
	l := logSummary{byMsg: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		l.err = err
		return l
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "level=WARN"):
			l.warnings++
		case strings.Contains(line, "level=ERROR"):
			l.errors++
		default:
			continue
		}
		l.byMsg[logfmtValue(line, "msg")]++
	}
	l.err = sc.Err()
	return l
}

// logfmtValue returns the value of key in a logfmt line, unquoted.
func logfmtValue(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	rest := line[i+len(key)+2:]
	if strings.HasPrefix(rest, `"`) {
		if s, err := strconv.QuotedPrefix(rest); err == nil {
			if u, err := strconv.Unquote(s); err == nil {
				return u
			}
		}
	}
	if j := strings.IndexByte(rest, ' '); j >= 0 {
		rest = rest[:j]
	}
	return rest
}
