package logtail

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// blockingReader returns data while it has some, then blocks until its
// context ends, like a follow stream dockerd stopped writing to.
type blockingReader struct {
	ctx   context.Context
	reads int
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if r.reads < 2 {
		r.reads++
		return copy(p, "line\n"), nil
	}
	<-r.ctx.Done()
	return 0, io.EOF
}

// TestBatchingReaderEndsAStallAfterBackpressure: a stream is left alone
// while the queue has room, and ended once it goes silent after the queue
// held the tailer up.
func TestBatchingReaderEndsAStallAfterBackpressure(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	held := false
	b := &batchingReader{r: &blockingReader{ctx: ctx}, stop: stop, flush: func() error {
		if held {
			time.Sleep(heldUpAfter + 100*time.Millisecond) // the queue was full
		}
		return nil
	}}
	buf := make([]byte, 64)
	if n, err := b.Read(buf); n == 0 || err != nil {
		t.Fatalf("first read = %d, %v", n, err)
	}
	held = true
	if n, err := b.Read(buf); n == 0 || err != nil {
		t.Fatalf("read after a wait for the queue = %d, %v", n, err)
	}
	held = false
	began := time.Now()
	_, err := b.Read(buf)
	if !errors.Is(err, errStalled) {
		t.Fatalf("silent stream after backpressure: err = %v, want errStalled", err)
	}
	if d := time.Since(began); d < stallAfter || d > stallAfter+time.Second {
		t.Errorf("stall declared after %v, want about %v", d, stallAfter)
	}
	if ctx.Err() == nil {
		t.Error("the stream's context was not ended")
	}
}

// TestBatchingReaderLeavesQuietStreamsAlone: without backpressure a silent
// stream is an idle container, not a stall.
func TestBatchingReaderLeavesQuietStreamsAlone(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	stalled := make(chan struct{})
	b := &batchingReader{r: &blockingReader{ctx: ctx, reads: 2}, stop: func() { close(stalled) }, flush: func() error { return nil }}
	done := make(chan error, 1)
	go func() {
		_, err := b.Read(make([]byte, 64))
		done <- err
	}()
	select {
	case <-stalled:
		t.Fatal("a quiet stream was ended without backpressure")
	case <-time.After(stallAfter + 500*time.Millisecond):
	}
	stop()
	if err := <-done; err != io.EOF {
		t.Fatalf("read = %v, want EOF after the context ended", err)
	}
}
