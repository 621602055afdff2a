package logparse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/dockscope/dockscope/pipeline"
)

// workloadLine is what `workload log -line-bytes n` prints as line i.
func workloadLine(i, n int) string {
	s := fmt.Sprintf("line %d ", i)
	return s + xs(n-len(s))
}

// Streams recorded from Engine 20.10 (API 1.41) with
// GET /containers/{id}/logs?stdout=1&stderr=1&timestamps=1, running
// dockscope-workload:test log -lines N -line-bytes B [-stderr-every K] [-t].
func TestReaderRecordedStreams(t *testing.T) {
	type want struct {
		stream pipeline.Stream
		ts     string
		body   string
	}
	cases := []struct {
		file   string
		tty    bool
		want   []want
		pieces uint64
	}{
		{
			// -lines 4 -line-bytes 40000 -stderr-every 2: 12 frames.
			file: "mux-40000-stderr.bin.gz",
			want: []want{
				{se, "2026-11-23T10:10:40.245885645Z", workloadLine(2, 40000)},
				{so, "2026-11-23T10:10:40.246425472Z", workloadLine(1, 40000)},
				{so, "2026-11-23T10:10:40.246780064Z", workloadLine(3, 40000)},
				{se, "2026-11-23T10:10:40.247304614Z", workloadLine(4, 40000)},
			},
			pieces: 12,
		},
		{
			// -lines 1 -line-bytes 16384: a full piece, then "<ts> \n".
			file:   "mux-16384.bin.gz",
			want:   []want{{so, "2026-11-23T10:10:38.341827408Z", workloadLine(1, 16384)}},
			pieces: 2,
		},
		{
			// follow=1, -lines 6 -line-bytes 20000 -stderr-every 2 -rate 20.
			file: "mux-follow-20000.bin.gz",
			want: []want{
				{so, "2026-11-23T10:13:23.738910016Z", workloadLine(1, 20000)},
				{se, "2026-11-23T10:13:23.788737227Z", workloadLine(2, 20000)},
				{so, "2026-11-23T10:13:23.839441043Z", workloadLine(3, 20000)},
				{se, "2026-11-23T10:13:23.888847584Z", workloadLine(4, 20000)},
				{so, "2026-11-23T10:13:23.939265536Z", workloadLine(5, 20000)},
				{se, "2026-11-23T10:13:23.999467324Z", workloadLine(6, 20000)},
			},
			pieces: 12,
		},
		{
			// -t -lines 2 -line-bytes 40000.
			file: "tty-40000.bin.gz", tty: true,
			want: []want{
				{so, "2026-11-23T10:10:40.688256429Z", workloadLine(1, 40000)},
				{so, "2026-11-23T10:10:40.690514163Z", workloadLine(2, 40000)},
			},
			pieces: 6,
		},
		{
			// -t -lines 2 -line-bytes 16383: the "\r" ends the first
			// piece, the "\n" is alone in the second.
			file: "tty-16383.bin.gz", tty: true,
			want: []want{
				{so, "2026-11-23T10:10:41.575273791Z", workloadLine(1, 16383)},
				{so, "2026-11-23T10:10:41.576185275Z", workloadLine(2, 16383)},
			},
			pieces: 4,
		},
		{
			file: "tty-16384.bin.gz", tty: true,
			want: []want{
				{so, "2026-11-23T10:10:41.171272962Z", workloadLine(1, 16384)},
				{so, "2026-11-23T10:10:41.171429266Z", workloadLine(2, 16384)},
			},
			pieces: 4,
		},
		{
			// -t -lines 3 -line-bytes 20 -stderr-every 2: a TTY has no
			// stderr.
			file: "tty-short.bin.gz", tty: true,
			want: []want{
				{so, "2026-11-23T10:10:42.360084359Z", workloadLine(1, 20)},
				{so, "2026-11-23T10:10:42.360137540Z", workloadLine(2, 20)},
				{so, "2026-11-23T10:10:42.360140339Z", workloadLine(3, 20)},
			},
			pieces: 3,
		},
	}
	for _, c := range cases {
		data := loadTestdata(t, c.file)
		for _, rd := range readers {
			t.Run(c.file+"/"+rd.name, func(t *testing.T) {
				r := NewReader(rd.wrap(data), c.tty, 0)
				got, err := readLines(t, r)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(c.want) {
					t.Fatalf("%d lines %v, want %d", len(got), got, len(c.want))
				}
				var bytesTotal uint64
				for i, g := range got {
					w := c.want[i]
					if g.Stream != w.stream || g.Time != mustTime(t, w.ts) || g.Body != w.body || g.Truncated || g.Unterminated {
						t.Errorf("line %d = %v, want %v %s %d bytes", i, g, w.stream, w.ts, len(w.body))
					}
					bytesTotal += uint64(len(w.body))
				}
				wantStats := Stats{Pieces: c.pieces, Lines: uint64(len(c.want)), Bytes: bytesTotal}
				if r.Stats() != wantStats {
					t.Errorf("stats %+v, want %+v", r.Stats(), wantStats)
				}
			})
		}
	}
}

