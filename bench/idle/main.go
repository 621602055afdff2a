// Command idle measures what an idle followed container costs the agent in
// memory: the heap and goroutine stacks of the real agent binary following
// N containers that logged one line each and then stay silent, their follow
// streams open. It prints figures; it is not a pass/fail test.
//
//	go run ./bench/idle [-containers 1000] [-also 100] [-settle 5s] [-agent-bin FILE]
//
// The Docker Engine is a fake one on a unix socket, served by this program:
// pings, version, info, an events stream with no events, the container list,
// inspects, one-shot stats and multiplexed log follow streams (one line,
// then open and silent). The OTLP backend is a local HTTP listener that
// accepts every request. No real Docker is needed or touched.
//
// For 0 containers, each -also count and -containers, it starts the engine
// and a fresh agent (logs and events on, exporting to the listener), waits
// until every follow stream is open and every line was exported, waits
// -settle more, reads go_goroutines and process_resident_memory_bytes from
// its /metrics, makes it collect garbage twice (its pprof heap endpoint
// with gc=1; the second also empties sync.Pool's victim cache) and takes
// HeapInuse and StackInuse from the runtime.MemStats that the heap profile
// prints right after the second (a /metrics scrape allocates megabytes at
// 1,000 containers before the Go collector reads the heap). Of -samples
// readings the lowest heap+stack is reported. The figure per container is
// the difference to 0 containers, divided by N.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
	"github.com/dockscope/dockscope/bench/internal/promscrape"
)

type options struct {
	containers int
	also       []int
	settle     time.Duration
	samples    int
	timeout    time.Duration
	agentBin   string
	profiles   string
}

func parseOptions(args []string) (*options, error) {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	o := &options{}
	also := fs.String("also", "100", "comma-separated smaller container counts also measured (empty for none)")
	fs.IntVar(&o.containers, "containers", 1000, "idle followed containers")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "wait after every line was exported, before measuring")
	fs.IntVar(&o.samples, "samples", 3, "readings per count; the lowest is reported")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "longest wait for the agent to follow every container")
	fs.StringVar(&o.agentBin, "agent-bin", "", "agent binary to measure (default: build ./cmd/agent)")
	fs.StringVar(&o.profiles, "profiles", "", "directory to save the agent's heap and goroutine profiles in, per run (heap-N-logs-on.pprof, goroutines-N-logs-on.txt)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.containers < 1 || o.samples < 1 {
		return nil, errors.New("-containers and -samples must be at least 1")
	}
	for _, f := range strings.Split(*also, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n >= o.containers {
			return nil, fmt.Errorf("-also %q: want counts from 1 to %d", f, o.containers-1)
		}
		o.also = append(o.also, n)
	}
	return o, nil
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	o, err := parseOptions(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := measureAll(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "idle:", err)
		return 1
	}
	return 0
}

// reading is what the agent's /metrics said at one container count.
type reading struct {
	containers            int
	logs                  bool
	heap, stack, rss      float64 // bytes
	goroutines            float64
	streams, unknownPaths int
}

