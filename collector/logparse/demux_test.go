package logparse

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/dockscope/dockscope/pipeline"
)

type testFrame struct {
	stream  pipeline.Stream
	payload string
}

func encode(frames []testFrame) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, frame(byte(f.stream), []byte(f.payload))...)
	}
	return b
}

func demuxAll(t *testing.T, r io.Reader) ([]testFrame, error) {
	t.Helper()
	d := NewDemuxer(r)
	var out []testFrame
	for {
		s, p, err := d.Next()
		if err != nil {
			return out, err
		}
		out = append(out, testFrame{s, string(p)})
	}
}

// Property: demux(encode(frames)) == frames, whatever the read sizes.
func TestDemuxRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	sizes := []int{0, 1, 7, 8, 70, 16415, readBufferSize - 1, readBufferSize, readBufferSize + 1, 200 << 10, MaxFrameBytes}
	for iter := range 60 {
		var frames []testFrame
		for range rng.IntN(20) {
			n := rng.IntN(200)
			if rng.IntN(4) == 0 {
				n = sizes[rng.IntN(len(sizes))]
			}
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(rng.UintN(256))
			}
			frames = append(frames, testFrame{pipeline.Stream(1 + rng.IntN(2)), string(p)})
		}
		data := encode(frames)
		for _, rd := range readers {
			if rd.name == "onebyte" && len(data) > 1<<20 {
				continue // slow, and covered by smaller streams
			}
			got, err := demuxAll(t, rd.wrap(data))
			if err != io.EOF {
				t.Fatalf("iter %d %s: err = %v, want io.EOF", iter, rd.name, err)
			}
			if len(got) != len(frames) {
				t.Fatalf("iter %d %s: %d frames, want %d", iter, rd.name, len(got), len(frames))
			}
			for i := range got {
				if got[i] != frames[i] {
					t.Fatalf("iter %d %s: frame %d differs (stream %v len %d, want stream %v len %d)",
						iter, rd.name, i, got[i].stream, len(got[i].payload), frames[i].stream, len(frames[i].payload))
				}
			}
		}
	}
}

