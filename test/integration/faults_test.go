//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the agent compresses its requests
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// The fault suite: each test breaks one thing the agent depends on and
// checks that nothing is lost and memory stays bounded. The daemon restart
// is TestDaemonRestartLosesNoLogLine (daemon_restart_test.go): it cannot run
// beside the others.

// TestFaultAgentKilledEvery5s kills the agent with SIGKILL every 5 s for a
// minute while four containers log, starting it again on the same state
// each time: no line may be lost, and each kill may repeat at most the one
// batch that was in flight.
func TestFaultAgentKilledEvery5s(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "fault-kill"
	stateDir := filepath.Join(t.TempDir(), "state")
	const batch, stderrEvery = 200, 4
	a := startLogAgent(t, col, scope, stateDir, batch)

	const containers, rate, seconds = 4, 500, 75
	const lines = rate * seconds
	names := make([]string, containers)
	for i := range names {
		names[i] = uniq(t, fmt.Sprintf("kill%d", i))
		harness.RunContainer(t, append(scopeArgs(scope, names[i]), harness.WorkloadImage(t),
			"log", "-lines", strconv.Itoa(lines), "-rate", strconv.Itoa(rate), "-stderr-every", strconv.Itoa(stderrEvery), "-then", "sleep")...)
	}
	counts := newLineCounts(col, stderrEvery)
	counts.wait(t, names, 500, 30*time.Second)

	kills := 0
	for end := time.Now().Add(time.Minute); time.Now().Before(end); {
		time.Sleep(5 * time.Second)
		a.proc.Kill()
		kills++
		a = restartAgent(t, a)
		counts.poll(t)
	}
	counts.wait(t, names, lines, 2*time.Minute)
	dups := 0
	for _, n := range names {
		dups += counts.get(n).check(t, lines, kills*batch)
	}
	if dups > kills*batch {
		t.Fatalf("%d lines repeated over %d kills: more than one batch (%d) per kill", dups, kills, batch)
	}
	t.Logf("%d kills, %d lines repeated in all (at most %d allowed)", kills, dups, kills*batch)
}

// TestFaultBackendDownTwoMinutes stops the OTLP backend for two minutes
// while a container logs 5,000 lines/s: the agent must stop reading at its
// buffer bound, keep its memory under logs.buffer_bytes + 40 MiB, and
// deliver everything once the backend is back.
func TestFaultBackendDownTwoMinutes(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "fault-backend"
	const batch, bufferBytes = 1000, 16 << 20
	a := startAgent(t, agentOpts{scope: scope, extra: logsConfig(col, batch) + fmt.Sprintf("  buffer_bytes: %d\n", bufferBytes)})
	name := uniq(t, "backend")
	const rate, seconds = 5000, 150
	const lines = rate * seconds
	// Docker's log file is the buffer while the backend is away: it must
	// keep these ~130 MB (a daemon's default log-opts may rotate at less).
	harness.RunContainer(t, append(scopeArgs(scope, name), "--log-opt", "max-size=1g", "--log-opt", "max-file=1", harness.WorkloadImage(t),
		"log", "-lines", strconv.Itoa(lines), "-rate", strconv.Itoa(rate), "-line-bytes", "100", "-then", "sleep")...)
	counts := newLineCounts(col, 0)
	counts.wait(t, []string{name}, rate, 30*time.Second)

	if err := col.Stop(); err != nil {
		t.Logf("collector stop: %v", err)
	}
	var peakRSS int64
	var queued float64
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(time.Second) {
		peakRSS = max(peakRSS, rssOf(t, a.proc.Pid()))
		if s, ok := a.scrape(t).Find("dockscope_log_queue_bytes", nil); ok {
			queued = max(queued, s.Value)
		}
	}
	col.Start(t)
	counts.wait(t, []string{name}, lines, 3*time.Minute)
	// The request in flight when the backend went away may be repeated.
	counts.get(name).check(t, lines, batch)
	limit := int64(bufferBytes + 40<<20)
	t.Logf("backend down 2 min: agent peak RSS %d MiB (limit %d MiB), queue peak %.1f MiB", peakRSS>>20, limit>>20, queued/(1<<20))
	if peakRSS > limit {
		t.Fatalf("agent RSS reached %d MiB while the backend was down, want under %d MiB", peakRSS>>20, limit>>20)
	}
	if queued < bufferBytes/2 {
		t.Errorf("the log queue held at most %.1f MiB while the backend was down: the test did not fill the buffer", queued/(1<<20))
	}
}