func measureAll(ctx context.Context, o *options) error {
	tmp, err := os.MkdirTemp("", "dockscope-bench-idle-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := o.agentBin
	if bin == "" {
		root, err := benchenv.ModuleRoot(ctx)
		if err != nil {
			return err
		}
		bin = filepath.Join(tmp, "agent")
		progress("building ./cmd/agent")
		if err := benchenv.GoBuild(ctx, root, "./cmd/agent", bin); err != nil {
			return err
		}
	}
	type step struct {
		n    int
		logs bool
	}
	steps := []step{{0, true}}
	for _, n := range o.also {
		steps = append(steps, step{n, true})
	}
	// The last row, logs off, tells following from discovery and metrics.
	steps = append(steps, step{o.containers, true}, step{o.containers, false})
	var rs []reading
	for _, st := range steps {
		dir := filepath.Join(tmp, fmt.Sprintf("%d-%t", st.n, st.logs))
		r, err := measure(ctx, o, bin, dir, st.n, st.logs)
		if err != nil {
			return fmt.Errorf("%d containers (logs %t): %w", st.n, st.logs, err)
		}
		progress("%d containers, logs %t: heap in use %.0f KiB, stacks %.0f KiB, %0.f goroutines, RSS %.0f KiB",
			st.n, st.logs, r.heap/1024, r.stack/1024, r.goroutines, r.rss/1024)
		rs = append(rs, r)
	}
	report(os.Stdout, rs)
	return nil
}

func report(w io.Writer, rs []reading) {
	base := rs[0]
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "containers\tlogs\theap in use KiB\tstacks KiB\tgoroutines\tRSS KiB\theap KiB/ctr\tstack KiB/ctr\theap+stack KiB/ctr\tgoroutines/ctr\tRSS KiB/ctr\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t", r.containers, onOff(r.logs), r.heap/1024, r.stack/1024, r.goroutines, r.rss/1024)
		if r.containers == 0 {
			fmt.Fprintln(tw, "\t\t\t\t\t")
			continue
		}
		perContainer(tw, r, base)
	}
	tw.Flush()
	// Following logs alone: logs on minus logs off at the same count.
	on, off := rs[len(rs)-2], rs[len(rs)-1]
	fmt.Fprintf(w, "\nfollowing the logs of an idle container, at %d (logs on minus logs off):\n", on.containers)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "heap KiB/ctr\tstack KiB/ctr\theap+stack KiB/ctr\tgoroutines/ctr\tRSS KiB/ctr\t")
	perContainer(tw, on, off)
	tw.Flush()
}

// perContainer writes r's figures less base's, per container of r.
func perContainer(w io.Writer, r, base reading) {
	n := float64(r.containers)
	h, s := (r.heap-base.heap)/n/1024, (r.stack-base.stack)/n/1024
	fmt.Fprintf(w, "%.1f\t%.1f\t%.1f\t%.2f\t%.1f\t\n", h, s, h+s, (r.goroutines-base.goroutines)/n, (r.rss-base.rss)/n/1024)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// measure runs the engine and a fresh agent with n containers and reads
// the agent's memory once every stream is open and every line exported.
func measure(ctx context.Context, o *options, bin, dir string, n int, logs bool) (reading, error) {
	r := reading{containers: n, logs: logs}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		return r, err
	}
	eng, err := startEngine(filepath.Join(dir, "docker.sock"), n)
	if err != nil {
		return r, err
	}
	defer eng.close()
	sink, err := startSink()
	if err != nil {
		return r, err
	}
	defer sink.close()
	port, err := benchenv.FreePort()
	if err != nil {
		return r, err
	}
	web := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := filepath.Join(dir, "agent.yml")
	if err := writeConfig(cfg, dir, eng.sock, sink.url, port, logs); err != nil {
		return r, err
	}
	agent, err := startAgent(bin, cfg, filepath.Join(dir, "agent.log"))
	if err != nil {
		return r, err
	}
	defer func() {
		if err := agent.stop(10 * time.Second); err != nil {
			progress("%v", err)
		}
	}()

	// Every stream open and every line exported (the agent's own count of
	// log records sent), then the settle time.
	deadline := time.Now().Add(o.timeout)
	for {
		if err := agent.exitErr(); err != nil {
			return r, err
		}
		m, err := promscrape.Scrape(ctx, web+"/metrics", 10*time.Second)
		switch {
		case err != nil:
		case !logs && eng.inspects.Load() >= int64(n):
		case logs && eng.following.Load() == int64(n) &&
			promscrape.Sum(m, `dockscope_records_sent_total{stage="logs"}`) >= float64(n):
		default:
			err = errors.New("not yet")
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("after %s: %d of %d follow streams open, %.0f records sent (scrape: %v); agent log %s:\n%s",
				o.timeout, eng.following.Load(), n, promscrape.Sum(m, `dockscope_records_sent_total{stage="logs"}`), err,
				agent.logPath, benchenv.Tail(agent.logPath, 10))
		}
		if err := benchenv.Sleep(ctx, 200*time.Millisecond); err != nil {
			return r, err
		}
	}
	if err := benchenv.Sleep(ctx, o.settle); err != nil {
		return r, err
	}
	for i := range o.samples {
		if i > 0 {
			if err := benchenv.Sleep(ctx, time.Second); err != nil {
				return r, err
			}
		}
		// RSS and goroutines from /metrics; the heap from the runtime's
		// own figures printed right after a GC by the heap profile: a
		// /metrics scrape at 1,000 containers allocates megabytes itself
		// before the Go collector reads the heap.
		m, err := promscrape.Scrape(ctx, web+"/metrics", 10*time.Second)
		if err != nil {
			return r, err
		}
		if err := collectGarbage(ctx, web); err != nil {
			return r, err
		}
		ms, err := memStatsAfterGC(ctx, web)
		if err != nil {
			return r, err
		}
		heap, stack := ms["HeapInuse"], ms["Stack"]
		if i == 0 || heap+stack < r.heap+r.stack {
			r.heap, r.stack, r.goroutines, r.rss = heap, stack, m["go_goroutines"], m["process_resident_memory_bytes"]
		}
	}
	if o.profiles != "" {
		if err := saveProfiles(ctx, web, o.profiles, fmt.Sprintf("%d-logs-%s", n, onOff(logs))); err != nil {
			return r, err
		}
	}
	r.streams = int(eng.following.Load())
	if logs && r.streams != n {
		return r, fmt.Errorf("%d of %d follow streams open at the end (the agent reopened some: %d log requests)", r.streams, n, eng.logsReqs.Load())
	}
	if u := eng.unknownPaths(); len(u) > 0 {
		progress("the fake engine had no answer for %v", u)
	}
	return r, nil
}

