package logtail

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// newFakePodman is a fake daemon answering as Podman 4.3 (see fakeDocker.podman).
func newFakePodman(status string) *fakeDocker {
	f := newFakeDocker(status)
	f.podman = true
	return f
}

// podmanConnected tells the manager it talks to Podman, as the collector's
// runtime detection does.
func podmanConnected(tt *testTail) {
	tt.m.Connected(Daemon{Version: "4.3.1", APIVersion: "1.41", Podman: true, Now: time.Now()})
}

// addLines appends n numbered lines from line first on, stamped step apart
// from at, every third on stderr.
func addLines(f *fakeDocker, first, n int, at time.Time, step time.Duration) []string {
	var want []string
	f.set(func(f *fakeDocker) {
		for i := first; i < first+n; i++ {
			var stream byte = 1
			if i%3 == 0 {
				stream = 2
			}
			body := fmt.Sprintf("line %d", i)
			f.lines = append(f.lines, fakeLine{t: at.Add(time.Duration(i-first) * step), stream: stream, body: body + "\n"})
			want = append(want, body)
		}
	})
	return want
}

// waitExactly waits for want and then checks that nothing else arrives.
func waitExactly(t *testing.T, tt *testTail, want []string) {
	t.Helper()
	tt.waitLines(t, len(want), 10*time.Second)
	time.Sleep(200 * time.Millisecond) // a duplicate, if any, arrives now
	got := tt.lines()
	if !slices.Equal(got, want) {
		t.Fatalf("got %d lines, want %d (%s … %s); first got %q, last got %q",
			len(got), len(want), want[0], want[len(want)-1], head(got, 2), got[max(0, len(got)-2):])
	}
	if n := tt.tel.LogResumeMismatches.Load(); n != 0 {
		t.Errorf("%d resume mismatches, want none", n)
	}
}

// Podman's follow stream of a stopped container is incomplete; its plain
// read is not: a stopped container is read without follow.
func TestPodmanStoppedContainerIsReadWithoutFollow(t *testing.T) {
	f := newFakePodman("exited")
	want := addLines(f, 1, 10000, f.startedAt.Add(time.Second), 100*time.Microsecond)
	tt := startTail(t, f, t.TempDir())
	podmanConnected(tt)
	tt.observe(f, false)
	waitExactly(t, tt, want)
	if n := f.follows.Load(); n != 0 {
		t.Errorf("%d follow requests for a stopped container on Podman, want none", n)
	}
}

// A container that exits while followed: Podman ends the stream without
// the lines written last. A plain read from the last record read brings
// them, each once.
func TestPodmanContainerExitingWhileFollowedLosesNothing(t *testing.T) {
	f := newFakePodman("running")
	// 10 lines in the last second, then 9,990 more in the same second
	// and the next: the resume starts inside a second already read.
	at := time.Now().Truncate(time.Second).Add(-time.Second)
	want := addLines(f, 1, 10, at, 10*time.Millisecond)
	tt := startTail(t, f, t.TempDir())
	podmanConnected(tt)
	tt.observe(f, true)
	tt.waitLines(t, 10, 5*time.Second)
	// Written after the stream opened: this fake's open stream does not
	// carry them, as Podman's lost them when the container exited.
	want = append(want, addLines(f, 11, 9990, at.Add(200*time.Millisecond), 150*time.Microsecond)...)
	f.set(func(f *fakeDocker) { f.status = "exited" })
	f.endStreams()
	waitExactly(t, tt, want)
	if tailing, done := tt.m.Following("c1"); tailing || !done {
		t.Errorf("tailing %v, done %v after the container's log was read to its end", tailing, done)
	}
}

