package logtail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	ctypes "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/pipeline"
)

// fakeDocker is a Docker client with one container: a status, a log, and
// failure switches. A follow request of a running container stays open
// until the container's status changes or follow is closed.
type fakeDocker struct {
	mu         sync.Mutex
	status     string // running, restarting, exited, gone
	startedAt  time.Time
	lines      []fakeLine
	engineErr  string // the stream ends with "Error grabbing logs: ..."
	inspectErr error
	hangLogs   bool          // the logs request never answers
	follow     chan struct{} // closed to end every open follow stream

	// podman makes it answer as Podman 4.3 does: timestamps in whole
	// seconds, `since` applied to each line's full timestamp (after it),
	// and a follow request of a stopped container answered with only the
	// first fifth of its lines (Podman's follow stream near a container's
	// end; a plain read is complete).
	podman bool
	// followHole: a follow stream leaves out the lines with these indices
	// [from, to), as Podman's did just before it ended.
	followHole [2]int

	logsReqs, inspects atomic.Int64
	follows            atomic.Int64 // logs requests with follow
	sinces             []string
}

type fakeLine struct {
	t      time.Time
	stream byte
	body   string
}

func newFakeDocker(status string) *fakeDocker {
	return &fakeDocker{status: status, startedAt: time.Now().Add(-time.Minute), follow: make(chan struct{})}
}

func (f *fakeDocker) set(fn func(f *fakeDocker)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// endStreams ends the open follow streams (as a stopping container does).
func (f *fakeDocker) endStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.follow)
	f.follow = make(chan struct{})
}

func (f *fakeDocker) ContainerInspect(ctx context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	f.inspects.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inspectErr != nil {
		return client.ContainerInspectResult{}, f.inspectErr
	}
	if f.status == "gone" {
		return client.ContainerInspectResult{}, cerrdefs.ErrNotFound.WithMessage("No such container: " + id)
	}
	return client.ContainerInspectResult{Container: ctypes.InspectResponse{ID: id, State: &ctypes.State{
		Status:     ctypes.ContainerState(f.status),
		Running:    f.status == "running" || f.status == "restarting",
		Restarting: f.status == "restarting",
		StartedAt:  f.startedAt.UTC().Format(time.RFC3339Nano),
	}}}, nil
}

func (f *fakeDocker) ContainerLogs(ctx context.Context, id string, o client.ContainerLogsOptions) (client.ContainerLogsResult, error) {
	f.logsReqs.Add(1)
	f.mu.Lock()
	f.sinces = append(f.sinces, o.Since)
	hang := f.hangLogs
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if o.Follow {
		f.follows.Add(1)
	}
	var since time.Time
	if o.Since != "" {
		var sec, ns int64
		fmt.Sscanf(o.Since, "%d.%d", &sec, &ns)
		since = time.Unix(sec, ns)
	}
	f.mu.Lock()
	var b bytes.Buffer
	layout := "2006-01-02T15:04:05.000000000Z"
	if f.podman {
		layout = time.RFC3339
	}
	var sel []fakeLine
	for _, l := range f.lines {
		if f.podman && (since.IsZero() || l.t.After(since)) || !f.podman && !l.t.Before(since) {
			sel = append(sel, l)
		}
	}
	if f.podman && o.Follow && f.status != "running" {
		sel = sel[:len(sel)/5]
	}
	for i, l := range sel {
		if o.Follow && i >= f.followHole[0] && i < f.followHole[1] {
			continue
		}
		writeFrame(&b, l.stream, l.t.UTC().Format(layout)+" "+l.body)
	}
	if f.engineErr != "" {
		writeFrame(&b, 3, "Error grabbing logs: "+f.engineErr+"\n")
	}
	open := o.Follow && f.status == "running" && f.engineErr == ""
	follow := f.follow
	f.mu.Unlock()
	pr, pw := io.Pipe()
	go func() {
		pw.Write(b.Bytes())
		if open {
			select {
			case <-follow:
			case <-ctx.Done():
			}
		}
		pw.Close()
	}()
	return readCloser{Reader: pr, Closer: closeFunc(func() error { pr.Close(); return nil })}, nil
}

func writeFrame(w io.Writer, stream byte, payload string) {
	if stream == 0 {
		stream = 1
	}
	fr := []byte{stream, 0, 0, 0, byte(len(payload) >> 24), byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload))}
	w.Write(append(fr, payload...))
}