// backendFault is what an OTLP proxy in front of the real collector does to
// log export requests: pass them on, refuse them, or hold them.
type backendFault int

const (
	passThrough   backendFault = iota
	refuseAfter2s              // 429/503 with Retry-After: 2; gRPC UNAVAILABLE with RetryInfo 2 s
	refuseNoDelay              // 503; gRPC UNAVAILABLE, saying nothing about when to retry
	answerIn2s                 // pass on after 2 s
)

// faultyBackend records the log export attempts a proxy saw, with the
// fault in force at each.
type faultyBackend struct {
	mu       sync.Mutex
	fault    backendFault
	attempts map[backendFault][]time.Time
	inFlight int
	maxIn    int // most requests held at once
}

func newFaultyBackend() *faultyBackend {
	return &faultyBackend{attempts: map[backendFault][]time.Time{}}
}

func (b *faultyBackend) set(f backendFault) {
	b.mu.Lock()
	b.fault = f
	b.mu.Unlock()
}

// begin records an attempt and returns the fault to apply to it.
func (b *faultyBackend) begin() backendFault {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts[b.fault] = append(b.attempts[b.fault], time.Now())
	b.inFlight++
	b.maxIn = max(b.maxIn, b.inFlight)
	return b.fault
}

func (b *faultyBackend) end() {
	b.mu.Lock()
	b.inFlight--
	b.mu.Unlock()
}

func (b *faultyBackend) attemptsUnder(f backendFault) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.attempts[f])
}

// startHTTPFaultProxy serves OTLP/HTTP on a free port and passes requests on
// to the collector, applying b's fault to log exports.
func startHTTPFaultProxy(t *testing.T, col *harness.Collector, b *faultyBackend) string {
	t.Helper()
	target, err := url.Parse(col.HTTPEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/logs" {
			rp.ServeHTTP(w, r)
			return
		}
		defer b.end()
		switch b.begin() {
		case refuseAfter2s:
			w.Header().Set("Retry-After", "2")
			code := http.StatusServiceUnavailable
			if len(b.attemptsUnder(refuseAfter2s))%2 == 0 {
				code = http.StatusTooManyRequests
			}
			http.Error(w, "injected", code)
			return
		case refuseNoDelay:
			http.Error(w, "injected", http.StatusServiceUnavailable)
			return
		case answerIn2s:
			time.Sleep(2 * time.Second)
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// logsForwarder is an OTLP/gRPC logs service that passes exports on to the
// collector, applying b's fault.
type logsForwarder struct {
	collogspb.UnimplementedLogsServiceServer
	up collogspb.LogsServiceClient
	b  *faultyBackend
}

func (f *logsForwarder) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	defer f.b.end()
	switch f.b.begin() {
	case refuseAfter2s:
		st, err := status.New(codes.Unavailable, "injected").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(2 * time.Second)})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	case refuseNoDelay:
		return nil, status.Error(codes.Unavailable, "injected")
	case answerIn2s:
		time.Sleep(2 * time.Second)
	}
	return f.up.Export(ctx, req)
}

// metricsForwarder passes OTLP/gRPC metrics on untouched.
type metricsForwarder struct {
	colmetricspb.UnimplementedMetricsServiceServer
	up colmetricspb.MetricsServiceClient
}

func (f *metricsForwarder) Export(ctx context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	return f.up.Export(ctx, req)
}

