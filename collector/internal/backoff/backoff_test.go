package backoff

import (
	"testing"
	"time"
)

func TestBackoffIsCappedAndGrows(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	prev := time.Duration(0)
	for i := range 10 {
		d := b.Next()
		if d > 1200*time.Millisecond {
			t.Fatalf("attempt %d: %v exceeds the cap plus jitter", i, d)
		}
		if i < 3 && d <= prev*8/10 {
			t.Fatalf("attempt %d: %v did not grow from %v", i, d, prev)
		}
		prev = d
	}
	b.Reset()
	if d := b.Next(); d > 120*time.Millisecond {
		t.Fatalf("after reset: %v, want about the initial 100ms", d)
	}
}
