package main

import (
	"fmt"
	"os"

	"github.com/dockscope/dockscope/bench/internal/plot"
)

// figure plots how the costs grow with N: the agent's CPU and the daemons'
// extra CPU, the daemons' CPU without and with the agent (the baseline),
// and the agent's peak RSS. Rows that could not be measured are left out.
func (rep report) figure() plot.Figure {
	agentCPU := plot.Series{Name: "agent", Markers: true}
	delta := plot.Series{Name: "daemons Δ (with agent − baseline)", Markers: true, Dashed: true}
	base := plot.Series{Name: "baseline: no agent", Markers: true, Dashed: true}
	with := plot.Series{Name: "with the agent", Markers: true}
	hwm := plot.Series{Name: "peak RSS (VmHWM)", Markers: true}
	sampled := plot.Series{Name: "max sampled RSS", Markers: true, Dashed: true}
	for _, r := range rep.results {
		a := r.agent
		if a.took == 0 || r.base.took == 0 {
			continue
		}
		n := float64(r.n)
		pct := func(cpu, took float64) float64 { return 100 * cpu / took }
		agentCPU.Points = append(agentCPU.Points, plot.Point{X: n, Y: pct(a.agentCPU, a.took.Seconds())})
		delta.Points = append(delta.Points, plot.Point{X: n, Y: pct(a.daemonCPU-r.base.daemonCPU, a.took.Seconds())})
		base.Points = append(base.Points, plot.Point{X: n, Y: pct(r.base.daemonCPU, r.base.took.Seconds())})
		with.Points = append(with.Points, plot.Point{X: n, Y: pct(a.daemonCPU, a.took.Seconds())})
		hwm.Points = append(hwm.Points, plot.Point{X: n, Y: float64(a.hwmKiB) / 1024})
		sampled.Points = append(sampled.Points, plot.Point{X: n, Y: float64(a.maxRSSKiB) / 1024})
	}
	m := 0
	if len(rep.results) > 0 {
		m = rep.results[0].m
	}
	xlabel := fmt.Sprintf("idle containers N (+ %d logging)", m)
	return plot.Figure{
		Title: rep.title(),
		Charts: []plot.Chart{
			{Title: "Agent CPU", XLabel: xlabel, YLabel: "% of one core", Series: []plot.Series{agentCPU, delta}, XFromZero: true},
			{Title: "Daemons' CPU (dockerd, containerd, shims)", XLabel: xlabel, YLabel: "% of one core", Series: []plot.Series{base, with}, XFromZero: true},
			{Title: "Agent memory", XLabel: xlabel, YLabel: "MiB", Series: []plot.Series{hwm, sampled}, XFromZero: true},
		},
	}
}

func writePlotFile(path string, rep report) error {
	if err := os.WriteFile(path, rep.figure().SVG(), 0o644); err != nil {
		return fmt.Errorf("writing the plot: %w", err)
	}
	return nil
}