// startGRPCFaultProxy serves OTLP/gRPC on a free port in front of the
// collector, applying b's fault to log exports.
func startGRPCFaultProxy(t *testing.T, col *harness.Collector, b *faultyBackend) string {
	t.Helper()
	conn, err := grpc.NewClient(col.GRPCEndpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collogspb.RegisterLogsServiceServer(srv, &logsForwarder{up: collogspb.NewLogsServiceClient(conn), b: b})
	colmetricspb.RegisterMetricsServiceServer(srv, &metricsForwarder{up: colmetricspb.NewMetricsServiceClient(conn)})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return "http://" + ln.Addr().String()
}

// TestFaultSlowAndRefusingBackend puts the backend through refusals with a
// retry delay (HTTP 429/503 with Retry-After, gRPC UNAVAILABLE with
// RetryInfo), refusals without one, and 2 s answers, over both protocols:
// the agent must wait as asked, back off otherwise, never loop tightly, and
// deliver every line exactly once at the end.
func TestFaultSlowAndRefusingBackend(t *testing.T) {
	t.Parallel()
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			col := harness.Otelcol(t)
			b := newFaultyBackend()
			endpoint := startHTTPFaultProxy
			if protocol == "grpc" {
				endpoint = startGRPCFaultProxy
			}
			scope := "fault-slow-" + strings.ReplaceAll(protocol, "/", "-")
			// retry.max_interval caps the delay a backend may ask for: 2 s
			// lets the asked-for delay through, and the backoff without one
			// still starts at 200 ms.
			extra := strings.Replace(logsConfigTo(endpoint(t, col, b), protocol, 100), "max_interval: 1s", "max_interval: 2s", 1)
			a := startAgent(t, agentOpts{scope: scope, extra: extra})
			name := uniq(t, "slow")
			const lines, rate = 6000, 200
			harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t),
				"log", "-lines", strconv.Itoa(lines), "-rate", strconv.Itoa(rate), "-then", "sleep")...)
			counts := newLineCounts(col, 0)
			counts.wait(t, []string{name}, 200, 30*time.Second)

			phase := func(f backendFault, d time.Duration) (cpu float64) {
				before := a.cpuSeconds(t)
				b.set(f)
				time.Sleep(d)
				return a.cpuSeconds(t) - before
			}
			cpuRefused := phase(refuseAfter2s, 9*time.Second)
			phase(refuseNoDelay, 6*time.Second)
			phase(answerIn2s, 8*time.Second)
			b.set(passThrough)

			asked := b.attemptsUnder(refuseAfter2s)
			t.Logf("log export attempts: %d refused with a 2 s delay (9 s), %d refused without (6 s), %d answered in 2 s (8 s)",
				len(asked), len(b.attemptsUnder(refuseNoDelay)), len(b.attemptsUnder(answerIn2s)))
			// Asked to wait 2 s, it waits 2 s between attempts.
			if len(asked) < 2 || len(asked) > 6 {
				t.Errorf("%d attempts in 9 s of refusals with a 2 s retry delay, want 2 to 6", len(asked))
			}
			for i := 1; i < len(asked); i++ {
				if gap := asked[i].Sub(asked[i-1]); gap < 1900*time.Millisecond {
					t.Errorf("attempt %d came %v after the previous one; the backend asked for 2 s", i+1, gap)
				}
			}
			// Not told when, it backs off (200 ms doubling to 2 s): a few
			// attempts, not a loop.
			if n := len(b.attemptsUnder(refuseNoDelay)); n < 3 || n > 15 {
				t.Errorf("%d attempts in 6 s of refusals without a delay, want 3 to 15 (backoff 200 ms → 2 s)", n)
			}
			if n := len(b.attemptsUnder(answerIn2s)); n < 2 || n > 6 {
				t.Errorf("%d requests in 8 s of 2 s answers, want 2 to 6", n)
			}
			if b.maxIn > 1 {
				t.Errorf("%d log requests were held at once: retries pile up", b.maxIn)
			}
			// 9 s of refusals cost little: no spinning.
			if cpuRefused > 0.5 {
				t.Errorf("the agent used %.2f CPU-s during 9 s of refusals", cpuRefused)
			}
			counts.wait(t, []string{name}, lines, 90*time.Second)
			// A refused or slow request is never half-accepted: nothing repeats.
			counts.get(name).check(t, lines, 0)
		})
	}
}

// cpuSeconds reads the agent's process_cpu_seconds_total.
func (a *agent) cpuSeconds(t *testing.T) float64 {
	t.Helper()
	s, ok := a.scrape(t).Find("process_cpu_seconds_total", nil)
	if !ok {
		t.Fatal("process_cpu_seconds_total missing")
	}
	return s.Value
}

// agentUsage is what the churn test watches for leaks.
type agentUsage struct {
	goroutines, rss, fds float64
	heap, objects        float64 // Go heap in use and live objects: what tells a leak from the runtime's slack
	rssAnon, rssFile     float64 // the RSS in memory the agent allocated, and in pages of its binary
	threads              float64 // OS threads, which the Go runtime keeps once made
	fdKinds              map[string]int
}

