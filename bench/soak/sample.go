package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dockscope/dockscope/bench/internal/plot"
	"github.com/dockscope/dockscope/bench/internal/promscrape"
	"github.com/dockscope/dockscope/internal/procfs"
)

// sample is one reading of the agent. Gauges that could not be read are NaN.
type sample struct {
	elapsed        time.Duration
	at             time.Time
	phase          string // "soak" or "drain"
	rssMiB, hwmMiB float64
	goroutines     float64 // go_goroutines from the agent's /metrics
	fds            float64 // entries of /proc/<pid>/fd
	threads        float64 // Threads of /proc/<pid>/status (OS threads, not goroutines)
	cpuSeconds     float64
	containers     float64 // dockscope_containers
	queueBytes     float64 // dockscope_log_queue_bytes
	sent           float64 // dockscope_records_sent_total{stage="logs"}
	exportFailures float64 // dockscope_export_failures_total, all exporters
	collectorUp    bool
	churnStarted   int
	load1          float64 // the host's 1-minute load average: other work on the host
}

var csvHeader = []string{"elapsed_s", "time", "phase", "rss_mib", "hwm_mib", "goroutines", "open_fds", "threads",
	"cpu_s", "containers", "log_queue_bytes", "log_records_sent", "export_failures", "collector_up", "churn_started", "host_load1"}

func (s sample) csvRow() []string {
	f := func(v float64, prec int) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'f', prec, 64)
	}
	up := "0"
	if s.collectorUp {
		up = "1"
	}
	return []string{
		f(s.elapsed.Seconds(), 0), s.at.UTC().Format(time.RFC3339), s.phase,
		f(s.rssMiB, 2), f(s.hwmMiB, 2), f(s.goroutines, 0), f(s.fds, 0), f(s.threads, 0),
		f(s.cpuSeconds, 2), f(s.containers, 0), f(s.queueBytes, 0), f(s.sent, 0), f(s.exportFailures, 0),
		up, strconv.Itoa(s.churnStarted), f(s.load1, 2),
	}
}

// readSample reads the agent's /proc entries and scrapes its metrics.
func readSample(ctx context.Context, pid int, metricsURL string) sample {
	nan := math.NaN()
	s := sample{at: time.Now(), rssMiB: nan, hwmMiB: nan, goroutines: nan, fds: nan, threads: nan,
		cpuSeconds: nan, containers: nan, queueBytes: nan, sent: nan, exportFailures: nan, load1: nan}
	if f := strings.Fields(procfs.LoadAvg()); len(f) > 0 {
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			s.load1 = v
		}
	}
	if st, err := readStatus(pid); err == nil {
		s.rssMiB, s.hwmMiB, s.threads = float64(st.rssKiB)/1024, float64(st.hwmKiB)/1024, float64(st.threads)
	}
	if entries, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd")); err == nil {
		s.fds = float64(len(entries))
	}
	if c, err := procfs.CPUSeconds(pid); err == nil {
		s.cpuSeconds = c
	}
	if m, err := promscrape.Scrape(ctx, metricsURL, 5*time.Second); err == nil {
		get := func(key string) float64 {
			if v, ok := m[key]; ok {
				return v
			}
			return nan
		}
		s.goroutines = get("go_goroutines")
		s.containers = get("dockscope_containers")
		s.queueBytes = get("dockscope_log_queue_bytes")
		s.sent = get(`dockscope_records_sent_total{stage="logs"}`)
		s.exportFailures = promscrape.Sum(m, "dockscope_export_failures_total")
	}
	return s
}

type procStatus struct{ rssKiB, hwmKiB, threads uint64 }

// readStatus reads VmRSS, VmHWM and Threads from /proc/<pid>/status.
func readStatus(pid int) (procStatus, error) {
	var st procStatus
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return st, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch key {
		case "VmRSS":
			dst = &st.rssKiB
		case "VmHWM":
			dst = &st.hwmKiB
		case "Threads":
			dst = &st.threads
		default:
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return st, fmt.Errorf("parsing %s in /proc/%d/status: %w", key, pid, err)
		}
		*dst = v
	}
	return st, sc.Err()
}

// csvWriter writes samples as they come, so that an interrupted soak
// leaves its data behind.
type csvWriter struct {
	f *os.File
	w *csv.Writer
}

func createCSV(path string) (*csvWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating the CSV file: %w", err)
	}
	c := &csvWriter{f: f, w: csv.NewWriter(f)}
	if err := c.write(csvHeader); err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

func (c *csvWriter) write(row []string) error {
	if err := c.w.Write(row); err != nil {
		return fmt.Errorf("writing the CSV file: %w", err)
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return fmt.Errorf("writing the CSV file: %w", err)
	}
	return nil
}

func (c *csvWriter) close() error {
	if err := c.f.Close(); err != nil {
		return fmt.Errorf("closing the CSV file: %w", err)
	}
	return nil
}

// outage is a period when the collector was down, from the soak's start.
type outage struct{ from, to time.Duration }

// figure plots RSS, goroutines and open fds over time, the collector's
// outages shaded.
func figure(title string, samples []sample, outages []outage) plot.Figure {
	series := func(name string, v func(sample) float64) plot.Series {
		s := plot.Series{Name: name}
		for _, x := range samples {
			s.Points = append(s.Points, plot.Point{X: x.elapsed.Minutes(), Y: v(x)})
		}
		return s
	}
	var bands []plot.Band
	for _, o := range outages {
		bands = append(bands, plot.Band{From: o.from.Minutes(), To: o.to.Minutes(), Label: "collector stopped"})
	}
	return plot.Figure{
		Title: title,
		Charts: []plot.Chart{
			{
				Title: "Memory", XLabel: "minutes", YLabel: "MiB", Bands: bands,
				Series: []plot.Series{
					series("RSS (VmRSS)", func(s sample) float64 { return s.rssMiB }),
					{Name: "peak RSS (VmHWM)", Dashed: true, Points: series("", func(s sample) float64 { return s.hwmMiB }).Points},
				},
			},
			{
				Title: "Goroutines", XLabel: "minutes", YLabel: "go_goroutines", Bands: bands,
				Series: []plot.Series{series("goroutines", func(s sample) float64 { return s.goroutines })},
			},
			{
				Title: "Open file descriptors", XLabel: "minutes", YLabel: "count", Bands: bands,
				Series: []plot.Series{
					series("open fds", func(s sample) float64 { return s.fds }),
					{Name: "containers followed", Dashed: true, Points: series("", func(s sample) float64 { return s.containers }).Points},
				},
			},
		},
	}
}
