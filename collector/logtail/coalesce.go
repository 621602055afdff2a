package logtail

import (
	"io"
	"time"
)

// A short read from a log stream means the agent has caught up with
// dockerd, which writes and flushes every log frame on its own. Reading on
// at once would then cost a syscall and a goroutine wake-up per line, the
// agent's main cost when a container logs fast (and expensive on
// virtualised hosts). Waiting a moment lets frames pile up in the socket,
// so the next read returns many. The socket holds a few hundred frames,
// more than dockerd writes in coalesceWait even at its ~190k lines/s
// ceiling, so the wait does not cap the rate (measured with bench/logs).
const (
	coalesceBelow = 2 << 10 // half the HTTP transport's read buffer
	coalesceWait  = time.Millisecond
)

// coalescingReader delays the read after a short one by coalesceWait. The
// delay is also the most a line waits for it.
type coalescingReader struct {
	r     io.Reader
	short bool
}

func (c *coalescingReader) Read(p []byte) (int, error) {
	if c.short {
		time.Sleep(coalesceWait)
	}
	n, err := c.r.Read(p)
	c.short = n < coalesceBelow
	return n, err
}
