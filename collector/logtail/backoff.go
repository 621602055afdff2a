package logtail

import (
	"math/rand/v2"
	"time"
)

// backoff is a capped exponential backoff with ±20 % jitter, so that agents
// on many hosts do not reconnect to a restarted daemon's API in lockstep.
type backoff struct {
	initial, max, cur time.Duration
}

func newBackoff(initial, max time.Duration) *backoff {
	return &backoff{initial: initial, max: max}
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.initial
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(b.cur) * jitter)
}

func (b *backoff) reset() { b.cur = 0 }