func TestReaderRecordedTruncated(t *testing.T) {
	r := NewReader(bytes.NewReader(loadTestdata(t, "mux-40000-stderr.bin.gz")), false, 20000)
	got, err := readLines(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("%d lines, want 4 (no record from the discarded rest)", len(got))
	}
	for i, g := range got {
		if len(g.Body) != 20000 || !g.Truncated || !strings.HasPrefix(g.Body, "line ") {
			t.Errorf("line %d = %v, want 20000 bytes, truncated", i, g)
		}
	}
	if s := r.Stats(); s.Truncated != 4 || s.DroppedBytes != 4*20000 {
		t.Errorf("stats %+v", s)
	}
}

// A stream cut inside a frame is an error, and the partial line is not
// returned: the stream reopened from the checkpoint reads it again whole.
func TestReaderEOFMidFrame(t *testing.T) {
	data := loadTestdata(t, "mux-40000-stderr.bin.gz")
	// Cut inside the second line's second frame.
	cut := 3*8 + 16415*2 + 7264 + 8 + 16415 + 8 + 100
	for _, rd := range readers {
		t.Run(rd.name, func(t *testing.T) {
			r := NewReader(rd.wrap(data[:cut]), false, 0)
			got, err := readLines(t, r)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
			}
			if len(got) != 1 || got[0].Body != workloadLine(2, 40000) {
				t.Fatalf("lines %v, want only the first", got)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Fatalf("next call: %v, want the same error", err2)
			}
			// Reopened, it starts clean.
			r.Reset(bytes.NewReader(data))
			got, err = readLines(t, r)
			if err != nil || len(got) != 4 {
				t.Fatalf("after Reset: %d lines, err %v", len(got), err)
			}
		})
	}
}

// A stream that ends cleanly in the middle of a line (a TTY stream has no
// frames to be cut inside) yields what it has, not truncated.
func TestReaderEOFMidLine(t *testing.T) {
	ts := tsPrefix(tsAt(0))
	tty := ts + "a\r\n" + ts + xs(16384) + ts + "tail"
	got, err := readLines(t, NewReader(strings.NewReader(tty), true, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := []gotLine{out(so, 0, "a"), {Stream: so, Time: tsAt(0), Body: xs(16384) + "tail", Unterminated: true}}
	if !equalLines(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}

	var mux []byte
	mux = append(mux, frame(2, piece(1, "err partial"))...)
	mux = append(mux, frame(1, piece(2, "out\n"))...)
	got, err = readLines(t, NewReader(bytes.NewReader(mux), false, 0))
	if err != nil {
		t.Fatal(err)
	}
	want = []gotLine{out(so, 2, "out"), {Stream: se, Time: tsAt(1), Body: "err partial", Unterminated: true}}
	if !equalLines(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestReaderEngineError(t *testing.T) {
	var mux []byte
	mux = append(mux, frame(1, piece(0, "a"))...)
	mux = append(mux, frame(3, []byte("Error grabbing logs: boom\n"))...)
	mux = append(mux, frame(1, piece(0, "b\n"))...)
	got, err := readLines(t, NewReader(bytes.NewReader(mux), false, 0))
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's message does not break the line it fell into.
	want := []gotLine{{Body: "Error grabbing logs: boom"}, out(so, 0, "ab")}
	if !equalLines(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}

	tty := tsPrefix(tsAt(0)) + "a\r\nError grabbing logs: boom\n" + tsPrefix(tsAt(1)) + "b\r\n"
	got, err = readLines(t, NewReader(strings.NewReader(tty), true, 0))
	if err != nil {
		t.Fatal(err)
	}
	want = []gotLine{out(so, 0, "a"), {Body: "Error grabbing logs: boom"}, out(so, 1, "b")}
	if !equalLines(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestReaderNoAllocs(t *testing.T) {
	for _, tty := range []bool{false, true} {
		data := benchStream(tty, 1000, 70)
		br := bytes.NewReader(data)
		r := NewReader(br, tty, 0)
		n := testing.AllocsPerRun(5000, func() {
			if _, err := r.Next(); err == io.EOF {
				br.Reset(data)
				r.Reset(br)
			} else if err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("tty=%v: allocs per line = %v, want 0", tty, n)
		}
	}
}
