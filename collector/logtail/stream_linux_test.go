package logtail

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockscope/dockscope/collector/logparse"
	"github.com/dockscope/dockscope/pipeline"
)

// fakeLogDaemon serves one connection at a time on a unix socket: it reads
// a request, records it, and hands the connection to serve.
type fakeLogDaemon struct {
	sock string
	ln   net.Listener
	wg   sync.WaitGroup

	mu       sync.Mutex
	requests []*http.Request
}

func startFakeLogDaemon(t testing.TB, serve func(c net.Conn, req *http.Request)) *fakeLogDaemon {
	t.Helper()
	d := &fakeLogDaemon{sock: filepath.Join(t.TempDir(), "docker.sock")}
	ln, err := net.Listen("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	d.ln = ln
	d.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.wg.Go(func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				d.mu.Lock()
				d.requests = append(d.requests, req)
				d.mu.Unlock()
				serve(c, req)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		d.wg.Wait()
	})
	return d
}

const chunkedHeader = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

// writeChunk writes one chunk holding one frame, as dockerd does per
// log message.
func writeChunk(w io.Writer, stream byte, payload string) error {
	fr := make([]byte, 8, 8+len(payload))
	fr[0] = stream
	fr[4], fr[5], fr[6], fr[7] = byte(len(payload)>>24), byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	fr = append(fr, payload...)
	_, err := fmt.Fprintf(w, "%x\r\n%s\r\n", len(fr), fr)
	return err
}

func tsLine(i int) string {
	return time.Unix(1_800_000_000, int64(i)).UTC().Format("2006-01-02T15:04:05.000000000Z") + fmt.Sprintf(" line %d\n", i)
}

func openTestLogs(t *testing.T, ctx context.Context, sock string) io.ReadCloser {
	t.Helper()
	s, err := dialUnixStream(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	body, err := startLogs(s, "1.41", "abc", "1800000000.000000005", true)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	return body
}

func TestUnixLogStreamReadsEveryLine(t *testing.T) {
	const lines = 5000
	d := startFakeLogDaemon(t, func(c net.Conn, _ *http.Request) {
		io.WriteString(c, chunkedHeader)
		for i := range lines {
			stream := byte(1)
			if i%7 == 0 {
				stream = 2
			}
			if writeChunk(c, stream, tsLine(i)) != nil {
				return
			}
			if i%500 == 0 {
				time.Sleep(5 * time.Millisecond) // idle gaps: trickle, then flow again
			}
		}
		io.WriteString(c, "0\r\n\r\n")
	})
	body := openTestLogs(t, context.Background(), d.sock)
	defer body.Close()
	r := logparse.NewReader(body, false, 0)
	for i := range lines {
		l, err := r.Next()
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		want := pipeline.Stdout
		if i%7 == 0 {
			want = pipeline.Stderr
		}
		if got := fmt.Sprintf("line %d", i); string(l.Body) != got || l.Stream != want {
			t.Fatalf("line %d = %q on %v, want %q on %v", i, l.Body, l.Stream, got, want)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last line: %v, want EOF", err)
	}
	req := d.requests[0]
	q := req.URL.Query()
	if req.Method != http.MethodGet || req.URL.Path != "/v1.41/containers/abc/logs" || q.Get("follow") != "1" ||
		q.Get("stdout") != "1" || q.Get("stderr") != "1" || q.Get("timestamps") != "1" || q.Get("since") != "1800000000.000000005" {
		t.Errorf("request %s %s", req.Method, req.URL)
	}
}

func TestUnixLogStreamDaemonErrors(t *testing.T) {
	for _, tc := range []struct{ status, body, want string }{
		{"404 Not Found", `{"message":"No such container: abc"}`, "No such container: abc"},
		{"501 Not Implemented", `{"message":"configured logging driver does not support reading"}`, "does not support reading"},
		{"502 Bad Gateway", "proxy says no", "proxy says no"},
	} {
		d := startFakeLogDaemon(t, func(c net.Conn, _ *http.Request) {
			fmt.Fprintf(c, "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", tc.status, len(tc.body), tc.body)
		})
		s, err := dialUnixStream(context.Background(), d.sock)
		if err != nil {
			t.Fatal(err)
		}
		_, err = startLogs(s, "", "abc", "", true)
		s.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.status) {
			t.Errorf("%s: error %v, want one naming %q", tc.status, err, tc.want)
		}
	}
}

// A stream cut inside a message is an error, never a clean end: the
// tailer must reopen it from the checkpoint rather than take the
// container for stopped.
func TestUnixLogStreamCutIsAnError(t *testing.T) {
	d := startFakeLogDaemon(t, func(c net.Conn, _ *http.Request) {
		io.WriteString(c, chunkedHeader)
		writeChunk(c, 1, tsLine(0))
		io.WriteString(c, "40\r\n\x01\x00\x00\x00") // cut
	})
	body := openTestLogs(t, context.Background(), d.sock)
	defer body.Close()
	r := logparse.NewReader(body, false, 0)
	if l, err := r.Next(); err != nil || string(l.Body) != "line 0" {
		t.Fatalf("first line %q, %v", l.Body, err)
	}
	if _, err := r.Next(); err == nil || err == io.EOF || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut stream: %v, want an unexpected EOF", err)
	}
}