// usage reads the agent's goroutines, RSS, fds and heap after a GC that
// returned its free memory to the system. The heap profile and goroutine
// dump it takes are kept in harness.RunDir as <test>-heap-<label>.pb.gz (for
// `go tool pprof -base` between two labels) and -goroutines-<label>.txt.
func (a *agent) usage(t *testing.T, label string) agentUsage {
	t.Helper()
	// A scrape, so that each reading finds the scrape's pooled buffers and
	// gzip writer in the same state; the profiles (the heap profile runs a
	// collection first, so it shows live data); then a collection that
	// gives every free page back to the system, so that the RSS read
	// next is what the agent holds, not the runtime's slack up to its
	// next heap goal (a few MiB at this size, whatever ran last).
	a.scrape(t)
	code, body := a.get("/debug/pprof/heap?gc=1")
	if code != http.StatusOK {
		t.Fatalf("forcing a GC in the agent: %d %s", code, body)
	}
	a.keepProfile(t, "heap-"+label+".pb.gz", body)
	if code, body := a.get("/debug/pprof/goroutine?debug=1"); code == http.StatusOK {
		a.keepProfile(t, "goroutines-"+label+".txt", body)
	}
	resp, err := http.Post(a.url+"/debug/free-os-memory", "", nil)
	if err != nil {
		t.Fatalf("freeing the agent's unused memory: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("freeing the agent's unused memory: %s", resp.Status)
	}
	m := a.scrape(t)
	var u agentUsage
	for name, v := range map[string]*float64{"go_goroutines": &u.goroutines, "process_resident_memory_bytes": &u.rss, "process_open_fds": &u.fds,
		"go_memstats_heap_inuse_bytes": &u.heap, "go_memstats_heap_objects": &u.objects} {
		s, ok := m.Find(name, nil)
		if !ok {
			t.Fatalf("%s missing from the agent's metrics", name)
		}
		*v = s.Value
	}
	pid := a.proc.Pid()
	u.rssAnon, u.rssFile = float64(procStatus(pid, "RssAnon")<<10), float64(procStatus(pid, "RssFile")<<10)
	u.threads = float64(procStatus(pid, "Threads"))
	u.fdKinds = fdKinds(t, pid)
	return u
}

// keepProfile writes a profile to the run's directory (harness.RunDir),
// <test>-<name>: kept when the run fails or DOCKSCOPE_TEST_KEEP=1.
func (a *agent) keepProfile(t *testing.T, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(harness.RunDir(t), t.Name()+"-"+name), []byte(body), 0o644); err != nil {
		t.Logf("keeping the profile %s: %v", name, err)
	}
}

// fdKinds counts a process's open files by what they are: "socket",
// "anon_inode:[eventpoll]", or a path's directory.
func fdKinds(t *testing.T, pid int) map[string]int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Logf("listing the agent's open files: %v", err)
		return nil
	}
	kinds := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		switch {
		case strings.HasPrefix(target, "/"):
			target = filepath.Dir(target)
		case strings.Contains(target, ":["):
			if k, _, _ := strings.Cut(target, ":["); k != "anon_inode" {
				target = k // socket:[inode], pipe:[inode]
			}
		}
		kinds[target]++
	}
	return kinds
}

func (u agentUsage) String() string {
	return fmt.Sprintf("%.0f goroutines, RSS %.1f MiB (anonymous %.1f, file %.1f), %.0f threads, %.0f fds, heap %.1f MiB in %.0f objects",
		u.goroutines, u.rss/(1<<20), u.rssAnon/(1<<20), u.rssFile/(1<<20), u.threads, u.fds, u.heap/(1<<20), u.objects)
}

// churnContainers starts n containers that each print three lines and exit,
// from a few workers at once, and removes each about 10 s after it started
// (time for the agent to read it, as a user's `docker run` then `docker rm`
// would leave; a container removed before the agent handled its events
// takes its log with it). It returns their names once all are removed.
func churnContainers(t *testing.T, eng *harness.Engine, scope, base string, n int) []string {
	t.Helper()
	const workers, keep = 6, 10 * time.Second
	type started struct {
		id string
		at time.Time
	}
	names := make([]string, n)
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var live []started
			removeOlder := func(than time.Duration) error {
				for len(live) > 0 && time.Since(live[0].at) >= than {
					if err := eng.Remove(context.Background(), live[0].id); err != nil {
						return err
					}
					live = live[1:]
				}
				return nil
			}
			for i := range next {
				id, err := eng.Run(context.Background(), harness.ContainerSpec{
					Name: names[i], Image: harness.WorkloadImageName,
					Cmd:       []string{"log", "-lines", "3", "-then", "exit"},
					Labels:    map[string]string{"dockscope.scope": scope},
					NoNetwork: true,
				})
				if err != nil {
					errs <- err
					return
				}
				live = append(live, started{id, time.Now()})
				if err := removeOlder(keep); err != nil {
					errs <- err
					return
				}
			}
			if len(live) > 0 {
				time.Sleep(time.Until(live[len(live)-1].at.Add(keep)))
			}
			if err := removeOlder(0); err != nil {
				errs <- err
			}
		})
	}
	began := time.Now()
