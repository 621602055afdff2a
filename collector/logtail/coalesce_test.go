package logtail

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

func TestCoalescingReaderWaitsOnlyAfterShortReads(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 4*coalesceBelow)
	// OneByteReader makes every read short.
	short := &coalescingReader{r: iotest.OneByteReader(bytes.NewReader([]byte("abc")))}
	t0 := time.Now()
	got, err := io.ReadAll(short)
	if err != nil || string(got) != "abc" {
		t.Fatalf("read %q, %v", got, err)
	}
	// Three short reads then EOF: three waits.
	if took := time.Since(t0); took < 3*coalesceWait {
		t.Errorf("short reads were not spaced: %v for 4 reads", took)
	}

	long := &coalescingReader{r: bytes.NewReader(big)}
	buf := make([]byte, coalesceBelow)
	for range 4 {
		if n, err := long.Read(buf); n != coalesceBelow || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
		if long.short {
			t.Fatal("a full read was taken for a short one")
		}
	}
}
