package logparse

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// FuzzDemux feeds arbitrary bytes to the multiplexed and the TTY readers:
// no panic, no hang (every call makes progress), every body within
// maxLineBytes, and a framing error is sticky.
func FuzzDemux(f *testing.F) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	// Seeds are kept small: the fuzzer minimizes every input that finds
	// new coverage, which for a 40 KB input stalls it for minutes. The
	// recorded streams are replayed whole by the unit tests.
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".bin.gz") {
			data := loadTestdata(f, e.Name())
			f.Add(data[:min(len(data), 300)], uint16(100), strings.HasPrefix(e.Name(), "tty"))
		}
	}
	// Split lines in miniature: pieces of 10 bytes, the same timestamp.
	var mux, tty []byte
	for i, stream := range []byte{1, 2, 1} {
		for _, c := range []string{"0123456789", "abcdefghij", "end\n"} {
			mux = append(mux, frame(stream, piece(i, c))...)
			tty = append(tty, piece(i, c)...)
		}
	}
	f.Add(mux, uint16(15), false)
	f.Add(tty, uint16(15), true)
	f.Add(frame(1, piece(0, "a\n")), uint16(1), false)
	f.Add(append(frame(2, piece(0, "a")), frame(3, []byte("Error grabbing logs: x\n"))...), uint16(3), false)
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, uint16(10), false)
	f.Add([]byte(tsPrefix(tsAt(0))+"\x00\x1b\r\xff\r\n"), uint16(2), true)
	f.Fuzz(checkDemux)
}

func checkDemux(t *testing.T, data []byte, max uint16, tty bool) {
	{
		maxLine := int(max) // 0: the default
		limit := maxLine
		if limit == 0 {
			limit = DefaultMaxLineBytes
		}
		for _, oneByte := range []bool{false, true} {
			var src io.Reader = bytes.NewReader(data)
			if oneByte {
				src = iotest.OneByteReader(src)
			}
			r := NewReader(src, tty, maxLine)
			var total int
			for calls := 0; ; calls++ {
				// Each call consumes at least one byte or returns one of
				// at most two flushed lines.
				if calls > len(data)+3 {
					t.Fatalf("no progress after %d calls on %d bytes", calls, len(data))
				}
				l, err := r.Next()
				var ee *EngineError
				if errors.As(err, &ee) {
					continue
				}
				if err != nil {
					if _, err2 := r.Next(); err2 != err {
						t.Fatalf("error not sticky: %v then %v", err, err2)
					}
					break
				}
				if len(l.Body) > limit {
					t.Fatalf("body of %d bytes, max %d", len(l.Body), limit)
				}
				if tty && l.Stream != pipeline.Stdout {
					t.Fatalf("tty line on %v", l.Stream)
				}
				total += len(l.Body)
			}
			if total > len(data) {
				t.Fatalf("%d body bytes out of %d input bytes", total, len(data))
			}
		}
	}
}

// FuzzAssemble decodes data into a sequence of pieces and checks the lines
// against a model: per stream, a line is the concatenation of its pieces'
// contents up to the piece ending in "\n", with the first piece's
// timestamp, cut at maxLineBytes.
//
// Each piece takes a control byte c and then n content bytes from data:
// c&1 stream (stdout/stderr), c&2 ends the line, c&4 no valid timestamp,
// c>>3 selects n (long pieces exercise the cut).
func FuzzAssemble(f *testing.F) {
	f.Add([]byte("\x00abc\x02def"), uint16(0), false)
	f.Add([]byte("\x08abcdefgh\x0bxy\x0a\r\r"), uint16(3), true)
	f.Add([]byte("\xf8zz\xf9yy\xfa\xfb\x06\r"), uint16(64), true)
	f.Fuzz(func(t *testing.T, data []byte, max uint16, tty bool) {
		maxLine := 1 + int(max)%512
		a := NewAssembler(maxLine, tty)

		type modelLine struct {
			active  bool
			start   int // the first piece's number: Flush goes oldest first
			time    time.Time
			content []byte
		}
		var model [2]modelLine
		var pending []gotLine // expected lines not yet returned
		expect := func(idx int, unterminated bool) gotLine {
			m := &model[idx]
			line := m.content
			if tty && !unterminated && len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			g := gotLine{Stream: pipeline.Stream(idx + 1), Time: m.time, Unterminated: unterminated}
			if len(line) > maxLine {
				line, g.Truncated = line[:maxLine], true
			}
			g.Body = string(line)
			*m = modelLine{}
			return g
		}

		seq := 0
		for len(data) > 0 {
			c := data[0]
			data = data[1:]
			n := int(c >> 3)
			if n > 24 {
				n = (n - 24) * 200 // up to 1400 bytes
			}
			n = min(n, len(data))
			content := data[:n]
			data = data[n:]

			idx := int(c & 1)
			end := c&2 != 0
			seq++
			var payload []byte
			var ts time.Time
			var body []byte // what the model sees as content
			if c&4 != 0 {
				// "bad" can never start a timestamp, so the whole payload
				// is content.
				payload = append([]byte("bad"), content...)
				body = payload
			} else {
				ts = tsAt(seq)
				payload = append([]byte(tsPrefix(ts)), content...)
				body = content
			}
			if end {
				payload = append(payload, '\n')
			}
			if !end && len(body) > 0 && body[len(body)-1] == '\n' {
				end = true // the content's own newline ends the line
				body = body[:len(body)-1]
			}

			m := &model[idx]
			if !m.active {
				*m = modelLine{active: true, start: seq, time: ts}
			}
			m.content = append(m.content, body...)
			if end {
				pending = append(pending, expect(idx, false))
			}

			l, ok := a.Add(pipeline.Stream(idx+1), payload)
			if ok != (len(pending) == 1) {
				t.Fatalf("piece %d: Add returned a line = %v, model expects %d", seq, ok, len(pending))
			}
			if ok {
				if got := copyLine(l); got != pending[0] {
					t.Fatalf("piece %d: got %v, want %v", seq, got, pending[0])
				}
				pending = pending[:0]
			}
		}
		// Flush: the pending lines, oldest first.
		for {
			l, ok := a.Flush()
			if !ok {
				break
			}
			idx := 0
			if l.Stream == pipeline.Stderr {
				idx = 1
			}
			if !model[idx].active {
				t.Fatalf("Flush returned %v, no pending line on that stream", copyLine(l))
			}
			if other := model[1-idx]; other.active && other.start < model[idx].start {
				t.Fatalf("Flush returned the %v line before the older %v one", l.Stream, pipeline.Stream(2-idx))
			}
			if got, want := copyLine(l), expect(idx, true); got != want {
				t.Fatalf("Flush: got %v, want %v", got, want)
			}
		}
		if model[0].active || model[1].active {
			t.Fatalf("Flush left a pending line")
		}
	})
}
