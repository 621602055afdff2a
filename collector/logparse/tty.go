package logparse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/dockscope/dockscope/pipeline"
)

// PieceContentBytes is the size at which Docker's log copier cuts a line
// that has no newline yet: every piece but the last of a long line carries
// exactly this many content bytes (after its timestamp prefix).
const PieceContentBytes = 16384

// engineErrorPrefix starts the message the daemon writes in place of a log
// line when reading its log file fails (daemon/logs.go WriteLogStream). In
// a TTY stream it arrives raw, without a timestamp.
var engineErrorPrefix = []byte("Error grabbing logs: ")

// TTYSplitter cuts the raw stream that GET /containers/{id}/logs returns
// for a container with a TTY (no frame headers) back into Docker's
// pieces. A piece is a timestamp prefix "<ts> " followed by content that
// ends at the first "\n" or after PieceContentBytes bytes, where Docker
// cut a long line (the next piece then starts with the same timestamp),
// or at the end of the stream. Pieces are returned as they are: the "\r"
// that the TTY's ONLCR puts before "\n" is removed by an Assembler made
// with tty=true, because when Docker cuts a line the "\r" and the "\n" can
// land in different pieces.
//
// A piece whose first bytes are not a valid timestamp followed by a space
// is returned whole (the Assembler keeps its bytes and counts it), except
// a daemon message starting "Error grabbing logs: ", returned as an
// *EngineError.
type TTYSplitter struct {
	r   streamBuf
	buf *[]byte        // a piece that spans read windows, from pieceBuffers
	tok [maxTSLen]byte // a timestamp that spans read windows
	err error          // sticky
}

// pieceBuffers hold the pieces that span read windows, only until the
// next piece: a stream that had one must not keep its 16 KiB while idle.
var pieceBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, maxTSLen+1+PieceContentBytes)
	return &b
}}

var _ PieceReader = (*TTYSplitter)(nil)

// NewTTYSplitter returns a TTYSplitter reading from r.
func NewTTYSplitter(r io.Reader) *TTYSplitter {
	s := &TTYSplitter{}
	s.r.reset(r)
	return s
}

// Reset makes s read from r, e.g. after a reconnect.
func (s *TTYSplitter) Reset(r io.Reader) {
	s.r.reset(r)
	s.releasePiece()
	s.err = nil
}

func (s *TTYSplitter) releasePiece() {
	if s.buf != nil {
		*s.buf = (*s.buf)[:0]
		pieceBuffers.Put(s.buf)
		s.buf = nil
	}
}

// Next returns the next piece; stream is always pipeline.Stdout since a TTY
// merges stdout and stderr. payload is valid until the next call to Next or
// Reset. A trailing piece without newline is returned before io.EOF: a TTY
// stream has no framing, so it cannot end "inside a frame".
func (s *TTYSplitter) Next() (pipeline.Stream, []byte, error) {
	if s.err != nil {
		return 0, nil, s.err
	}
	p, hasTS, err := s.next()
	if err != nil {
		s.err = err
		return 0, nil, err
	}
	if !hasTS && bytes.HasPrefix(p, engineErrorPrefix) {
		return 0, nil, &EngineError{Msg: string(trimNewline(p))}
	}
	return pipeline.Stdout, p, nil
}

// next reads one piece. All bytes of the piece examined so far are in
// s.buf unless the piece ends within the first read window, in which case
// it is returned from the read buffer without a copy.
func (s *TTYSplitter) next() (piece []byte, hasTS bool, err error) {
	s.releasePiece() // the previous piece is no longer needed
	var buf []byte
	prefix := -1 // length of "<ts> " once known; 0: the piece has none
	for {
		w, err := s.window()
		if len(w) == 0 {
			if errors.Is(err, io.EOF) {
				if len(buf) == 0 {
					return nil, false, io.EOF
				}
				return buf, prefix > 0, nil
			}
			return nil, false, fmt.Errorf("log stream: reading TTY stream: %w", err)
		}
		pos := len(buf)
		i, done := 0, false // bytes of w that belong to the piece
		if prefix < 0 {
			// The timestamp ends at the first space within maxTSLen+1
			// bytes; a newline or no space there means there is none.
			lim := min(len(w), maxTSLen+1-pos)
			j := indexSpaceOrNewline(w[:lim])
			switch {
			case j >= 0 && w[j] == ' ':
				tok := w[:j]
				if pos > 0 {
					tok = append(append(s.tok[:0], buf...), w[:j]...)
				}
				prefix = 0
				if timestampShaped(tok) {
					prefix = pos + j + 1
				}
				i = j + 1
			case j >= 0: // "\n": a line without timestamp
				prefix, i, done = 0, j+1, true
			case pos+lim == maxTSLen+1:
				prefix, i = 0, lim
			default: // need more bytes to decide
				i = lim
			}
		}
		if prefix >= 0 && !done {
			rest := w[i:]
			if room := prefix + PieceContentBytes - (pos + i); len(rest) > room {
				rest = rest[:room]
			}
			if k := bytes.IndexByte(rest, '\n'); k >= 0 {
				i, done = i+k+1, true
			} else {
				i += len(rest)
				done = pos+i == prefix+PieceContentBytes
			}
		}
		if done && pos == 0 {
			// The bytes stay in place until the next read, i.e. the
			// next call to Next.
			s.r.discard(i)
			return w[:i], prefix > 0, nil
		}
		if s.buf == nil {
			s.buf = pieceBuffers.Get().(*[]byte)
		}
		buf = append(*s.buf, w[:i]...)
		*s.buf = buf
		s.r.discard(i)
		if done {
			return buf, prefix > 0, nil
		}
	}
}

// window returns the buffered bytes, reading once if there are none. It
// never waits for more than what one read returns, so a complete line is
// handed on as soon as it arrives on a follow stream.
func (s *TTYSplitter) window() ([]byte, error) {
	if err := s.r.fill(1); err != nil {
		return nil, err
	}
	return s.r.buffered(), nil
}

// timestampShaped tells whether tok can be the timestamp of a piece. The
// splitter needs only where Docker's prefix ends, to count the content
// bytes after it; the Assembler parses and validates the timestamp, so
// Docker's fixed form is only checked for shape here rather than parsed
// twice.
func timestampShaped(tok []byte) bool {
	if len(tok) == fixedTSLen {
		return tok[4] == '-' && tok[7] == '-' && tok[10] == 'T' && tok[13] == ':' &&
			tok[16] == ':' && tok[19] == '.' && tok[29] == 'Z'
	}
	_, err := ParseTimestamp(tok)
	return err == nil
}

func indexSpaceOrNewline(b []byte) int {
	for i, c := range b {
		if c == ' ' || c == '\n' {
			return i
		}
	}
	return -1
}
