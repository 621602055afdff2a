// Package backoff is the collector's one retry delay: the session's
// reconnects and the log tail's reopens.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff is a capped exponential backoff with ±20 % jitter, so that agents
// on many hosts do not reconnect to a restarted daemon's API in lockstep.
type Backoff struct {
	initial, max, cur time.Duration
}

// New returns a backoff starting at initial and capped at max.
func New(initial, max time.Duration) *Backoff {
	return &Backoff{initial: initial, max: max}
}

// Next returns the next delay.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.initial
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(b.cur) * jitter)
}

// Reset starts again from the initial delay.
func (b *Backoff) Reset() { b.cur = 0 }