// collectGarbage makes the agent run a full GC: its heap profile handler
// does so with gc=1.
func collectGarbage(ctx context.Context, web string) error {
	_, err := heapProfileText(ctx, web)
	return err
}

// memStatsAfterGC runs a GC in the agent and returns the runtime.MemStats
// fields that its heap profile prints right after it ("# HeapInuse = N").
func memStatsAfterGC(ctx context.Context, web string) (map[string]float64, error) {
	text, err := heapProfileText(ctx, web)
	if err != nil {
		return nil, err
	}
	return parseMemStats(text)
}

// parseMemStats reads the "# Name = value" lines that end a heap profile
// in its text form.
func parseMemStats(text string) (map[string]float64, error) {
	ms := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		if !ok || !strings.HasPrefix(line, "# ") {
			continue
		}
		// "# Stack = inuse / sys"
		v, _, _ = strings.Cut(v, " ")
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			ms[k] = f
		}
	}
	if _, ok := ms["Stack"]; !ok {
		return nil, errors.New("the agent's heap profile shows no runtime.MemStats")
	}
	return ms, nil
}

func heapProfileText(ctx context.Context, web string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, web+"/debug/pprof/heap?gc=1&debug=1", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking the agent to collect garbage: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("asking the agent to collect garbage: %s %v", resp.Status, err)
	}
	return string(b), nil
}

// saveProfiles stores the agent's heap profile and goroutine dump.
func saveProfiles(ctx context.Context, web, dir, tag string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for path, file := range map[string]string{
		"/debug/pprof/heap":              "heap-" + tag + ".pprof",
		"/debug/pprof/goroutine?debug=1": "goroutines-" + tag + ".txt",
	} {
		if err := fetch(ctx, web+path, filepath.Join(dir, file)); err != nil {
			return err
		}
	}
	return nil
}

func fetch(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	return f.Close()
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05.0"), fmt.Sprintf(format, args...))
}
