package logparse

import (
	"errors"
	"io"
)

// Reader reads the lines of one container's log stream, as returned by
// GET /containers/{id}/logs?stdout=1&stderr=1&timestamps=1: a Demuxer or a
// TTYSplitter feeding an Assembler.
type Reader struct {
	src   PieceReader
	reset func(io.Reader)
	asm   *Assembler
	done  bool  // the source reached io.EOF: flushing
	err   error // sticky
}

// NewReader returns a Reader of the stream r, multiplexed unless tty (the
// container's Config.Tty), cutting lines at maxLineBytes
// (DefaultMaxLineBytes if ≤ 0).
func NewReader(r io.Reader, tty bool, maxLineBytes int) *Reader {
	lr := &Reader{asm: NewAssembler(maxLineBytes, tty)}
	if tty {
		s := NewTTYSplitter(r)
		lr.src, lr.reset = s, s.Reset
	} else {
		d := NewDemuxer(r)
		lr.src, lr.reset = d, d.Reset
	}
	return lr
}

// Reset makes lr read a new stream from r, e.g. the stream reopened from a
// checkpoint after an error, dropping any partial line of the old one. It
// keeps the buffers and the counters.
func (lr *Reader) Reset(r io.Reader) {
	lr.reset(r)
	lr.asm.Reset()
	lr.done, lr.err = false, nil
}

// Stats returns the Assembler's counters.
func (lr *Reader) Stats() Stats { return lr.asm.Stats() }

// Next returns the next line; its Body is valid until the next call to
// Next or Reset. When the stream ends cleanly, the partial lines it ended
// in are returned (marked Unterminated), then io.EOF. An *EngineError is
// the daemon's own message: Next may be called again. Any other error is
// final and drops the partial lines, which a stream reopened from the
// checkpoint reads again whole.
func (lr *Reader) Next() (Line, error) {
	if lr.err != nil {
		return Line{}, lr.err
	}
	for !lr.done {
		stream, payload, err := lr.src.Next()
		if err != nil {
			var ee *EngineError
			switch {
			case errors.Is(err, io.EOF):
				lr.done = true
				continue
			case errors.As(err, &ee):
				return Line{}, err
			}
			lr.asm.Reset()
			lr.err = err
			return Line{}, err
		}
		if l, ok := lr.asm.Add(stream, payload); ok {
			return l, nil
		}
	}
	if l, ok := lr.asm.Flush(); ok {
		return l, nil
	}
	lr.err = io.EOF
	return Line{}, io.EOF
}
