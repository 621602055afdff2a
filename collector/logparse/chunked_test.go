package logparse

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http/httputil"
	"strings"
	"testing"
	"testing/iotest"
)

// chunked encodes parts as net/http's chunked writer does, one chunk per
// part, with the terminating chunk and an empty trailer.
func chunked(t testing.TB, parts ...[]byte) []byte {
	var b bytes.Buffer
	w := httputil.NewChunkedWriter(&b)
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// readChunked reads the whole body with buffers of random sizes.
func readChunked(r io.Reader, rng *rand.Rand) ([]byte, error) {
	var out []byte
	for {
		p := make([]byte, 1+rng.IntN(300))
		n, err := r.Read(p)
		out = append(out, p[:n]...)
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, errors.New("Read returned 0 bytes and no error")
		}
	}
}

func TestChunkedReaderRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 200 {
		var parts [][]byte
		var want []byte
		for range rng.IntN(40) {
			p := make([]byte, 1+rng.IntN(500))
			for i := range p {
				p[i] = byte(rng.IntN(256))
			}
			parts = append(parts, p)
			want = append(want, p...)
		}
		raw := chunked(t, parts...)
		cut := rng.IntN(len(raw) + 1)
		for name, src := range map[string]io.Reader{
			"whole":    bytes.NewReader(raw[cut:]),
			"one byte": iotest.OneByteReader(bytes.NewReader(raw[cut:])),
			"half":     iotest.HalfReader(bytes.NewReader(raw[cut:])),
		} {
			pre := bytes.Clone(raw[:cut])
			got, err := readChunked(NewChunkedReader(src, pre), rng)
			if err != io.EOF || !bytes.Equal(got, want) {
				t.Fatalf("iteration %d, %s, %d bytes read ahead: %d bytes, %v; want %d bytes, EOF", iter, name, cut, len(got), err, len(want))
			}
		}
	}
}

func TestChunkedReaderForms(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
		err             error // nil: io.EOF
	}{
		{"extension and trailer", "3;x=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", "abc", nil},
		{"bare newline in trailer", "3\r\nabc\r\n0\r\n\n", "abc", nil},
		{"upper-case hex, blanks", "A \t\r\n0123456789\r\n0\r\n\r\n", "0123456789", nil},
		{"bare newline in size line", "3\nabc\r\n", "", errMalformed},
		{"CR in size line", "3\r3\r\nabc\r\n", "", errMalformed},
		{"cut in payload", "5\r\nab", "ab", io.ErrUnexpectedEOF},
		{"cut in size line", "5\r\nabcde\r\n1", "abcde", io.ErrUnexpectedEOF},
		{"cut before trailer end", "1\r\na\r\n0\r\n", "a", io.ErrUnexpectedEOF},
		{"empty stream", "", "", io.ErrUnexpectedEOF},
		{"no CRLF after payload", "1\r\nab\r\n", "a", errMalformed},
		{"not hex", "zz\r\n", "", errMalformed},
		{"size overflow", "11111111111111111\r\n", "", errMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readChunked(NewChunkedReader(bytes.NewReader([]byte(tc.raw)), nil), rand.New(rand.NewPCG(3, 4)))
			if string(got) != tc.want {
				t.Errorf("payload %q, want %q", got, tc.want)
			}
			switch {
			case tc.err == nil && err != io.EOF,
				tc.err == io.ErrUnexpectedEOF && !errors.Is(err, io.ErrUnexpectedEOF),
				tc.err == errMalformed && (err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF)):
				t.Errorf("error %v, want %v", err, tc.err)
			}
		})
	}
}

var errMalformed = errors.New("malformed")

// A stream error is returned after the payload read before it, and stays.
func TestChunkedReaderSourceErrorIsSticky(t *testing.T) {
	boom := errors.New("boom")
	r := NewChunkedReader(iotest.ErrReader(boom), []byte("2\r\nhi\r\n"))
	p := make([]byte, 10)
	if n, err := r.Read(p); n != 2 || err != nil || string(p[:2]) != "hi" {
		t.Fatalf("first read %d %q %v", n, p[:n], err)
	}
	for range 2 {
		if n, err := r.Read(p); n != 0 || !errors.Is(err, boom) {
			t.Fatalf("read %d, %v; want the source's error", n, err)
		}
	}
}

// FuzzChunked holds the decoder to net/http's on what both accept: same
// payload, and no panic or hang on anything.
func FuzzChunked(f *testing.F) {
	f.Add(chunked(f, []byte("hello"), []byte(" world")), uint8(3))
	f.Add([]byte("3;x\r\nabc\r\n0\r\nT: v\r\n\r\n"), uint8(1))
	f.Add([]byte("ffffffff\r\nab"), uint8(7))
	f.Fuzz(func(t *testing.T, raw []byte, split uint8) {
		cut := min(int(split), len(raw))
		got, err := readChunked(NewChunkedReader(bytes.NewReader(raw[cut:]), bytes.Clone(raw[:cut])), rand.New(rand.NewPCG(uint64(split), 0)))
		std, stdErr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(raw)))
		if stdErr == nil && !bytes.HasPrefix(got, std) {
			t.Fatalf("payload %q, net/http's %q", got, std)
		}
		// net/http also refuses bodies with more framing than data, a
		// guard against hostile servers the decoder does not copy.
		if err == io.EOF && (stdErr != nil && !strings.Contains(stdErr.Error(), "non-data") || stdErr == nil && !bytes.Equal(got, std)) {
			t.Fatalf("accepted %q as a whole body; net/http: %q, %v", got, std, stdErr)
		}
	})
}

// decliningReader answers its first read with 0, nil, as a source that
// will not wait with a large buffer does (IdleReadBytes).
type decliningReader struct {
	r        io.Reader
	declined bool
}

func (d *decliningReader) Read(p []byte) (int, error) {
	if !d.declined {
		d.declined = true
		return 0, nil
	}
	return d.r.Read(p)
}

// A source's 0, nil reaches the caller, which may then read with a
// smaller buffer, instead of being retried with the same one.
func TestChunkedReaderPassesOnADeclinedRead(t *testing.T) {
	body := chunked(t, []byte("hello\n"))
	c := NewChunkedReader(&decliningReader{r: bytes.NewReader(body)}, nil)
	p := make([]byte, 64)
	if n, err := c.Read(p); n != 0 || err != nil {
		t.Fatalf("first read = %d, %v; want 0, nil", n, err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello\n" {
		t.Fatalf("then read %q, %v", got, err)
	}
}