// The measured shape of a 40,000-byte line: 16415, 16415 and 7264 bytes.
func TestDemuxMeasuredShape(t *testing.T) {
	data := loadTestdata(t, "mux-40000-stderr.bin.gz")
	got, err := demuxAll(t, bytes.NewReader(data))
	if err != io.EOF {
		t.Fatalf("err = %v", err)
	}
	var sizes []int
	for _, f := range got {
		sizes = append(sizes, len(f.payload))
	}
	want := []int{16415, 16415, 7264, 16415, 16415, 7264, 16415, 16415, 7264, 16415, 16415, 7264}
	if !equalInts(sizes, want) {
		t.Fatalf("frame sizes %v, want %v", sizes, want)
	}
	for i, f := range got {
		if i%3 != 0 && f.payload[:31] != got[i-i%3].payload[:31] {
			t.Errorf("frame %d: prefix %q, want the first piece's %q", i, f.payload[:31], got[i-i%3].payload[:31])
		}
		if last := i%3 == 2; strings.HasSuffix(f.payload, "\n") != last {
			t.Errorf("frame %d: ends in newline = %v, want %v", i, !last, last)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDemuxErrors(t *testing.T) {
	good := frame(1, []byte("2026-11-23T10:06:33.117135967Z hello\n"))
	cases := []struct {
		name    string
		data    []byte
		frames  int    // good frames before the error
		wantErr error  // errors.Is target
		wantMsg string // substring of the message
	}{
		{name: "empty", data: nil, wantErr: io.EOF},
		{name: "boundary", data: good, frames: 1, wantErr: io.EOF},
		{name: "eof in header", data: append(append([]byte{}, good...), 1, 0, 0), frames: 1,
			wantErr: io.ErrUnexpectedEOF, wantMsg: "frame header"},
		{name: "eof in payload", data: good[:len(good)-3], wantErr: io.ErrUnexpectedEOF, wantMsg: "payload"},
		{name: "eof after header", data: good[:8], wantErr: io.ErrUnexpectedEOF, wantMsg: "payload"},
		{name: "eof in large payload", data: frame(2, make([]byte, 200<<10))[:100<<10],
			wantErr: io.ErrUnexpectedEOF, wantMsg: "payload"},
		{name: "stdin stream", data: frame(0, []byte("x\n")), wantMsg: "frame header 0000000000000002: unknown stream 0"},
		{name: "stream 4", data: append(append([]byte{}, good...), frame(4, []byte("x\n"))...), frames: 1,
			wantMsg: "unknown stream 4"},
		{name: "stream ff", data: frame(0xff, nil), wantMsg: "unknown stream 255"},
		{name: "reserved bytes", data: []byte{1, 0, 1, 0, 0, 0, 0, 1, 'x'}, wantMsg: "reserved bytes are not zero"},
		{name: "tty stream read as multiplexed", data: []byte("2026-11-23T10:06:33.117135967Z hello\r\n"),
			wantMsg: "frame header 323032362d31312d"},
		{name: "huge length", data: []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, wantMsg: "payload length 4294967295 exceeds"},
		{name: "just over bound", data: frame(1, make([]byte, MaxFrameBytes+1)), wantMsg: "exceeds 1048640"},
	}
	for _, c := range cases {
		for _, rd := range readers {
			t.Run(c.name+"/"+rd.name, func(t *testing.T) {
				got, err := demuxAll(t, rd.wrap(c.data))
				if len(got) != c.frames {
					t.Errorf("%d frames before the error, want %d", len(got), c.frames)
				}
				if err == nil {
					t.Fatal("no error")
				}
				if c.wantErr != nil && !errors.Is(err, c.wantErr) {
					t.Errorf("err = %v, want %v", err, c.wantErr)
				}
				if c.wantErr == io.EOF && err != io.EOF {
					t.Errorf("err = %#v, want io.EOF itself", err)
				}
				if !strings.Contains(err.Error(), c.wantMsg) {
					t.Errorf("err = %q, want it to contain %q", err, c.wantMsg)
				}
			})
		}
	}
}

func TestDemuxStickyError(t *testing.T) {
	d := NewDemuxer(bytes.NewReader(append(frame(9, nil), frame(1, []byte("x\n"))...)))
	_, _, err1 := d.Next()
	_, _, err2 := d.Next()
	if err1 == nil || err2 != err1 {
		t.Fatalf("errors %v then %v, want the same error twice", err1, err2)
	}
	d.Reset(bytes.NewReader(frame(2, []byte("y\n"))))
	s, p, err := d.Next()
	if err != nil || s != pipeline.Stderr || string(p) != "y\n" {
		t.Fatalf("after Reset: %v %q %v", s, p, err)
	}
}

func TestDemuxReadError(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(frame(1, []byte("abc"))[:6]), iotest.ErrReader(boom))
	_, _, err := NewDemuxer(r).Next()
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "frame header") {
		t.Fatalf("err = %v, want the reader's error wrapped", err)
	}
	r = io.MultiReader(bytes.NewReader(frame(1, []byte("abcdef"))[:10]), iotest.ErrReader(boom))
	_, _, err = NewDemuxer(r).Next()
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "payload") {
		t.Fatalf("err = %v, want the reader's error wrapped", err)
	}
}

// A Systemerr frame is the daemon's message, not the container's; the
// stream goes on after it.
func TestDemuxSystemErr(t *testing.T) {
	var data []byte
	data = append(data, frame(1, []byte("a\n"))...)
	data = append(data, frame(3, []byte("Error grabbing logs: invalid character '\\x00' looking for beginning of value\n"))...)
	data = append(data, frame(2, []byte("b\n"))...)
	d := NewDemuxer(bytes.NewReader(data))
	if _, p, err := d.Next(); err != nil || string(p) != "a\n" {
		t.Fatalf("first: %q %v", p, err)
	}
	_, _, err := d.Next()
	var ee *EngineError
	if !errors.As(err, &ee) || ee.Msg != `Error grabbing logs: invalid character '\x00' looking for beginning of value` {
		t.Fatalf("second: err = %v, want an EngineError", err)
	}
	if s, p, err := d.Next(); err != nil || s != pipeline.Stderr || string(p) != "b\n" {
		t.Fatalf("third: %v %q %v", s, p, err)
	}
	if _, _, err := d.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestDemuxSteadyStateNoAllocs(t *testing.T) {
	data := bytes.Repeat(frame(1, piece(0, xs(69)+"\n")), 1000)
	br := bytes.NewReader(data)
	d := NewDemuxer(br)
	allocs := testing.AllocsPerRun(5000, func() {
		if _, _, err := d.Next(); err == io.EOF {
			br.Reset(data)
			d.Reset(br)
		} else if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocs per frame = %v, want 0", allocs)
	}
}