// More lines within one second than a cursor's window holds
// (MaxResumeWindow): Podman returns every line of the second `since`
// names, also those before the window; the resume finds the window's
// first record instead of counting from the second's start.
func TestPodmanResumeAfterRestartWithAFullWindowInOneSecond(t *testing.T) {
	for _, stopped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stopped=%v", stopped), func(t *testing.T) {
			dir := t.TempDir()
			f := newFakePodman("running")
			at := time.Now().Truncate(time.Second).Add(-time.Second)
			n := pipeline.MaxResumeWindow + 8000
			want := addLines(f, 1, n, at, 10*time.Microsecond)
			open := func() *testTail {
				cps, err := pipeline.OpenCheckpointer(dir)
				if cps == nil {
					t.Fatal(err)
				}
				tt := startTailOn(t, f, cps, true)
				podmanConnected(tt)
				return tt
			}
			tt := open()
			tt.observe(f, true)
			waitExactly(t, tt, want)
			tt.stop() // as a SIGKILL: the positions were saved on every ack

			// Later lines of the same second, then the agent again.
			want = addLines(f, n+1, 10, at.Add(time.Duration(n)*10*time.Microsecond), time.Microsecond)
			if stopped {
				f.set(func(f *fakeDocker) { f.status = "exited" })
			}
			tt = open()
			tt.observe(f, false)
			waitExactly(t, tt, want)
		})
	}
}

// The `since` rules come from the runtime, not from a version number:
// Podman 5 is not Docker ≥ 24.
func TestSinceRulesFromTheRuntime(t *testing.T) {
	for _, tc := range []struct {
		d    Daemon
		want SinceRules
	}{
		{Daemon{Version: "20.10.24"}, EachLine},
		{Daemon{Version: "28.5.2"}, UntilFirst},
		{Daemon{Version: "4.3.1", Podman: true}, Ordered},
		{Daemon{Version: "24.0.0", Podman: true}, Ordered},
	} {
		m := New(Options{})
		m.Connected(tc.d)
		if got := m.sinceRules(); got != tc.want {
			t.Errorf("%+v: rules %d, want %d", tc.d, got, tc.want)
		}
	}
}

// Podman's follow stream skipped a stretch of lines and delivered a few
// later ones before it ended: the final plain read, matched record by
// record against what was read, ships the stretch and repeats nothing.
func TestPodmanLinesSkippedByTheFollowStreamAreRecovered(t *testing.T) {
	f := newFakePodman("running")
	at := time.Now().Truncate(time.Second).Add(-2 * time.Second)
	// Lines in the same whole seconds, some identical: matched by print
	// and by how often each was read.
	want := addLines(f, 1, 3000, at, 500*time.Microsecond)
	f.set(func(f *fakeDocker) {
		for range 3 {
			f.lines = append(f.lines, fakeLine{t: at.Add(1600 * time.Millisecond), stream: 1, body: "same\n"})
			want = append(want, "same")
		}
		f.followHole = [2]int{2950, 3001} // line 2951 … 3000 and one "same"
	})
	tt := startTail(t, f, t.TempDir())
	podmanConnected(tt)
	tt.observe(f, true)
	tt.waitLines(t, 3003-51, 5*time.Second)
	f.set(func(f *fakeDocker) { f.status = "exited" })
	f.endStreams()
	tt.waitLines(t, len(want), 10*time.Second)
	time.Sleep(200 * time.Millisecond) // a duplicate, if any, arrives now
	got := tt.lines()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	// Counted up to the last record read: the third "same" comes after it.
	if !strings.Contains(tt.logs.String(), "lines=50") {
		t.Errorf("the recovered lines were not logged:\n%s", tt.logs.String())
	}
}

// On Podman the tailer ends the follow stream itself once an inspect shows
// the container stopped, rather than reading on into what Podman sends
// after it noticed the exit; the rest comes from a plain read.
func TestPodmanFollowStreamEndedWhenTheContainerStops(t *testing.T) {
	f := newFakePodman("running")
	at := time.Now().Add(-time.Second)
	want := addLines(f, 1, 100, at, time.Millisecond)
	tt := startTail(t, f, t.TempDir())
	podmanConnected(tt)
	tt.observe(f, true)
	tt.waitLines(t, 100, 5*time.Second)
	want = append(want, addLines(f, 101, 100, at.Add(200*time.Millisecond), time.Millisecond)...)
	f.set(func(f *fakeDocker) { f.status = "exited" })
	tt.observe(f, false) // the die event's inspect; this fake's stream stays open
	waitExactly(t, tt, want)
	if tailing, done := tt.m.Following("c1"); tailing || !done {
		t.Errorf("tailing %v, done %v after the container's log was read to its end", tailing, done)
	}
}
