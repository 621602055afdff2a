package logparse

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// dockerTSLayout is jsonmessage.RFC3339NanoFixed, what the daemon writes.
const dockerTSLayout = "2006-01-02T15:04:05.000000000Z07:00"

var baseTime = time.Date(2026, 11, 23, 10, 6, 33, 117135967, time.UTC)

// tsAt returns the i-th test timestamp, as Docker formats it.
func tsAt(i int) time.Time { return baseTime.Add(time.Duration(i) * time.Microsecond) }

func tsPrefix(t time.Time) string { return t.Format(dockerTSLayout) + " " }

// piece returns "<ts> content".
func piece(i int, content string) []byte { return []byte(tsPrefix(tsAt(i)) + content) }

// frame encodes one multiplexed frame.
func frame(stream byte, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0] = stream
	binary.BigEndian.PutUint32(b[4:], uint32(len(payload)))
	return append(b, payload...)
}

// dockerPieces splits a line the way the daemon does: pieces of
// PieceContentBytes content bytes, all with the same timestamp, the last
// one ending in "\n" (possibly holding nothing else).
func dockerPieces(ts time.Time, line string) [][]byte {
	var out [][]byte
	content := line + "\n"
	for len(content) > 0 {
		n := min(len(content), PieceContentBytes)
		out = append(out, []byte(tsPrefix(ts)+content[:n]))
		content = content[n:]
	}
	return out
}

// readers wraps a stream in readers that return it in different chunkings.
var readers = []struct {
	name string
	wrap func([]byte) io.Reader
}{
	{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"onebyte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
	{"half", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
	{"dataerr", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
}

// gotLine is a Line with its Body copied.
type gotLine struct {
	Stream       pipeline.Stream
	Time         time.Time
	Body         string
	Truncated    bool
	Unterminated bool
}

func (g gotLine) String() string {
	b := g.Body
	if len(b) > 40 {
		b = fmt.Sprintf("%q...(%d bytes)", b[:40], len(b))
	} else {
		b = fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("{%v %s %s trunc=%v unterm=%v}", g.Stream, g.Time.Format(dockerTSLayout), b, g.Truncated, g.Unterminated)
}

func copyLine(l Line) gotLine {
	return gotLine{l.Stream, l.Time, string(l.Body), l.Truncated, l.Unterminated}
}

// readLines reads r to its end, returning the lines and the final error
// (nil for io.EOF). EngineErrors are collected as lines with stream 0.
func readLines(t testing.TB, r *Reader) ([]gotLine, error) {
	t.Helper()
	var out []gotLine
	for i := 0; ; i++ {
		if i > 1e6 {
			t.Fatal("Reader.Next made no progress")
		}
		l, err := r.Next()
		var ee *EngineError
		switch {
		case errors.Is(err, io.EOF):
			return out, nil
		case errors.As(err, &ee):
			out = append(out, gotLine{Body: ee.Msg})
		case err != nil:
			return out, err
		default:
			out = append(out, copyLine(l))
		}
	}
}

func loadTestdata(t testing.TB, name string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("opening %s: %v", name, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return b
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func xs(n int) string { return strings.Repeat("x", n) }