func (f *fakeDocker) addLine(body string) {
	f.set(func(f *fakeDocker) { f.lines = append(f.lines, fakeLine{t: time.Now(), body: body + "\n"}) })
}

// testTail is a Manager on a fake Docker, with its queue drained into got.
type testTail struct {
	m      *Manager
	q      *pipeline.LogQueue
	cps    *pipeline.Checkpointer
	tel    *pipeline.Telemetry
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	got []string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startTail(t *testing.T, d Docker, stateDir string) *testTail {
	t.Helper()
	cps, err := pipeline.OpenCheckpointer(stateDir)
	if cps == nil {
		t.Fatal(err)
	}
	return startTailOn(t, d, cps, false)
}

// startTailOn starts a Manager on cps; with ack, what it queues is
// acknowledged as soon as it is taken from the queue (a backend that
// takes everything at once).
func startTailOn(t *testing.T, d Docker, cps *pipeline.Checkpointer, ack bool) *testTail {
	t.Helper()
	tel := pipeline.NewTelemetry()
	q := pipeline.NewLogQueue(16<<20, pipeline.Block, tel.Stage(pipeline.StageLogs))
	logs := &syncBuffer{}
	m := New(Options{Docker: d, Queue: q, Checkpoints: cps, Telemetry: tel, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Timeout: time.Second, MaxBackoff: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	tt := &testTail{m: m, q: q, cps: cps, tel: tel, logs: logs, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(ctx) })
	wg.Go(func() {
		for ctx.Err() == nil {
			batch := q.PopBatch(ctx, nil, 1000, 1<<20, 0)
			for _, r := range batch {
				tt.mu.Lock()
				tt.got = append(tt.got, string(r.Body))
				tt.mu.Unlock()
			}
			if ack && len(batch) > 0 {
				if err := cps.Ack(batch); err != nil {
					t.Errorf("acknowledging: %v", err)
				}
			}
		}
	})
	go func() { wg.Wait(); close(tt.done) }()
	for m.ctxOrNil() == nil {
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(tt.stop)
	return tt
}

func (tt *testTail) stop() {
	tt.cancel()
	<-tt.done
}

func (tt *testTail) lines() []string {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return append([]string(nil), tt.got...)
}

func (tt *testTail) waitLines(t *testing.T, n int, timeout time.Duration) []string {
	t.Helper()
	end := time.Now().Add(timeout)
	for {
		got := tt.lines()
		if len(got) >= n || time.Now().After(end) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (tt *testTail) observe(f *fakeDocker, newRun bool) {
	f.mu.Lock()
	c := Container{Meta: pipeline.ContainerMeta{ID: "c1", Name: "c1"}, LogDriver: "json-file",
		Running: f.status == "running", Restarting: f.status == "restarting", StartedAt: f.startedAt}
	if f.status == "exited" {
		c.FinishedAt = time.Now()
	}
	f.mu.Unlock()
	tt.m.Observe(c, newRun)
}

// A container in Docker's restart backoff answers a follow request at once
// and ends it: the tailer reads what is there, ends, and waits for the next
// run instead of reopening in a loop (4,392 requests in 2 s before).
func TestRestartingContainerIsNotReopenedInALoop(t *testing.T) {
	f := newFakeDocker("restarting")
	f.lines = []fakeLine{{t: f.startedAt, body: "boom\n"}}
	tt := startTail(t, f, t.TempDir())
	tt.observe(f, false)
	if got := tt.waitLines(t, 1, 5*time.Second); len(got) != 1 || got[0] != "boom" {
		t.Fatalf("read %q", got)
	}
	time.Sleep(2 * time.Second)
	if n := f.logsReqs.Load(); n > 3 {
		t.Errorf("%d logs requests in 2 s for a restarting container", n)
	}
	// The next run: started again, without an event. Its lines are read.
	f.set(func(f *fakeDocker) {
		f.status, f.startedAt = "running", time.Now()
		f.lines = append(f.lines, fakeLine{t: time.Now(), body: "run 2\n"})
	})
	tt.observe(f, false)
	if got := tt.waitLines(t, 2, 5*time.Second); len(got) != 2 || got[1] != "run 2" {
		t.Fatalf("second run read %q", got)
	}
	if tt.tel.LogStreamReopens.Load() == 0 {
		t.Error("the second run's logs request was not counted as a reopen")
	}
}

// dockerd ends a follow stream after "Error grabbing logs" (a log entry it
// cannot decode) while the container runs: the tailer backs off, and warns
// once, not once per reopen.
func TestStreamEndingWhileRunningBacksOff(t *testing.T) {
	f := newFakeDocker("running")
	f.lines = []fakeLine{{t: f.startedAt.Add(time.Second), body: "good\n"}}
	f.engineErr = `invalid character '\x00' looking for beginning of value`
	tt := startTail(t, f, t.TempDir())
	tt.observe(f, true)
	time.Sleep(3 * time.Second)
	n := f.logsReqs.Load()
	// 0.5 s, 1 s, 2 s (capped), ±20 %: at most 4 requests in 3 s.
	if n > 4 || n < 2 {
		t.Errorf("%d logs requests in 3 s for a stream that keeps ending", n)
	}
	if got := tt.lines(); len(got) != 1 {
		t.Errorf("read %q, want the one line once", got)
	}
	if c := strings.Count(tt.logs.String(), "Error grabbing logs"); c != 1 {
		t.Errorf("the in-stream error was logged %d times, want once:\n%s", c, tt.logs.String())
	}
	if r := tt.tel.LogStreamReopens.Load(); r != uint64(n-1) {
		t.Errorf("reopens counted %d, want %d", r, n-1)
	}
	// New lines reset the backoff.
	f.set(func(f *fakeDocker) { f.engineErr = "" })
	f.addLine("after")
	if got := tt.waitLines(t, 2, 4*time.Second); len(got) != 2 || got[1] != "after" {
		t.Fatalf("read %q", got)
	}
}

// A container read to the end of its run is followed again when an
// inspect (a resync) shows it running a new run, whatever events were lost.
func TestResyncFollowsANewRunWithoutAStartEvent(t *testing.T) {
	f := newFakeDocker("running")
	f.lines = []fakeLine{{t: f.startedAt.Add(time.Second), body: "run1"}}
	f.lines[0].body += "\n"
	tt := startTail(t, f, t.TempDir())
	tt.observe(f, true)
	tt.waitLines(t, 1, 5*time.Second)
	f.set(func(f *fakeDocker) { f.status = "exited" })
	f.endStreams()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if tailing, done := tt.m.Following("c1"); !tailing && done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stopped container's tailer did not finish")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !tt.m.Unfollowed("c1") {
		t.Error("a container whose tailer ended is not reported unfollowed: a resync would not inspect it")
	}
	tt.observe(f, false) // a resync: same run, nothing to do
	if tailing, _ := tt.m.Following("c1"); tailing {
		t.Fatal("a run read to its end was followed again")
	}
	f.set(func(f *fakeDocker) { f.status, f.startedAt = "running", time.Now() })
	f.addLine("run2")
	tt.observe(f, false) // the start event was lost
	if got := tt.waitLines(t, 2, 5*time.Second); len(got) != 2 || got[1] != "run2" {
		t.Fatalf("read %q", got)
	}
	if tt.m.Unfollowed("c1") {
		t.Error("a followed container is reported unfollowed")
	}
}

// An inspect that fails (a busy daemon) never ends the tailer of a
// running container.
func TestInspectFailureKeepsTheTailer(t *testing.T) {
	f := newFakeDocker("running")
	tt := startTail(t, f, t.TempDir())
	tt.observe(f, true)
	time.Sleep(100 * time.Millisecond)
	f.set(func(f *fakeDocker) { f.inspectErr = errors.New("daemon busy") })
	f.endStreams()
	time.Sleep(1500 * time.Millisecond)
	if tailing, done := tt.m.Following("c1"); !tailing || done {
		t.Fatalf("after failed inspects: tailing=%v done=%v", tailing, done)
	}
	f.set(func(f *fakeDocker) { f.inspectErr = nil })
	f.addLine("after")
	if got := tt.waitLines(t, 1, 5*time.Second); len(got) != 1 {
		t.Fatalf("read %q", got)
	}
	if c := strings.Count(tt.logs.String(), "inspecting a followed container failed"); c != 1 {
		t.Errorf("failed inspects logged %d times, want once", c)
	}
}

// A start event handled while the previous run's tailer is finishing
// starts a tailer for the new run when the old one ends.
func TestStartEventWhileTheTailerFinishesIsKept(t *testing.T) {
	f := newFakeDocker("running")
	f.lines = []fakeLine{{t: f.startedAt.Add(time.Second), body: "run1\n"}}
	f.set(func(f *fakeDocker) { f.inspectErr = errors.New("slow") })
	tt := startTail(t, f, t.TempDir())
	tt.observe(f, true)
	tt.waitLines(t, 1, 5*time.Second)
	// The run ends; the tailer is stuck retrying its inspect when the
	// next run's start event is handled.
	f.set(func(f *fakeDocker) { f.status = "exited" })
	f.endStreams()
	time.Sleep(200 * time.Millisecond)
	f.set(func(f *fakeDocker) { f.status, f.startedAt = "running", time.Now() })
	f.addLine("run2")
	tt.observe(f, true)
	f.set(func(f *fakeDocker) { f.inspectErr = nil })
	if got := tt.waitLines(t, 2, 5*time.Second); len(got) != 2 || got[1] != "run2" {
		t.Fatalf("read %q", got)
	}
}

// A container begun in one agent run and killed before any of its records
// were acknowledged is read again by the next, even stopped and with
// saves after it stopped.
func TestUnacknowledgedStoppedContainerIsReadAgain(t *testing.T) {
	dir := t.TempDir()
	f := newFakeDocker("running")
	f.lines = []fakeLine{{t: f.startedAt.Add(time.Second), body: "job\n"}}
	tt := startTail(t, f, dir)
	tt.observe(f, true)
	tt.waitLines(t, 1, 5*time.Second)
	f.set(func(f *fakeDocker) { f.status = "exited" })
	f.endStreams()
	time.Sleep(200 * time.Millisecond)
	if err := tt.cps.Save(); err != nil { // another container's save
		t.Fatal(err)
	}
	tt.stop() // nothing acknowledged

	tt2 := startTail(t, f, dir)
	tt2.observe(f, false)
	if got := tt2.waitLines(t, 1, 5*time.Second); len(got) != 1 || got[0] != "job" {
		t.Fatalf("the next agent run read %q, want the job's line", got)
	}
}

// A lost (unreadable) state resumes a running container from shortly
// before the lost file was last written, not from its start, and says so.
func TestLostStateResumesFromItsLastWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log-checkpoints.json")
	if err := os.WriteFile(path, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	written := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, written, written); err != nil {
		t.Fatal(err)
	}
	f := newFakeDocker("running")
	f.startedAt = time.Now().Add(-3 * time.Hour)
	f.lines = []fakeLine{
		{t: written.Add(-2 * time.Hour), body: "old\n"},
		{t: written.Add(-time.Second), body: "recent\n"},
	}
	tt := startTail(t, f, dir)
	tt.observe(f, true)
	if got := tt.waitLines(t, 1, 5*time.Second); len(got) != 1 || got[0] != "recent" {
		t.Fatalf("read %q, want only the line after the lost state's write minus the slack", got)
	}
	f.mu.Lock()
	since := f.sinces[0]
	f.mu.Unlock()
	if want := sinceNanos(written.Add(-lostSlack).UnixNano()); since != want {
		t.Errorf("since=%s, want %s", since, want)
	}
	if !strings.Contains(tt.logs.String(), "log checkpoints were lost") {
		t.Errorf("no log line says where logs resume:\n%s", tt.logs.String())
	}
}

// The logs request's response header has a deadline; the stream after
// it has none.
func TestLogsRequestHeaderTimesOut(t *testing.T) {
	f := newFakeDocker("running")
	f.hangLogs = true
	tt := startTail(t, f, t.TempDir())
	tt.observe(f, true)
	time.Sleep(2500 * time.Millisecond)
	if n := f.logsReqs.Load(); n < 2 {
		t.Fatalf("%d logs requests: the first never timed out", n)
	}
	if !strings.Contains(tt.logs.String(), "no answer within 1s") {
		t.Errorf("the timeout was not logged:\n%s", tt.logs.String())
	}
	f.set(func(f *fakeDocker) { f.hangLogs = false })
	time.Sleep(2500 * time.Millisecond) // the backoff runs out: a stream opens
	n := f.logsReqs.Load()
	time.Sleep(3 * time.Second) // idle, longer than the timeout
	if m := f.logsReqs.Load(); m != n {
		t.Errorf("an idle stream was ended: %d logs requests, then %d", n, m)
	}
	f.addLine("late")
	f.endStreams()
	if got := tt.waitLines(t, 1, 5*time.Second); len(got) != 1 {
		t.Fatalf("read %q", got)
	}
}

// An idle tailer holds no slab: its memory is released between lines.
func TestIdleTailerHoldsNoSlab(t *testing.T) {
	f := newFakeDocker("running")
	tt := startTail(t, f, t.TempDir())
	tt.observe(f, true)
	for i := range 3 {
		f.addLine(fmt.Sprint("line ", i))
		f.endStreams() // each line on a stream of its own
		tt.waitLines(t, i+1, 5*time.Second)
	}
	time.Sleep(100 * time.Millisecond)
	tt.m.mu.Lock()
	tl := tt.m.ctrs["c1"].tailer
	tt.m.mu.Unlock()
	if tl == nil {
		t.Fatal("no tailer")
	}
	// Read by the tailer's goroutine between reads: the race detector
	// would object, so look only once the stream is idle.
	if tl.slabHeld() != 0 {
		t.Errorf("idle tailer holds a %d-byte slab", tl.slabHeld())
	}
}

// A stopped container is read when it ran after the agent started, in the
// daemon's clock: a daemon an hour behind the agent (a remote host) still
// has its short jobs read, and one an hour ahead does not have its old
// containers shipped.
func TestStoppedContainerIsJudgedByTheDaemonClock(t *testing.T) {
	for _, tc := range []struct {
		name     string
		skew     time.Duration // daemon clock − agent clock
		finished time.Duration // before the daemon's now
		read     bool
	}{
		{"daemon behind, job after the start", -time.Hour, -time.Second, true},
		{"daemon ahead, container before the start", time.Hour, 10 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDocker("exited")
			daemonNow := time.Now().Add(tc.skew)
			f.startedAt = daemonNow.Add(-tc.finished - time.Second)
			f.lines = []fakeLine{{t: f.startedAt, body: "job\n"}}
			tt := startTail(t, f, t.TempDir())
			time.Sleep(10 * time.Millisecond) // the job ends after the agent started
			tt.m.Connected(Daemon{Version: "20.10.24", APIVersion: "1.41", Now: time.Now().Add(tc.skew)})
			tt.m.Observe(Container{Meta: pipeline.ContainerMeta{ID: "c1", Name: "c1"}, LogDriver: "json-file",
				StartedAt: f.startedAt, FinishedAt: daemonNow.Add(-tc.finished).Add(10 * time.Millisecond)}, false)
			got := tt.waitLines(t, 1, time.Second)
			if (len(got) == 1) != tc.read {
				t.Errorf("read %q, want read=%v", got, tc.read)
			}
		})
	}
}

// A job that ran and exited while an agent watched, but before its tailer
// began (so it has no position), is read on the next start even though
// another container's position was saved after it exited.
func TestJobExitedBeforeItsTailerBeganIsReadAfterRestart(t *testing.T) {
	dir := t.TempDir()
	tt := startTail(t, newFakeDocker("running"), dir)
	if err := tt.cps.Save(); err != nil {
		t.Fatal(err)
	}
	f := newFakeDocker("exited")
	f.startedAt = time.Now()
	f.lines = []fakeLine{{t: f.startedAt.Add(time.Millisecond), body: "job\n"}}
	finished := f.startedAt.Add(10 * time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if err := tt.cps.Begin("another", 0); err != nil { // saved at once
		t.Fatal(err)
	}
	tt.stop() // SIGKILL: the job was never observed

	tt2 := startTail(t, f, dir)
	tt2.m.Observe(Container{Meta: pipeline.ContainerMeta{ID: "c1", Name: "c1"}, LogDriver: "json-file",
		StartedAt: f.startedAt, FinishedAt: finished}, false)
	if got := tt2.waitLines(t, 1, 5*time.Second); len(got) != 1 || got[0] != "job" {
		t.Fatalf("the next agent run read %q, want the job's line", got)
	}
}
