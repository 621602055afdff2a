package logparse

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

type in struct {
	stream  pipeline.Stream
	payload string
}

func out(stream pipeline.Stream, i int, body string) gotLine {
	return gotLine{Stream: stream, Time: tsAt(i), Body: body}
}

const (
	so = pipeline.Stdout
	se = pipeline.Stderr
)

func pieces(stream pipeline.Stream, ts int, line string) []in {
	var r []in
	for _, p := range dockerPieces(tsAt(ts), line) {
		r = append(r, in{stream, string(p)})
	}
	return r
}

func cat(parts ...[]in) []in {
	var r []in
	for _, p := range parts {
		r = append(r, p...)
	}
	return r
}

func p(stream pipeline.Stream, ts int, content string) in {
	return in{stream, string(piece(ts, content))}
}

func TestAssembler(t *testing.T) {
	line40k := "line 1 " + xs(40000-7)
	line100k := strings.Repeat("0123456789abcdef", 100<<10/16)
	cases := []struct {
		name  string
		max   int
		tty   bool
		in    []in
		want  []gotLine // from Add, then from Flush
		stats Stats
	}{
		{
			name:  "one line",
			in:    []in{p(so, 0, "hello\n")},
			want:  []gotLine{out(so, 0, "hello")},
			stats: Stats{Pieces: 1, Lines: 1, Bytes: 5},
		},
		{
			name:  "empty lines",
			in:    []in{p(so, 0, "\n"), p(se, 1, "\n")},
			want:  []gotLine{out(so, 0, ""), out(se, 1, "")},
			stats: Stats{Pieces: 2, Lines: 2},
		},
		{
			name:  "40000-byte line: 16415, 16415, 7264",
			in:    pieces(se, 0, line40k),
			want:  []gotLine{out(se, 0, line40k)},
			stats: Stats{Pieces: 3, Lines: 1, Bytes: 40000},
		},
		{
			name:  "100 KiB line",
			in:    pieces(so, 0, line100k),
			want:  []gotLine{out(so, 0, line100k)},
			stats: Stats{Pieces: 7, Lines: 1, Bytes: 100 << 10},
		},
		{
			name:  "16384-byte line: a full piece and a piece of just a newline",
			in:    pieces(so, 0, xs(16384)),
			want:  []gotLine{out(so, 0, xs(16384))},
			stats: Stats{Pieces: 2, Lines: 1, Bytes: 16384},
		},
		{
			name:  "16383-byte line: one piece",
			in:    pieces(so, 0, xs(16383)),
			want:  []gotLine{out(so, 0, xs(16383))},
			stats: Stats{Pieces: 1, Lines: 1, Bytes: 16383},
		},
		{
			name: "interleaved stdout and stderr partials",
			in: []in{
				p(so, 0, "out-a "), p(se, 1, "err-a "), p(so, 0, "out-b "),
				p(se, 2, "short\n"), // stderr pieces after a partial one belong to its line
				p(so, 0, "out-c\n"), p(so, 3, "next\n"),
			},
			want: []gotLine{
				out(se, 1, "err-a short"), out(so, 0, "out-a out-b out-c"), out(so, 3, "next"),
			},
			stats: Stats{Pieces: 6, Lines: 3, Bytes: 11 + 17 + 4},
		},
		{
			name: "interleaved 40000-byte lines",
			in: func() []in {
				a, b := pieces(so, 0, line40k), pieces(se, 1, strings.ToUpper(line40k))
				return []in{b[0], a[0], a[1], b[1], b[2], a[2]}
			}(),
			want:  []gotLine{out(se, 1, strings.ToUpper(line40k)), out(so, 0, line40k)},
			stats: Stats{Pieces: 6, Lines: 2, Bytes: 80000},
		},
		{
			name:  "the line keeps its first piece's timestamp",
			in:    []in{p(so, 5, "a"), p(so, 6, "b"), p(so, 7, "c\n")},
			want:  []gotLine{out(so, 5, "abc")},
			stats: Stats{Pieces: 3, Lines: 1, Bytes: 3},
		},
		{
			name: "truncated: the rest of the line starts no record",
			max:  20000,
			in:   cat(pieces(so, 0, line40k), pieces(so, 1, "after")),
			want: []gotLine{
				{Stream: so, Time: tsAt(0), Body: line40k[:20000], Truncated: true},
				out(so, 1, "after"),
			},
			stats: Stats{Pieces: 4, Lines: 2, Bytes: 20005, Truncated: 1, DroppedBytes: 20000},
		},
		{
			name:  "cut in the first piece",
			max:   10,
			in:    cat(pieces(so, 0, line40k), pieces(se, 1, "0123456789"), pieces(se, 2, "0123456789a")),
			want:  []gotLine{{Stream: so, Time: tsAt(0), Body: line40k[:10], Truncated: true}, out(se, 1, "0123456789"), {Stream: se, Time: tsAt(2), Body: "0123456789", Truncated: true}},
			stats: Stats{Pieces: 5, Lines: 3, Bytes: 30, Truncated: 2, DroppedBytes: 39990 + 1},
		},
		{
			name:  "exactly max across pieces",
			max:   6,
			in:    []in{p(so, 0, "abc"), p(so, 0, "def"), p(so, 0, "\n")},
			want:  []gotLine{out(so, 0, "abcdef")},
			stats: Stats{Pieces: 3, Lines: 1, Bytes: 6},
		},
		{
			name:  "one over max across pieces",
			max:   6,
			in:    []in{p(so, 0, "abc"), p(so, 0, "def"), p(so, 0, "g\n")},
			want:  []gotLine{{Stream: so, Time: tsAt(0), Body: "abcdef", Truncated: true}},
			stats: Stats{Pieces: 3, Lines: 1, Bytes: 6, Truncated: 1, DroppedBytes: 1},
		},
		{
			name: "no timestamp: bytes kept, time zero",
			in:   []in{{so, "garbage line\n"}, {se, "x\n"}, p(so, 1, "ok\n")},
			want: []gotLine{
				{Stream: so, Body: "garbage line"}, {Stream: se, Body: "x"}, out(so, 1, "ok"),
			},
			stats: Stats{Pieces: 3, Lines: 3, Bytes: 15, BadTimestamps: 2},
		},
		{
			name:  "bad timestamp in a continuation piece",
			in:    []in{p(so, 0, "first "), {so, "2026-13-01T00:00:00.000000000Z rest\n"}},
			want:  []gotLine{out(so, 0, "first 2026-13-01T00:00:00.000000000Z rest")},
			stats: Stats{Pieces: 2, Lines: 1, Bytes: 41, BadTimestamps: 1},
		},
		{
			name:  "timestamp without space",
			in:    []in{{so, "2026-11-23T10:06:33.117135967Z"}, {so, "\n"}},
			want:  []gotLine{{Stream: so, Body: "2026-11-23T10:06:33.117135967Z"}},
			stats: Stats{Pieces: 2, Lines: 1, Bytes: 30, BadTimestamps: 2},
		},
		{
			name: "variable-width timestamps",
			in: []in{
				{so, "2026-11-23T10:06:33.1Z short fraction\n"},
				{se, "2026-11-23T11:06:33.5+01:00 zone\n"},
			},
			want: []gotLine{
				{Stream: so, Time: time.Date(2026, 11, 23, 10, 6, 33, 1e8, time.UTC), Body: "short fraction"},
				{Stream: se, Time: time.Date(2026, 11, 23, 10, 6, 33, 5e8, time.UTC), Body: "zone"},
			},
			stats: Stats{Pieces: 2, Lines: 2, Bytes: 18},
		},
		{
			name:  "binary bytes kept",
			in:    []in{p(so, 0, "\x00\x1b[31m\xff\xfe\r\x00 \xc3\x28\n"), p(se, 1, "\r\n")},
			want:  []gotLine{out(so, 0, "\x00\x1b[31m\xff\xfe\r\x00 \xc3\x28"), out(se, 1, "\r")},
			stats: Stats{Pieces: 2, Lines: 2, Bytes: 14},
		},
		{
			name:  "newline inside a piece is content",
			in:    []in{p(so, 0, "a\nb\n")},
			want:  []gotLine{out(so, 0, "a\nb")},
			stats: Stats{Pieces: 1, Lines: 1, Bytes: 3},
		},
		{
			name:  "empty pieces are ignored",
			in:    []in{{so, ""}, p(so, 0, "a"), {so, ""}, p(so, 0, "\n")},
			want:  []gotLine{out(so, 0, "a")},
			stats: Stats{Pieces: 2, Lines: 1, Bytes: 1},
		},
		{
			name: "tty: one \\r before \\n removed",
			tty:  true,
			in:   []in{p(so, 0, "a\r\n"), p(so, 1, "b\r\r\n"), p(so, 2, "c\n"), p(so, 3, "\r\n"), p(so, 4, "\rd\r\n")},
			want: []gotLine{
				out(so, 0, "a"), out(so, 1, "b\r"), out(so, 2, "c"), out(so, 3, ""), out(so, 4, "\rd"),
			},
			stats: Stats{Pieces: 5, Lines: 5, Bytes: 6},
		},
		{
			name:  "tty: \\r and \\n in different pieces (16383-byte line)",
			tty:   true,
			in:    []in{p(so, 0, xs(16383)+"\r"), p(so, 0, "\n")},
			want:  []gotLine{out(so, 0, xs(16383))},
			stats: Stats{Pieces: 2, Lines: 1, Bytes: 16383},
		},
		{
			name:  "no tty: \\r kept",
			in:    []in{p(so, 0, "a\r\n")},
			want:  []gotLine{out(so, 0, "a\r")},
			stats: Stats{Pieces: 1, Lines: 1, Bytes: 2},
		},
		{
			name: "tty: a line of exactly max is not cut for its \\r",
			tty:  true,
			max:  5,
			in: []in{
				p(so, 0, "abcde\r\n"),
				p(so, 1, "abc"), p(so, 1, "de\r"), p(so, 1, "\n"),
				p(so, 2, "abcde"), p(so, 2, "\r"), p(so, 2, "\n"), // only the "\r" overflows
				p(so, 3, "abcdef\r\n"),
				p(so, 4, "abc"), p(so, 4, "def\r\n"),
			},
			want: []gotLine{
				out(so, 0, "abcde"), out(so, 1, "abcde"), out(so, 2, "abcde"),
				{Stream: so, Time: tsAt(3), Body: "abcde", Truncated: true},
				{Stream: so, Time: tsAt(4), Body: "abcde", Truncated: true},
			},
			stats: Stats{Pieces: 10, Lines: 5, Bytes: 25, Truncated: 2, DroppedBytes: 2},
		},
		{
			name: "flush: pending lines, oldest first, not truncated",
			in:   []in{p(se, 0, "err-partial"), p(so, 1, "out-partial"), p(so, 1, " more")},
			want: []gotLine{
				{Stream: se, Time: tsAt(0), Body: "err-partial", Unterminated: true},
				{Stream: so, Time: tsAt(1), Body: "out-partial more", Unterminated: true},
			},
			stats: Stats{Pieces: 3, Lines: 2, Bytes: 27},
		},
		{
			name:  "flush: tty keeps a trailing \\r without \\n",
			tty:   true,
			in:    []in{p(so, 0, "a\r")},
			want:  []gotLine{{Stream: so, Time: tsAt(0), Body: "a\r", Unterminated: true}},
			stats: Stats{Pieces: 1, Lines: 1, Bytes: 2},
		},
		{
			name:  "flush after a cut",
			max:   4,
			in:    []in{p(so, 0, "abcdef"), p(so, 0, "gh")},
			want:  []gotLine{{Stream: so, Time: tsAt(0), Body: "abcd", Truncated: true, Unterminated: true}},
			stats: Stats{Pieces: 2, Lines: 1, Bytes: 4, Truncated: 1, DroppedBytes: 4},
		},
		{
			name:  "flush: a prefix alone is an empty line",
			in:    []in{p(so, 0, "")},
			want:  []gotLine{{Stream: so, Time: tsAt(0), Unterminated: true}},
			stats: Stats{Pieces: 1, Lines: 1},
		},
		{
			name:  "unknown stream is stdout",
			in:    []in{p(0, 0, "a\n"), p(7, 1, "b"), p(so, 1, "c\n")},
			want:  []gotLine{out(so, 0, "a"), out(so, 1, "bc")},
			stats: Stats{Pieces: 3, Lines: 2, Bytes: 3},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := NewAssembler(c.max, c.tty)
			var got []gotLine
			for _, x := range c.in {
				// Each payload is its own buffer, overwritten after Add
				// like a reader's buffer would be.
				buf := []byte(x.payload)
				if l, ok := a.Add(x.stream, buf); ok {
					got = append(got, copyLine(l))
				}
				for i := range buf {
					buf[i] = '#'
				}
			}
			for {
				l, ok := a.Flush()
				if !ok {
					break
				}
				got = append(got, copyLine(l))
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) || !equalLines(got, c.want) {
				t.Errorf("lines\n got %v\nwant %v", got, c.want)
			}
			if a.Stats() != c.stats {
				t.Errorf("stats %+v, want %+v", a.Stats(), c.stats)
			}
		})
	}
}