// An idle stream waits in Go's poller, and its context ends the wait.
func TestUnixLogStreamCancelWhileIdle(t *testing.T) {
	release := make(chan struct{})
	d := startFakeLogDaemon(t, func(c net.Conn, _ *http.Request) {
		io.WriteString(c, chunkedHeader)
		writeChunk(c, 1, tsLine(0))
		<-release
	})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	body := openTestLogs(t, ctx, d.sock)
	defer body.Close()
	r := logparse.NewReader(body, false, 0)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Next()
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Next returned %v on an idle stream", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not end the wait")
	}
}

// sizingReader notes the buffer size of the read that reaches the socket.
type sizingReader struct {
	r    io.Reader
	size atomic.Int64 // len(p) of the latest read
}

func (s *sizingReader) Read(p []byte) (int, error) {
	s.size.Store(int64(len(p)))
	return s.r.Read(p)
}

// A stream that goes quiet after a burst is waited on with a small buffer:
// the read into the line reader's 64 KiB buffer hands it back after
// idleAfter, so that an idle followed container does not hold it.
func TestUnixLogStreamQuietStreamWaitsWithSmallBuffer(t *testing.T) {
	const burst = 5000
	release := make(chan struct{})
	d := startFakeLogDaemon(t, func(c net.Conn, _ *http.Request) {
		io.WriteString(c, chunkedHeader)
		bw := bufio.NewWriter(c)
		for i := range burst {
			writeChunk(bw, 1, tsLine(i))
		}
		bw.Flush()
		<-release
	})
	defer close(release)
	s, err := dialUnixStream(context.Background(), d.sock)
	if err != nil {
		t.Fatal(err)
	}
	sized := &sizingReader{r: s}
	body, err := startLogs(readWriteCloser{sized, s}, "", "abc", "", true)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	defer body.Close()
	r := logparse.NewReader(body, false, 0)
	for i := range burst {
		if _, err := r.Next(); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Next()
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for sized.size.Load() > logparse.IdleReadBytes && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := sized.size.Load(); n > logparse.IdleReadBytes {
		t.Fatalf("a quiet stream waits with a %d-byte buffer, want ≤ %d", n, logparse.IdleReadBytes)
	}
	select {
	case err := <-done:
		t.Fatalf("Next returned %v on a quiet stream", err)
	case <-time.After(3 * idleAfter):
	}
	body.Close() // ends the wait
	<-done
}

// countingReader counts the reads that reach the socket.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// A stream that flows is read on a schedule, many messages per read; one
// that trickles is read as each message comes, without waiting for the
// schedule.
func TestUnixLogStreamPacing(t *testing.T) {
	const burst = 20000
	lineAt := make(chan time.Time, 10)
	d := startFakeLogDaemon(t, func(c net.Conn, _ *http.Request) {
		io.WriteString(c, chunkedHeader)
		bw := bufio.NewWriterSize(c, 256)
		for i := range burst {
			writeChunk(bw, 1, tsLine(i)) // about one write per message
		}
		bw.Flush()
		for i := range 5 {
			time.Sleep(20 * time.Millisecond)
			lineAt <- time.Now()
			writeChunk(c, 1, tsLine(burst+i))
		}
		io.WriteString(c, "0\r\n\r\n")
	})
	s, err := dialUnixStream(context.Background(), d.sock)
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingReader{r: s}
	body, err := startLogs(readWriteCloser{counted, s}, "", "abc", "", true)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	defer body.Close()
	r := logparse.NewReader(body, false, 0)
	for i := range burst {
		if _, err := r.Next(); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
	}
	t.Logf("%d reads for %d messages", counted.reads, burst)
	if counted.reads > burst/20 {
		t.Errorf("%d reads for a burst of %d messages: not paced", counted.reads, burst)
	}
	for i := range 5 {
		if _, err := r.Next(); err != nil {
			t.Fatalf("trickled line %d: %v", i, err)
		}
		// Generous for a loaded machine; pacing would not add more than
		// paceMax, a missed wake-up would hang.
		if lag := time.Since(<-lineAt); lag > time.Second {
			t.Errorf("trickled line %d read %v after it was written", i, lag)
		}
	}
}

type readWriteCloser struct {
	io.Reader
	io.WriteCloser
}

// benchLogStream is a chunked multiplexed stream of n 70-byte lines, one
// chunk per line as dockerd writes it, every 10th on stderr.
func benchLogStream(n int) []byte {
	var b bytes.Buffer
	b.WriteString(chunkedHeader)
	for i := range n {
		stream := byte(1)
		if i%10 == 9 {
			stream = 2
		}
		line := tsLine(i)
		line = line[:len(line)-1] + strings.Repeat("x", max(0, 71-(len(line)-31))) + "\n"
		writeChunk(&b, stream, line)
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

// BenchmarkFollow is the tailer's own cost per line, from the socket to
// the queue: the daemon writes the stream in large blocks (its per-message
// writes are the kernel's cost, not measured here) and a goroutine drains
// the queue as the exporter would. One op is one line.
func BenchmarkFollow(b *testing.B) {
	const lines = 200000
	stream := benchLogStream(lines)
	d := startFakeLogDaemon(b, func(c net.Conn, _ *http.Request) {
		c.Write(stream)
	})
	store := pipeline.NewStore()
	tel := pipeline.NewTelemetry()
	q := pipeline.NewLogQueue(64<<20, pipeline.Block, tel.Stage(pipeline.StageLogs))
	m := New(Options{Queue: q, Telemetry: tel, Counters: store.LogCounters, Socket: d.sock})
	ctx, cancel := context.WithCancel(context.Background())
	var drained sync.WaitGroup
	drained.Go(func() {
		var batch []pipeline.LogRecord
		for ctx.Err() == nil {
			batch = q.PopBatch(ctx, batch, 8192, 4<<20, 0)
			clear(batch)
		}
	})
	b.ReportAllocs()
	for b.Loop() {
		t := &tailer{m: m, id: "abc", log: m.log, read: &pipeline.LogCursor{}, warn: &warnings{}, done: make(chan struct{})}
		t.onDrop = func(i int) { t.dropped = append(t.dropped, i) }
		t.meta.Store(&pipeline.ContainerMeta{ID: "abc"})
		if _, err := t.follow(ctx, "", true, nil, t.read, false, false); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	for q.Len() > 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	drained.Wait()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}

func TestNextPace(t *testing.T) {
	for _, tc := range []struct {
		n    int
		gap  time.Duration
		want time.Duration
	}{
		{paceBytes, time.Millisecond, time.Millisecond},                         // on target
		{paceBytes / 2, time.Millisecond, 2 * time.Millisecond},                 // half the rate: twice the interval
		{paceBytes / 3, 2 * time.Millisecond, paceMax},                          // slow: capped
		{paceBytes * 3 / 2, 2 * time.Millisecond, 2 * time.Millisecond * 2 / 3}, // faster
		{paceBytes * 3 / 2, time.Millisecond, paceMin},                          // fast: floored
		{2 * paceBytes, 4 * time.Millisecond, paceMin},                          // the socket may have been full
		{1, time.Second, paceMax},
	} {
		if got := nextPace(tc.n, tc.gap); got != tc.want {
			t.Errorf("nextPace(%d, %v) = %v, want %v", tc.n, tc.gap, got, tc.want)
		}
	}
}

func TestPacerSleeps(t *testing.T) {
	p, err := newPacer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for _, d := range []time.Duration{300 * time.Microsecond, 2 * time.Millisecond, time.Microsecond} {
		t0 := time.Now()
		if err := p.sleep(d); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(t0); took < d || took > d+time.Second {
			t.Errorf("sleep(%v) took %v", d, took)
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

// Streams that flow (timer descriptor), wait (epoll set), fail or are
// cancelled give every descriptor back when closed.
func TestUnixLogStreamReleasesDescriptors(t *testing.T) {
	d := startFakeLogDaemon(t, func(c net.Conn, req *http.Request) {
		if req.URL.Query().Get("since") == "404" {
			io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
			return
		}
		io.WriteString(c, chunkedHeader)
		bw := bufio.NewWriter(c)
		for i := range 3000 {
			writeChunk(bw, 1, tsLine(i))
		}
		bw.Flush()
		time.Sleep(5 * time.Millisecond)
		writeChunk(c, 1, tsLine(3000))
		io.WriteString(c, "0\r\n\r\n")
	})
	before := openFDs(t)
	for i := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		s, err := dialUnixStream(ctx, d.sock)
		if err != nil {
			t.Fatal(err)
		}
		since := ""
		if i%4 == 3 {
			since = "404"
		}
		body, err := startLogs(s, "", "abc", since, true)
		if err != nil {
			s.Close()
			cancel()
			continue
		}
		if i%4 == 2 {
			cancel() // mid-stream
		}
		io.Copy(io.Discard, body)
		body.Close()
		cancel()
	}
	// The fake daemon's side may take a moment to close.
	for end := time.Now().Add(5 * time.Second); openFDs(t) > before && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after the streams were closed, %d before", after, before)
	}
}
