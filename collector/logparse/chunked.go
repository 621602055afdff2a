package logparse

import (
	"errors"
	"fmt"
	"io"
)

// maxChunkLineBytes bounds a chunk-size line (size, extensions) and each
// trailer line: dockerd writes a few hex digits, so a longer line means
// the stream is not chunked as expected.
const maxChunkLineBytes = 4000

// ChunkedReader decodes an HTTP/1.1 chunked body. It reads the raw stream
// straight into the caller's buffer and moves the chunk payloads to its
// front, so that a follow stream, where dockerd writes one small chunk per
// log message, costs one read per buffer rather than the several reads and
// per-chunk copies of net/http's 4 KiB buffered reader. It returns io.EOF
// only after the last chunk and the trailer; a stream that ends anywhere
// else is cut, io.ErrUnexpectedEOF.
type ChunkedReader struct {
	src   io.Reader
	pre   []byte // raw bytes already read from src, decoded first
	state chunkState
	size  uint64 // chunk size parsed so far
	left  uint64 // payload bytes left in the current chunk
	line  int    // bytes of the current size or trailer line
	err   error  // sticky
}

type chunkState uint8

const (
	chunkSize      chunkState = iota // hex digits of the chunk size
	chunkSpace                       // blanks after the size
	chunkExt                         // a ";" extension
	chunkSizeLF                      // "\n" ending the size line
	chunkData                        // payload
	chunkDataCR                      // "\r" after the payload
	chunkDataLF                      // "\n" after the payload
	chunkTrailer                     // a trailer line, or the empty line ending the body
	chunkTrailerLF                   // "\n" of an empty trailer line
	chunkDone
)

// NewChunkedReader returns a ChunkedReader of the body read from src,
// starting with pre: the bytes after the response header that were read
// along with it. pre is used in place.
func NewChunkedReader(src io.Reader, pre []byte) *ChunkedReader {
	return &ChunkedReader{src: src, pre: pre}
}

// Read fills p with payload bytes. It reads from the source at most once
// per call that has payload to return, so that a caller is never held
// waiting while it could process what arrived.
func (c *ChunkedReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for c.err == nil {
		var n int
		var err error
		if len(c.pre) > 0 {
			n = copy(p, c.pre)
			c.pre = c.pre[n:]
		} else {
			n, err = c.src.Read(p)
		}
		if n == 0 && err == nil {
			// The source declined to wait with this buffer (see
			// IdleReadBytes): the caller asks again.
			return 0, nil
		}
		out, derr := c.decode(p[:n])
		switch {
		case derr != nil:
			c.err = derr
		case c.state == chunkDone:
			c.err = io.EOF
		case err != nil:
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			c.err = fmt.Errorf("log stream: reading chunked body: %w", err)
		}
		if out > 0 {
			return out, nil
		}
	}
	return 0, c.err
}

// decode turns raw bytes into payload in place and returns its length.
func (c *ChunkedReader) decode(b []byte) (int, error) {
	w := 0
	for i := 0; i < len(b); {
		switch c.state {
		case chunkData:
			k := min(uint64(len(b)-i), c.left)
			w += copy(b[w:], b[i:i+int(k)])
			i += int(k)
			if c.left -= k; c.left == 0 {
				c.state = chunkDataCR
			}
			continue
		case chunkDone:
			// Bytes after the body belong to no one: the connection is
			// not reused.
			return w, nil
		}
		ch := b[i]
		i++
		switch c.state {
		case chunkSize:
			// What net/http accepts: hex digits, then a ";" extension
			// or blanks, then CRLF.
			d, ok := hexDigit(ch)
			switch {
			case ok && c.line < 16:
				c.size = c.size<<4 | uint64(d)
				c.line++
			case ok:
				return w, errors.New("log stream: chunk size too large")
			case c.line == 0:
				return w, fmt.Errorf("log stream: malformed chunk size line (byte %q)", ch)
			case ch == '\r':
				c.state = chunkSizeLF
			case ch == ';':
				c.state = chunkExt
			case ch == ' ' || ch == '\t':
				c.state = chunkSpace
			default:
				return w, fmt.Errorf("log stream: malformed chunk size line (byte %q)", ch)
			}
		case chunkSpace, chunkExt:
			switch {
			case ch == '\r':
				c.state = chunkSizeLF
			case ch == '\n' || c.state == chunkSpace && ch != ' ' && ch != '\t':
				return w, fmt.Errorf("log stream: malformed chunk size line (byte %q)", ch)
			default:
				if c.line++; c.line > maxChunkLineBytes {
					return w, errors.New("log stream: chunk size line too long")
				}
			}
		case chunkSizeLF:
			if ch != '\n' {
				return w, errors.New("log stream: chunk size line not ended by CRLF")
			}
			c.endSizeLine()
		case chunkDataCR:
			if ch != '\r' {
				return w, errors.New("log stream: chunk payload not followed by CRLF")
			}
			c.state = chunkDataLF
		case chunkDataLF:
			if ch != '\n' {
				return w, errors.New("log stream: chunk payload not followed by CRLF")
			}
			c.state = chunkSize
		case chunkTrailer:
			switch {
			case ch == '\n' && c.line == 0:
				c.state = chunkDone
			case ch == '\n':
				c.line = 0
			case ch == '\r' && c.line == 0:
				c.state = chunkTrailerLF
			default:
				if c.line++; c.line > maxChunkLineBytes {
					return w, errors.New("log stream: chunked trailer line too long")
				}
			}
		case chunkTrailerLF:
			if ch != '\n' {
				return w, errors.New("log stream: malformed end of chunked body")
			}
			c.state = chunkDone
		}
	}
	return w, nil
}

func (c *ChunkedReader) endSizeLine() {
	c.left, c.size, c.line = c.size, 0, 0
	c.state = chunkData
	if c.left == 0 {
		c.state = chunkTrailer // the last chunk
	}
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