func equalLines(a, b []gotLine) bool {
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

func TestAssemblerReset(t *testing.T) {
	a := NewAssembler(0, false)
	a.Add(so, piece(0, "partial "))
	a.Reset()
	l, ok := a.Add(so, piece(1, "whole\n"))
	if !ok || string(l.Body) != "whole" || l.Time != tsAt(1) {
		t.Fatalf("after Reset: %v %v", copyLine(l), ok)
	}
	if _, ok := a.Flush(); ok {
		t.Fatal("Flush after Reset returned a line")
	}
}

func TestAssemblerDefaultMax(t *testing.T) {
	a := NewAssembler(0, false)
	big := strings.Repeat("y", DefaultMaxLineBytes+100)
	var l Line
	var ok bool
	for _, pc := range dockerPieces(tsAt(0), big) {
		l, ok = a.Add(so, pc)
	}
	if !ok || len(l.Body) != DefaultMaxLineBytes || !l.Truncated {
		t.Fatalf("ok=%v len=%d truncated=%v, want a %d-byte truncated line", ok, len(l.Body), l.Truncated, DefaultMaxLineBytes)
	}
}

func TestAssemblerNoAllocs(t *testing.T) {
	short := piece(0, xs(69)+"\n")
	long := dockerPieces(tsAt(1), xs(40000))
	for _, tty := range []bool{false, true} {
		a := NewAssembler(0, tty)
		for _, pc := range long { // grow the buffer once
			a.Add(se, pc)
		}
		if n := testing.AllocsPerRun(1000, func() {
			if _, ok := a.Add(so, short); !ok {
				t.Fatal("no line")
			}
		}); n != 0 {
			t.Errorf("tty=%v: allocs per short line = %v, want 0", tty, n)
		}
		if n := testing.AllocsPerRun(100, func() {
			for _, pc := range long {
				a.Add(se, pc)
			}
		}); n != 0 {
			t.Errorf("tty=%v: allocs per 40000-byte line = %v, want 0", tty, n)
		}
	}
}

// The seconds cache returns what time.Parse does, hit or miss.
func TestAssemblerTimestampCache(t *testing.T) {
	a := NewAssembler(0, false)
	inputs := []string{
		"2026-11-23T10:06:33.117135967Z",
		"2026-11-23T10:06:33.117135968Z", // hit
		"2026-11-23T10:06:33.11713596xZ", // same seconds, bad nanos
		"2026-11-23T10:06:33.117135967z", // same seconds, bad zone
		"2026-11-23T10:06:33,117135967Z", // same seconds, comma: time.Parse accepts it
		"2026-11-23T10:06:33.117135967+01:00"[:30],
		"2026-11-23T10:06:34.000000000Z", // miss
		"2026-11-23T10:06:33.999999999Z", // back: miss
		"2026-02-29T10:06:33.000000000Z", // invalid date
		"2026-02-29T10:06:33.000000001Z", // same invalid prefix: must not hit
	}
	for _, in := range inputs {
		l, ok := a.Add(so, []byte(in+" x\n"))
		if !ok {
			t.Fatalf("%s: no line", in)
		}
		want, err := time.Parse(time.RFC3339Nano, in)
		if err != nil {
			if l.Time != (time.Time{}) || string(l.Body) != in+" x" {
				t.Errorf("%s: got time %v body %q, want zero time and the whole payload", in, l.Time, l.Body)
			}
			continue
		}
		if l.Time != want.UTC() || string(l.Body) != "x" {
			t.Errorf("%s: got %v %q, want %v", in, l.Time, l.Body, want)
		}
	}
}

// A long line's buffer is not kept for good: every pending line could
// otherwise pin maxLineBytes.
func TestAssemblerReleasesLargeBuffer(t *testing.T) {
	a := NewAssembler(0, false)
	for _, pc := range dockerPieces(tsAt(0), xs(300<<10)) {
		a.Add(so, pc)
	}
	a.Add(so, piece(1, "start"))
	if c := cap(a.pending[0].buf); c > retainBytes {
		t.Errorf("buffer of %d bytes kept", c)
	}
}
