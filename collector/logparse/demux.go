package logparse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dockscope/dockscope/pipeline"
)

const (
	frameHeaderLen = 8

	// MaxFrameBytes bounds a frame's payload. Docker writes a line as
	// pieces of at most 16 KiB plus a timestamp prefix (and, with
	// details=1, attributes), so a larger length means the stream is
	// corrupt or not multiplexed; refusing it keeps a bad header from
	// becoming a 4 GiB allocation.
	MaxFrameBytes = 1<<20 + 64

	// stream byte of the daemon's own error messages (stdcopy.Systemerr).
	streamSystemErr = 3
)

// EngineError is a message the daemon wrote into the log stream about
// itself, e.g. "Error grabbing logs: invalid character '\x00' ...": a
// Systemerr frame in a multiplexed stream, a line without a timestamp in
// a TTY stream. It is not a line of the container. It is not fatal: the
// framing is intact and the daemon keeps streaming, so Next may be called
// again; the caller should log and count it.
type EngineError struct {
	Msg string
}

func (e *EngineError) Error() string { return "log stream: error from daemon: " + e.Msg }

// PieceReader yields the pieces of a container's log stream: each payload
// is one Docker log message "<timestamp> <content>", where content ends in
// "\n" unless the message is a partial piece of a longer line. The payload
// is valid until the next call to Next.
type PieceReader interface {
	Next() (stream pipeline.Stream, payload []byte, err error)
}

// Demuxer reads the multiplexed stream that GET /containers/{id}/logs
// returns for a container without a TTY: frames of an 8-byte header
// [stream, 0, 0, 0, big-endian uint32 length] and a payload. While the
// stream is idle it holds a 512-byte buffer; a 64 KiB one only while
// frames are in flight.
type Demuxer struct {
	b   streamBuf
	err error // sticky: after a framing error the stream cannot be trusted
}

var _ PieceReader = (*Demuxer)(nil)

// NewDemuxer returns a Demuxer reading from r.
func NewDemuxer(r io.Reader) *Demuxer {
	d := &Demuxer{}
	d.b.reset(r)
	return d
}

// Reset makes d read from r, e.g. after a reconnect.
func (d *Demuxer) Reset(r io.Reader) {
	d.b.reset(r)
	d.err = nil
}

// Next returns the next frame. payload is valid until the next call to Next
// or Reset. At the end of the stream it returns io.EOF if the stream ended
// exactly at a frame boundary and an error wrapping io.ErrUnexpectedEOF if
// it ended inside a frame. A Systemerr frame is returned as an
// *EngineError, after which Next may be called again; any other error is
// returned again by every later call.
func (d *Demuxer) Next() (pipeline.Stream, []byte, error) {
	if d.err != nil {
		return 0, nil, d.err
	}
	stream, payload, err := d.next()
	if _, engine := err.(*EngineError); err != nil && !engine {
		d.err = err
	}
	return stream, payload, err
}

func (d *Demuxer) next() (pipeline.Stream, []byte, error) {
	if err := d.b.fill(frameHeaderLen); err != nil {
		if errors.Is(err, io.EOF) {
			if len(d.b.buffered()) == 0 {
				return 0, nil, io.EOF
			}
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("log stream: reading frame header: %w", err)
	}
	// The buffer may move when the payload is read: decode the header now.
	var h [frameHeaderLen]byte
	copy(h[:], d.b.buffered())
	d.b.discard(frameHeaderLen)
	n := binary.BigEndian.Uint32(h[4:])
	// Docker always writes zeros in bytes 1-3; anything else means the
	// stream is not multiplexed (a TTY stream read in the wrong mode) or
	// the reader lost the frame boundaries.
	if h[1] != 0 || h[2] != 0 || h[3] != 0 {
		return 0, nil, fmt.Errorf("log stream: frame header %x: reserved bytes are not zero", h)
	}
	if n > MaxFrameBytes {
		return 0, nil, fmt.Errorf("log stream: frame header %x: payload length %d exceeds %d", h, n, MaxFrameBytes)
	}
	var stream pipeline.Stream
	switch h[0] {
	case byte(pipeline.Stdout):
		stream = pipeline.Stdout
	case byte(pipeline.Stderr):
		stream = pipeline.Stderr
	case streamSystemErr:
	default:
		return 0, nil, fmt.Errorf("log stream: frame header %x: unknown stream %d", h, h[0])
	}
	payload, err := d.payload(int(n))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("log stream: reading %d-byte frame payload: %w", n, err)
	}
	if h[0] == streamSystemErr {
		return 0, nil, &EngineError{Msg: string(trimNewline(payload))}
	}
	return stream, payload, nil
}

// payload reads n bytes, from the read buffer itself when they fit so
// that the steady state neither copies nor allocates. Larger frames, which
// Docker does not send (its pieces are 16 KiB), get a buffer of their own
// that is not kept.
func (d *Demuxer) payload(n int) ([]byte, error) {
	if n <= readBufferSize {
		if err := d.b.fill(n); err != nil {
			return nil, err
		}
		p := d.b.buffered()[:n:n]
		d.b.discard(n)
		return p, nil
	}
	buf := make([]byte, n)
	k := copy(buf, d.b.buffered())
	d.b.discard(k)
	if d.b.err != nil {
		return nil, d.b.err
	}
	if _, err := io.ReadFull(d.b.src, buf[k:]); err != nil {
		d.b.err = err
		return nil, err
	}
	return buf, nil
}

func trimNewline(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	return b
}