feed:
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", base, i)
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			t.Fatal(err)
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("%d containers started and removed in %v", n, time.Since(began).Round(time.Second))
	return names
}

// TestFaultChurn starts and removes 300 short-lived containers (or
// $DOCKSCOPE_CHURN; `make fault-churn` runs the 2,000 of the full check)
// while the agent follows them: every line of every container must arrive
// once, and afterwards the agent's goroutines, RSS and open files must come
// back to where they were. CI runs 300: the daemon here takes ~0.7 s of
// CPU per short container, so 2,000 take ~18 minutes.
func TestFaultChurn(t *testing.T) {
	t.Parallel()
	total := 300
	if v := os.Getenv("DOCKSCOPE_CHURN"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("DOCKSCOPE_CHURN=%q is not a positive number", v)
		}
		total = n
	}
	col := harness.Otelcol(t)
	scope := "fault-churn"
	a := startAgent(t, agentOpts{scope: scope, extra: logsConfig(col, 500), args: []string{"--web.enable-pprof"}})
	harness.WorkloadImage(t)
	eng := harness.NewEngine()
	defer eng.Close()
	counts := newLineCounts(col, 0)

	// A first round warms up what the agent keeps for good (connections,
	// buffers, free lists), so that the baseline is its steady state.
	warm := churnContainers(t, eng, scope, uniq(t, "warm"), 40)
	counts.wait(t, warm, 3, time.Minute)
	time.Sleep(5 * time.Second)
	before := a.usage(t, "before")

	names := churnContainers(t, eng, scope, uniq(t, "churn"), total)
	var short []string
	for end := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		counts.poll(t)
		short = short[:0]
		for _, n := range names {
			if counts.get(n).unique() < 3 {
				short = append(short, n)
			}
		}
		if len(short) == 0 || time.Now().After(end) {
			break
		}
	}
	if len(short) > 0 {
		for _, n := range short[:min(5, len(short))] {
			t.Logf("%s: %d of 3 lines, events %v", n, counts.get(n).unique(), counts.events[n])
		}
		t.Fatalf("%d of %d containers' lines did not all arrive", len(short), total)
	}
	// One line for all of them: a log line per container would push a
	// failure below out of the part of the output CI shows.
	for _, n := range names {
		if _, err := counts.get(n).verify(3, 0); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d containers: 3 lines each, none lost, none duplicated", total)

	var after agentUsage
	harness.WaitFor(t, time.Minute, 2*time.Second, func() (bool, string) {
		after = a.usage(t, "after")
		ok := after.goroutines <= before.goroutines*1.1 && after.rss <= before.rss*1.1 && after.fds <= before.fds
		return ok, fmt.Sprintf("after %d containers: %v; before: %v; open files before %v, after %v (goroutine dumps and heap profiles in %s)",
			total, after, before, before.fdKinds, after.fdKinds, harness.RunDir(t))
	})
	t.Logf("before: %v; after %d containers: %v", before, total, after)
}

// waitNotReady waits until /readyz answers 503 with a reason containing want.
func (a *agent) waitNotReady(t *testing.T, want string) string {
	t.Helper()
	var body string
	harness.WaitFor(t, 15*time.Second, 100*time.Millisecond, func() (bool, string) {
		var code int
		code, body = a.get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, want), fmt.Sprintf("/readyz: %d %s (want 503 with %q)", code, body, want)
	})
	return body
}

