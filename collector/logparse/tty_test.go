package logparse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/dockscope/dockscope/pipeline"
)

func splitAll(t *testing.T, r io.Reader) ([]string, error) {
	t.Helper()
	s := NewTTYSplitter(r)
	var out []string
	for i := 0; ; i++ {
		if i > 1e6 {
			t.Fatal("no progress")
		}
		stream, p, err := s.Next()
		var ee *EngineError
		switch {
		case errors.As(err, &ee):
			out = append(out, "ENGINE:"+ee.Msg)
			continue
		case err != nil:
			return out, err
		}
		if stream != pipeline.Stdout {
			t.Fatalf("stream %v, want stdout", stream)
		}
		out = append(out, string(p))
	}
}

func TestTTYSplit(t *testing.T) {
	ts := tsPrefix(tsAt(0))
	ts2 := tsPrefix(tsAt(1))
	cases := []struct {
		name string
		in   string
		want []string
	}{
		{name: "empty", in: "", want: nil},
		{name: "lines", in: ts + "a\r\n" + ts2 + "b\r\n", want: []string{ts + "a\r\n", ts2 + "b\r\n"}},
		{name: "empty line", in: ts + "\r\n" + ts2 + "\n", want: []string{ts + "\r\n", ts2 + "\n"}},
		{name: "no newline at eof", in: ts + "a\r\n" + ts2 + "tail", want: []string{ts + "a\r\n", ts2 + "tail"}},
		{name: "prefix only at eof", in: ts, want: []string{ts}},
		{name: "cut prefix at eof", in: ts[:10], want: []string{ts[:10]}},
		{
			name: "40000-byte line",
			in:   ts + xs(16384) + ts + xs(16384) + ts + xs(7232) + "\r\n" + ts2 + "next\r\n",
			want: []string{ts + xs(16384), ts + xs(16384), ts + xs(7232) + "\r\n", ts2 + "next\r\n"},
		},
		{
			// The line's "\r" fills the first piece: "\r" and "\n" are
			// in different pieces (measured).
			name: "16383-byte line",
			in:   ts + xs(16383) + "\r" + ts + "\n" + ts2 + "b\r\n",
			want: []string{ts + xs(16383) + "\r", ts + "\n", ts2 + "b\r\n"},
		},
		{
			name: "16384-byte line",
			in:   ts + xs(16384) + ts + "\r\n",
			want: []string{ts + xs(16384), ts + "\r\n"},
		},
		{
			name: "full piece at eof",
			in:   ts + xs(16384),
			want: []string{ts + xs(16384)},
		},
		{
			// Content that looks like a timestamp does not start a piece:
			// only "\n" and the 16384-byte cut do.
			name: "timestamp in content",
			in:   ts + "a " + ts2 + "b\r\n",
			want: []string{ts + "a " + ts2 + "b\r\n"},
		},
		{name: "no timestamp", in: "hello world\n" + ts + "a\n", want: []string{"hello world\n", ts + "a\n"}},
		{name: "no space", in: "hello\n", want: []string{"hello\n"}},
		{
			name: "long junk is cut at 16384 bytes",
			in:   xs(16384*2+5) + "\n",
			want: []string{xs(16384), xs(16384), xs(5) + "\n"},
		},
		{
			name: "junk with a space after 40 bytes",
			in:   xs(45) + " " + xs(16384),
			want: []string{xs(45) + " " + xs(16384-46), xs(46)},
		},
		{
			name: "short timestamp",
			in:   "2026-11-23T10:06:33.1Z " + xs(16384) + "2026-11-23T10:06:33.1Z y\n",
			want: []string{"2026-11-23T10:06:33.1Z " + xs(16384), "2026-11-23T10:06:33.1Z y\n"},
		},
		{
			name: "engine error",
			in:   ts + "a\r\nError grabbing logs: invalid character '\\x00' looking for beginning of value\n" + ts2 + "b\r\n",
			want: []string{ts + "a\r\n", `ENGINE:Error grabbing logs: invalid character '\x00' looking for beginning of value`, ts2 + "b\r\n"},
		},
		{
			name: "binary",
			in:   ts + "\x00\x1b[31m\xff\xfe\r\x00\r\n",
			want: []string{ts + "\x00\x1b[31m\xff\xfe\r\x00\r\n"},
		},
	}
	for _, c := range cases {
		for _, rd := range readers {
			t.Run(c.name+"/"+rd.name, func(t *testing.T) {
				got, err := splitAll(t, rd.wrap([]byte(c.in)))
				if err != io.EOF {
					t.Fatalf("err = %v, want io.EOF", err)
				}
				if len(got) != len(c.want) {
					t.Fatalf("%d pieces %s, want %d %s", len(got), short(got), len(c.want), short(c.want))
				}
				for i := range got {
					if got[i] != c.want[i] {
						t.Errorf("piece %d = %s, want %s", i, short(got[i:i+1]), short(c.want[i:i+1]))
					}
				}
			})
		}
	}
}

func short(ss []string) string {
	var b strings.Builder
	for _, s := range ss {
		if len(s) > 50 {
			s = s[:25] + "..." + s[len(s)-20:]
		}
		b.WriteString(strings.ReplaceAll(s, "\n", `\n`) + " | ")
	}
	return b.String()
}

// The measured TTY stream: pieces start at 0, 16415, 32830, then the next
// line at 40095.
func TestTTYMeasuredOffsets(t *testing.T) {
	data := loadTestdata(t, "tty-40000.bin.gz")
	got, err := splitAll(t, bytes.NewReader(data))
	if err != io.EOF {
		t.Fatal(err)
	}
	var offs []int
	off := 0
	for _, p := range got {
		offs = append(offs, off)
		off += len(p)
	}
	want := []int{0, 16415, 32830, 40095, 56510, 72925}
	if !equalInts(offs, want) || off != len(data) {
		t.Fatalf("offsets %v (end %d), want %v (end %d)", offs, off, want, len(data))
	}
}

func TestTTYReadError(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader(tsPrefix(tsAt(0))+"abc"), errReader{boom})
	s := NewTTYSplitter(r)
	_, _, err := s.Next()
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v wrapped", err, boom)
	}
	if _, _, err2 := s.Next(); err2 != err {
		t.Fatalf("second call: %v, want the same error", err2)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestTTYSteadyStateNoAllocs(t *testing.T) {
	data := bytes.Repeat(piece(0, xs(68)+"\r\n"), 1000)
	br := bytes.NewReader(data)
	s := NewTTYSplitter(br)
	allocs := testing.AllocsPerRun(5000, func() {
		if _, _, err := s.Next(); err == io.EOF {
			br.Reset(data)
			s.Reset(br)
		} else if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocs per piece = %v, want 0", allocs)
	}
}
