package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
	"github.com/dockscope/dockscope/internal/procfs"
)

// reading is the CPU counters at one instant.
type reading struct {
	at     time.Time
	host   procfs.HostTicks
	daemon procfs.CPUSnapshot
	agent  procfs.CPUSnapshot // nil without an agent
}

// read takes a reading. agent is nil for none; it reads a whole process
// tree or one process. The scan of /proc can take a while on a loaded host,
// so the reading is stamped with the middle of it.
func read(agent func() (procfs.CPUSnapshot, error)) (reading, error) {
	start := time.Now()
	var r reading
	var err error
	if r.host, err = procfs.ReadHostTicks(); err != nil {
		return r, fmt.Errorf("reading the host's CPU: %w", err)
	}
	if agent != nil {
		if r.agent, err = agent(); err != nil {
			return r, fmt.Errorf("reading the agent's CPU: %w", err)
		}
	}
	if r.daemon, err = procfs.DaemonCPU(); err != nil {
		return r, fmt.Errorf("reading the daemon's CPU: %w", err)
	}
	r.at = start.Add(time.Since(start) / 2)
	return r, nil
}

// baseline is the daemon's CPU over a window without the agent.
type baseline struct {
	took      time.Duration
	daemonCPU float64
	hostBusy  float64 // cores busy on average, with everything else on the host
}

// measureBaseline measures the Docker daemon's CPU over window.
func measureBaseline(ctx context.Context, window time.Duration) (baseline, error) {
	start, err := read(nil)
	if err != nil {
		return baseline{}, err
	}
	if err := benchenv.Sleep(ctx, time.Until(start.at.Add(window))); err != nil {
		return baseline{}, err
	}
	end, err := read(nil)
	if err != nil {
		return baseline{}, err
	}
	took := end.at.Sub(start.at)
	return baseline{
		took:      took,
		daemonCPU: procfs.SecondsBetween(start.daemon, end.daemon),
		hostBusy:  procfs.BusyCores(start.host, end.host, took),
	}, nil
}

// agentWindow is what one window with the agent running measured.
type agentWindow struct {
	took                time.Duration
	agentCPU, daemonCPU float64
	hostBusy            float64
	hwmKiB, maxRSSKiB   uint64
	scrapes             []time.Duration
	scrapeErrs          []error
	series              int // of the last successful scrape
}

// measureAgent measures the agent's and the daemon's CPU over window while
// sampling the agent's RSS every second and scraping s (if not nil) every
// scrapeEvery (if not 0). tree says whether the agent is a process tree
// (sh -c) rather than one process.
func measureAgent(ctx context.Context, a *agentProc, tree bool, s *scraper, scrapeEvery, window time.Duration) (agentWindow, error) {
	var w agentWindow
	agentCPU := func() (procfs.CPUSnapshot, error) { return procfs.OwnCPU(a.pid()) }
	if tree {
		agentCPU = func() (procfs.CPUSnapshot, error) { return procfs.TreeCPU(a.pid()) }
	}
	start, err := read(agentCPU)
	if err != nil {
		return w, err
	}

	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards w's sampled fields while the goroutines run
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if rss, _, err := procfs.TreeMemKiB(a.pid()); err == nil {
				mu.Lock()
				w.maxRSSKiB = max(w.maxRSSKiB, rss)
				mu.Unlock()
			}
			select {
			case <-bg.Done():
				return
			case <-tick.C:
			}
		}
	})
	if s != nil && scrapeEvery > 0 {
		wg.Go(func() {
			// At start, start+5s, ... up to but not at the window's end, so
			// that a 60 s window always holds exactly 12 scrapes.
			for at := time.Duration(0); at < window; at += scrapeEvery {
				if err := benchenv.Sleep(bg, time.Until(start.at.Add(at))); err != nil {
					return
				}
				body, took, err := s.scrape(bg)
				mu.Lock()
				if err != nil {
					if bg.Err() == nil {
						w.scrapeErrs = append(w.scrapeErrs, err)
					}
				} else {
					w.scrapes = append(w.scrapes, took)
					w.series = countSeries(body)
				}
				mu.Unlock()
			}
		})
	}

	// Sleep through the window, but notice at once if the agent dies.
	timer := time.NewTimer(time.Until(start.at.Add(window)))
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-a.done:
		err = a.exitErr()
	case <-timer.C:
	}
	timer.Stop()
	if err == nil {
		var end reading
		end, err = read(agentCPU)
		var hwmErr error
		_, w.hwmKiB, hwmErr = procfs.TreeMemKiB(a.pid())
		if err = errors.Join(err, hwmErr); err == nil {
			w.took = end.at.Sub(start.at)
			w.agentCPU = procfs.SecondsBetween(start.agent, end.agent)
			w.daemonCPU = procfs.SecondsBetween(start.daemon, end.daemon)
			w.hostBusy = procfs.BusyCores(start.host, end.host, w.took)
		} else {
			err = fmt.Errorf("at the end of the window: %w", err)
		}
	}
	stop()
	wg.Wait()
	return w, err
}
