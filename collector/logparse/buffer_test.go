package logparse

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// burstThenIdle returns its chunks, one per read as a socket would, then
// notes how large a buffer the reader waits with and ends the stream. If
// decline, it first answers a read into a large buffer with 0, nil, as
// the agent's unix socket stream does (IdleReadBytes).
type burstThenIdle struct {
	chunks   [][]byte
	decline  bool
	declined bool
	waitBuf  int           // len(p) of the read that waits after the burst
	quiet    time.Duration // the wait before the last chunk
}

func (r *burstThenIdle) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		if r.decline && !r.declined && len(p) > IdleReadBytes {
			r.declined = true
			return 0, nil
		}
		if r.waitBuf == 0 {
			r.waitBuf = len(p)
		}
		return 0, io.EOF
	}
	if len(r.chunks) == 1 {
		time.Sleep(r.quiet)
	}
	n := copy(p, r.chunks[0])
	if r.chunks[0] = r.chunks[0][n:]; len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

// idleBursts are what a followed container sends before it goes quiet.
func idleBursts(tty bool) map[string][][]byte {
	stream := func(lines ...string) []byte {
		var b []byte
		for i, l := range lines {
			for _, p := range dockerPieces(tsAt(i), l) {
				if tty {
					b = append(b, p...)
				} else {
					b = append(b, frame(1, p)...)
				}
			}
		}
		return b
	}
	many := make([]string, 20000)
	for i := range many {
		many[i] = xs(69)
	}
	return map[string][][]byte{
		"one short line":     {stream("hello")},
		"a 40,000-byte line": {stream(xs(40000))},
		"1.5 MB at once":     {stream(many...)},
		"1.5 MB in 3 reads":  bytes.SplitAfterN(stream(many...), []byte("\n"), 3),
	}
}

// quietAgain is a burst and then, after a while, one short line in a read
// of its own.
func quietAgain(tty bool) [][]byte {
	chunks := idleBursts(tty)["1.5 MB in 3 reads"]
	line := dockerPieces(tsAt(0), "back")[0]
	if !tty {
		line = frame(2, line)
	}
	return append(chunks, line)
}

// An idle followed container costs its read buffers: after any burst, the
// reader waits for more with its small buffer and holds no 64 KiB one (it
// went back to the pool for the streams that are busy). A source that
// cannot decline a read gets there with the first short line after it.
func TestIdleStreamWaitsWithSmallBuffer(t *testing.T) {
	for _, tty := range []bool{false, true} {
		cases := map[string]*burstThenIdle{"a source that cannot decline, a short line after a burst": {chunks: quietAgain(tty), quiet: quietRead + 10*time.Millisecond}}
		for name, chunks := range idleBursts(tty) {
			cases[name] = &burstThenIdle{chunks: chunks, decline: true}
		}
		for name, src := range cases {
			var pr PieceReader
			var held func() bool
			if tty {
				s := NewTTYSplitter(src)
				pr, held = s, func() bool { return s.r.big != nil || s.buf != nil }
			} else {
				d := NewDemuxer(src)
				pr, held = d, func() bool { return d.b.big != nil }
			}
			pieces := 0
			for {
				_, _, err := pr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("tty=%v %s: %v", tty, name, err)
				}
				pieces++
			}
			if pieces == 0 {
				t.Fatalf("tty=%v %s: no piece read", tty, name)
			}
			if src.waitBuf == 0 || src.waitBuf > idleBufferSize {
				t.Errorf("tty=%v %s: waits for more with a %d-byte buffer, want ≤ %d", tty, name, src.waitBuf, idleBufferSize)
			}
			if held() {
				t.Errorf("tty=%v %s: still holds a pooled buffer while idle", tty, name)
			}
		}
	}
}

type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// A busy stream is read 64 KiB at a time, not through the idle buffer,
// also through a chunked body, which is decoded in place (each read
// returns less than it was given).
func TestBusyStreamReadsInLargeBuffers(t *testing.T) {
	for _, tc := range []struct {
		tty, chunked bool
	}{{false, false}, {true, false}, {false, true}, {true, true}} {
		tty := tc.tty
		data := benchStream(tty, 50000, 70)
		src := &countingReader{r: bytes.NewReader(data)}
		var body io.Reader = src
		if tc.chunked {
			var chunks [][]byte
			for rest := data; len(rest) > 0; rest = rest[min(len(rest), 101):] {
				chunks = append(chunks, rest[:min(len(rest), 101)])
			}
			data = chunked(t, chunks...)
			src.r = bytes.NewReader(data)
			body = NewChunkedReader(src, nil)
		}
		var pr PieceReader = NewDemuxer(body)
		if tty {
			pr = NewTTYSplitter(body)
		}
		for {
			if _, _, err := pr.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		// A read that waits quietRead (a descheduled test on a busy
		// machine) goes back to the idle buffer once: some slack for
		// that; reading through the idle buffer would take thousands.
		if limit := len(data)/readBufferSize*9/8 + 3; src.reads > limit {
			t.Errorf("tty=%v chunked=%v: %d reads for %d bytes, want ≤ %d", tty, tc.chunked, src.reads, len(data), limit)
		}
	}
}