// TestFaultDockerSocketProblems runs an unprivileged agent (uid 65534, as
// the image runs it) against a missing socket, a web server that is not
// Docker, and the real Engine behind a socket it may not open: each time
// /readyz says what is wrong and dockscope_docker_up is 0, and once the
// socket is fixed the agent follows containers without a restart.
func TestFaultDockerSocketProblems(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "dockscope-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	scope, name := "fault-socket", uniq(t, "sock")
	harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t), "sleep")...)
	a := startAgent(t, agentOpts{scope: scope, noWait: true, env: []string{"DOCKER_HOST=unix://" + sock},
		extra: "docker:\n  max_backoff: 1s\n", user: &syscall.Credential{Uid: 65534, Gid: 65534}})

	a.waitNotReady(t, "check if the path is correct")

	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.NotFoundHandler()}
	go web.Serve(ln)
	a.waitNotReady(t, "the server there is not a Docker Engine")
	if v, ok := a.scrape(t).Find("dockscope_docker_up", nil); !ok || v.Value != 0 {
		t.Errorf("dockscope_docker_up = %v, %v with a web server on the socket", v.Value, ok)
	}
	web.Close()

	startSocketProxy(t, sock, harness.DockerSocket(t)) // the Engine, owned by root, mode 0600
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	body := a.waitNotReady(t, "permission denied")
	if !strings.Contains(body, "the agent runs as uid 65534") {
		t.Errorf("/readyz does not say who the agent runs as: %s", body)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	a.waitValue(t, 15*time.Second, "container_memory_working_set_bytes", name, nil, func(float64) bool { return true })
	if code, body := a.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the socket was fixed: %d %s", code, body)
	}
	// Each problem is logged when it starts, not at every retry.
	if n := strings.Count(a.proc.Output(), "docker daemon not available"); n > 4 {
		t.Errorf("three problems logged %d times:\n%s", n, a.proc.Output())
	}
}

// eventsCutter is an Engine API proxy that cuts the first few event streams
// in the middle of an event, as a daemon crashing mid-write would.
type eventsCutter struct {
	cuts atomic.Int32 // streams still to cut
	cut  atomic.Int32 // streams cut
}

// errCut ends a proxied response body early.
var errCut = errors.New("cut by the test")

// halfReader passes on the stream until the first read of an event, of
// which it returns only the first half and then fails.
type halfReader struct {
	r    io.ReadCloser
	done bool
}

func (h *halfReader) Read(p []byte) (int, error) {
	if h.done {
		return 0, errCut
	}
	n, err := h.r.Read(p)
	if n > 1 {
		h.done = true
		return n / 2, nil
	}
	return n, err
}

func (h *halfReader) Close() error { return h.r.Close() }

func startEventsCutter(t *testing.T, sock, target string, cuts int) *eventsCutter {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listening on %s: %v", sock, err)
	}
	c := &eventsCutter{}
	c.cuts.Store(int32(cuts))
	rp := engineReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, "/events") && c.cuts.Add(-1) >= 0 {
			c.cut.Add(1)
			resp.Body = &halfReader{r: resp.Body}
		}
		return nil
	}
	// A copy error aborts the response: the agent sees the connection end
	// in the middle of a chunk. Not worth a log line per cut.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

// TestFaultTruncatedEventsStream cuts the agent's event stream in the
// middle of an event, three times: the agent must reconnect without
// losing the event it was reading (the container shows up without waiting
// for a resync) and without hanging.
func TestFaultTruncatedEventsStream(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	cutter := startEventsCutter(t, sock, harness.DockerSocket(t), 3)
	scope := "fault-events"
	col := harness.Otelcol(t)
	a := startAgent(t, agentOpts{scope: scope, env: []string{"DOCKER_HOST=unix://" + sock},
		extra: logsConfig(col, 100) + "docker:\n  max_backoff: 1s\n", resync: "1h"})
	counts := newLineCounts(col, 0)
	var names []string
	for i := range 4 {
		name := uniq(t, fmt.Sprintf("ev%d", i))
		names = append(names, name)
		harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t), "log", "-lines", "5", "-then", "sleep")...)
		a.waitValue(t, 10*time.Second, "container_state", name, map[string]string{"state": "running"}, func(v float64) bool { return v == 1 })
	}
	// Each event arrives once: the one cut in half is read again after the
	// reconnect, the ones before it are not.
	counts.wait(t, names, 5, 30*time.Second)
	harness.WaitFor(t, 10*time.Second, 500*time.Millisecond, func() (bool, string) {
		counts.poll(t)
		for _, n := range names {
			if got := counts.events[n]; !slices.Equal(got, []string{"container.create", "container.start"}) {
				return false, fmt.Sprintf("%s: events shipped %v, want create and start once each", n, got)
			}
		}
		return true, ""
	})
	for _, n := range names {
		counts.get(n).check(t, 5, 0)
	}
	if n := cutter.cut.Load(); n != 3 {
		t.Fatalf("%d event streams cut, want 3", n)
	}
	if v, ok := a.scrape(t).Find("dockscope_event_stream_reconnects_total", nil); !ok || v.Value < 3 {
		t.Errorf("dockscope_event_stream_reconnects_total = %v after three cuts", v.Value)
	}
}
