// Command fswalk measures what the filesystem metrics (container_fs_usage_bytes
// and OTLP container.filesystem.*) cost: the CPU time of walking N
// containers' writable layers of F files each, in turns of -turn entries as
// the agent takes them, plus the statfs the agent does per container. It
// prints figures; it is not a pass/fail test.
//
//	go run ./bench/fswalk [-containers 200] [-files 10000] [-dir DIR] [-passes 3]
//	                      [-turn 10000] [-rate 20000] [-interval 5m] [-keep] [-cpuprofile FILE]
//
// The layers are made under -dir (default: the system's temporary
// directory; put it on the disk that holds /var/lib/docker to be
// representative): per container a diff/ of F empty files in directories of
// 100, and a log directory with one file, as the agent walks them. Empty
// files cost the walk as much as full ones (one stat each). With -keep the
// tree stays for the next run, which reuses it.
//
// The page cache is warm (the tree was just made, or walked by the
// previous pass): dropping the host's caches would disturb everything else
// on it. A cold walk adds the disk reads of the inodes, which the agent
// spreads over its -rate pacing.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/dockscope/dockscope/internal/fswalk"
)

func main() {
	containers := flag.Int("containers", 200, "containers")
	files := flag.Int("files", 10000, "files in each container's writable layer")
	dir := flag.String("dir", os.TempDir(), "where to make the layers")
	passes := flag.Int("passes", 3, "measured passes over every container")
	turn := flag.Int("turn", 10000, "entries per turn (stats.filesystem.files_per_turn)")
	rate := flag.Int("rate", 20000, "entries per second (stats.filesystem.files_per_second), for the derived figures")
	interval := flag.Duration("interval", 5*time.Minute, "stats.filesystem.interval, for the derived figures")
	keep := flag.Bool("keep", false, "keep the layers for the next run")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured passes to this file")
	flag.Parse()
	if err := run(*containers, *files, *dir, *passes, *turn, *rate, *interval, *keep, *cpuProfile); err != nil {
		fmt.Fprintln(os.Stderr, "fswalk:", err)
		os.Exit(1)
	}
}

func run(containers, files int, dir string, passes, turn, rate int, interval time.Duration, keep bool, cpuProfile string) error {
	root := filepath.Join(dir, fmt.Sprintf("dockscope-fswalk-%dx%d", containers, files))
	start := time.Now()
	made, err := makeLayers(root, containers, files)
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(root)
	}
	if made {
		fmt.Printf("made %d layers of %d files under %s in %s\n", containers, files, root, time.Since(start).Round(time.Millisecond))
	} else {
		fmt.Printf("reusing %d layers of %d files under %s\n", containers, files, root)
	}

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	fmt.Printf("\n%-6s %10s %10s %10s %12s\n", "pass", "entries", "wall", "cpu", "cpu/entry")
	var bestCPU time.Duration
	var entries int
	for p := range passes + 1 {
		runtime.GC()
		cpu0, wall0 := cpuTime(), time.Now()
		n, err := pass(root, containers, turn)
		if err != nil {
			return err
		}
		cpu, wall := cpuTime()-cpu0, time.Since(wall0)
		label := fmt.Sprint(p)
		if p == 0 {
			label = "warm-up"
		} else if bestCPU == 0 || cpu < bestCPU {
			bestCPU = cpu
		}
		entries = n
		fmt.Printf("%-6s %10d %10s %10s %10.2fµs\n", label, n, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(cpu.Nanoseconds())/float64(n)/1e3)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	paced := time.Duration(float64(entries) / float64(rate) * float64(time.Second))
	fmt.Printf("\nN=%d containers × %d files: %d entries per pass, best pass %s of CPU (%.2f µs per entry)\n",
		containers, files, entries, bestCPU.Round(time.Millisecond), float64(bestCPU.Nanoseconds())/float64(entries)/1e3)
	fmt.Printf("at files_per_second %d a pass lasts %s, using %.1f %% of a core while it runs\n",
		rate, paced.Round(time.Second), 100*bestCPU.Seconds()/max(paced.Seconds(), bestCPU.Seconds()))
	fmt.Printf("at interval %s that is %.2f %% of a core on average\n", interval, 100*bestCPU.Seconds()/interval.Seconds())
	fmt.Printf("go heap in use after the walks: %.1f MiB\n", float64(ms.HeapInuse)/(1<<20))
	return nil
}

// pass walks every container's layer and log directory to the end, in
// turns of turn entries taken round-robin, and statfs each layer once, as
// the agent does. It returns the entries read.
func pass(root string, containers, turn int) (int, error) {
	walks := make([]*fswalk.Walk, containers)
	for c := range walks {
		walks[c] = fswalk.New(filepath.Join(root, fmt.Sprint(c), "diff"), filepath.Join(root, fmt.Sprint(c), "log"))
	}
	total := 0
	for left := containers; left > 0; {
		for c, w := range walks {
			if w == nil {
				continue
			}
			n, done, err := w.Step(turn)
			total += n
			if err != nil {
				w.Close()
				return total, err
			}
			if done {
				w.Close()
				var st syscall.Statfs_t
				if err := syscall.Statfs(filepath.Join(root, fmt.Sprint(c), "diff"), &st); err != nil {
					return total, err
				}
				walks[c] = nil
				left--
			}
		}
	}
	return total, nil
}

// makeLayers makes the tree unless a complete one is there already.
func makeLayers(root string, containers, files int) (bool, error) {
	done := filepath.Join(root, "complete")
	if _, err := os.Stat(done); err == nil {
		return false, nil
	}
	if err := os.RemoveAll(root); err != nil {
		return false, err
	}
	for c := range containers {
		for f := range files {
			d := filepath.Join(root, fmt.Sprint(c), "diff", fmt.Sprintf("d%03d", f/100))
			if f%100 == 0 {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return false, err
				}
			}
			fh, err := os.OpenFile(filepath.Join(d, fmt.Sprintf("f%05d", f)), os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return false, err
			}
			fh.Close()
		}
		logDir := filepath.Join(root, fmt.Sprint(c), "log")
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(filepath.Join(logDir, "c-json.log"), make([]byte, 1024), 0o644); err != nil {
			return false, err
		}
	}
	return true, os.WriteFile(done, nil, 0o644)
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
