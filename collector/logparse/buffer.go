package logparse

import (
	"errors"
	"io"
	"sync"
	"time"
)

const (
	// readBufferSize is the read buffer of a stream with data in flight:
	// several Docker pieces (16 KiB + prefix) fit, so frames are returned
	// straight from it without a copy, and a busy stream costs one read
	// per 64 KiB.
	readBufferSize = 64 << 10

	// IdleReadBytes is the read buffer of a stream between bursts. A
	// followed container spends most of its life blocked in a read that
	// returns nothing for minutes; holding 64 KiB there cost 64 MiB at
	// 1,000 idle containers. A short line (a frame of ~110 bytes) still
	// fits whole, so a quiet container never takes a large buffer.
	//
	// A source that has nothing to return to a read into a larger buffer
	// may return 0, nil instead of waiting, once per wait: the Demuxer
	// and TTYSplitter then give the large buffer back and wait in a read
	// of IdleReadBytes. Without that, a stream that goes quiet right
	// after a burst holds its large buffer until its next line.
	IdleReadBytes  = 512
	idleBufferSize = IdleReadBytes
)

// quietRead is how long a read must wait before the stream counts as
// quiet; a flowing stream's reads come every few milliseconds.
const quietRead = 50 * time.Millisecond

// readBuffers are the 64 KiB buffers of the streams with data in flight.
var readBuffers = sync.Pool{New: func() any {
	b := make([]byte, readBufferSize)
	return &b
}}

// streamBuf is the buffered reader of a Demuxer or TTYSplitter. It reads
// into a small buffer of its own while the stream is quiet and takes a
// 64 KiB buffer from readBuffers while it flows (reads return at once) or
// a frame needs more than the small one holds; it gives that back, before
// the next read, when everything read was used and the stream went quiet.
// How full a read came back says nothing: a chunked body is decoded in
// place, so a read that filled the buffer returns less.
type streamBuf struct {
	src   io.Reader
	small [idleBufferSize]byte
	big   *[]byte // from readBuffers, or nil
	buf   []byte  // small[:] or *big
	r, w  int     // unread bytes are buf[r:w]
	// more: the last read brought bytes without waiting for them
	// (quietRead): the stream flows, and is read into the large buffer.
	// A read that waited, or that the source declined (0, nil), says it
	// has gone quiet: the next waits with the small one.
	more bool
	err  error // the source's error, returned once the buffered bytes are used
}

// maxEmptyReads bounds reads returning neither bytes nor an error, as
// bufio does.
const maxEmptyReads = 100

var errInvalidRead = errors.New("log stream: reader returned an invalid count")

func (b *streamBuf) reset(src io.Reader) {
	b.release()
	b.src, b.r, b.w, b.more, b.err = src, 0, 0, false, nil
}

// buffered returns the unread bytes; they stay valid until the next fill.
func (b *streamBuf) buffered() []byte { return b.buf[b.r:b.w] }

func (b *streamBuf) discard(n int) { b.r += n }

// fill reads until at least need (≤ readBufferSize) bytes are buffered
// contiguously, or the source fails. Bytes returned by buffered before are
// invalid afterwards.
func (b *streamBuf) fill(need int) error {
	if b.buf == nil {
		b.buf = b.small[:]
	}
	for empty := 0; b.w-b.r < need; {
		if b.err != nil {
			return b.err
		}
		if b.r == b.w {
			b.r, b.w = 0, 0
			if !b.more {
				b.release()
			}
		}
		if b.big == nil && (need > len(b.small) || b.more) {
			b.grow()
		}
		if b.r > 0 {
			// The read gets all the room there is: a chunked body is
			// decoded in place, so a read into a small tail would bring
			// ever smaller pieces.
			b.w = copy(b.buf, b.buf[b.r:b.w])
			b.r = 0
		}
		began := time.Now()
		n, err := b.src.Read(b.buf[b.w:])
		waited := time.Since(began) >= quietRead
		if n < 0 || n > len(b.buf)-b.w {
			n, err = 0, errInvalidRead
		}
		b.w += n
		b.more = n > 0 && !waited
		switch {
		case err != nil:
			b.err = err
		case n > 0:
			empty = 0
		default:
			if empty++; empty >= maxEmptyReads {
				b.err = io.ErrNoProgress
			}
		}
	}
	return nil
}

// grow moves the unread bytes into a 64 KiB buffer.
func (b *streamBuf) grow() {
	big := readBuffers.Get().(*[]byte)
	b.w = copy(*big, b.buf[b.r:b.w])
	b.r = 0
	b.big, b.buf = big, *big
}

// release gives the 64 KiB buffer back; only when nothing unread is in it.
func (b *streamBuf) release() {
	if b.big != nil {
		readBuffers.Put(b.big)
		b.big = nil
	}
	b.buf = b.small[:]
}
