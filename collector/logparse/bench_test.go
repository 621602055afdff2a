package logparse

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// benchStream returns a log stream of n lines of lineBytes bytes, newline
// included, as the daemon sends it: multiplexed with every 10th line on
// stderr, or raw with "\r\n" for a TTY. Timestamps advance by 1 µs.
func benchStream(tty bool, n, lineBytes int) []byte {
	var b []byte
	for i := range n {
		ts := tsAt(i)
		if tty {
			for _, p := range dockerPieces(ts, xs(lineBytes-2)+"\r") {
				b = append(b, p...)
			}
			continue
		}
		stream := byte(1)
		if i%10 == 9 {
			stream = 2
		}
		for _, p := range dockerPieces(ts, xs(lineBytes-1)) {
			b = append(b, frame(stream, p)...)
		}
	}
	return b
}

// One op is one line, so ns/op and allocs/op are per line. The stream is
// replayed through Reset, as after a reconnect.
func benchReader(b *testing.B, tty bool, lines, lineBytes int) {
	data := benchStream(tty, lines, lineBytes)
	br := bytes.NewReader(data)
	r := NewReader(br, tty, 0)
	b.SetBytes(int64(lineBytes))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		l, err := r.Next()
		if err == io.EOF {
			br.Reset(data)
			r.Reset(br)
			l, err = r.Next()
		}
		if err != nil || len(l.Body) == 0 {
			b.Fatalf("line %q, err %v", l.Body, err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/line")
}

func BenchmarkDemuxAssemble(b *testing.B) {
	b.Run("70B", func(b *testing.B) { benchReader(b, false, 10000, 70) })
	b.Run("40000B", func(b *testing.B) { benchReader(b, false, 20, 40000) })
}

func BenchmarkTTYAssemble(b *testing.B) {
	b.Run("70B", func(b *testing.B) { benchReader(b, true, 10000, 70) })
	b.Run("40000B", func(b *testing.B) { benchReader(b, true, 20, 40000) })
}
