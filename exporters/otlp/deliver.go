package otlp

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// outcome is what became of one request.
type outcome int

const (
	delivered   outcome = iota // the backend took it (perhaps in part: partialSuccess)
	refused                    // malformed, or failed with retry off: drop the data
	tooLarge                   // refused for its size: split it
	interrupted                // ctx ended, or retry gave up: the data was not sent
)

// deliverer sends requests with the retry policy both signals share: retry
// whatever can heal with capped exponential backoff, honour the backend's
// Retry-After / RetryInfo up to retry.max_interval, and leave the decision
// about what cannot be sent (drop, split, keep) to the caller.
type deliverer struct {
	sender sender
	retry  config.RetryConfig
	// giveUp stops retrying one request after this long; 0 never does.
	giveUp time.Duration
	tel    *pipeline.Telemetry
	logger *slog.Logger
	what   string // "log", "metric": for messages
	// finishAttempts lets an attempt under way finish when ctx ends (a
	// reload, a stop), bounded by the sender's own timeout
	// (exporters.otlp.timeout); ctx then only stops further attempts. For
	// logs: the backend may already have taken an aborted request, whose
	// records would be sent again, delivered twice. Metrics are cut at
	// their round's end instead: a repeated data point is harmless.
	finishAttempts bool

	failing     bool      // since the last delivery
	failingLogs *throttle // the "failing; retrying" warning
}

func newDeliverer(s sender, retry config.RetryConfig, giveUp time.Duration, tel *pipeline.Telemetry, logger *slog.Logger, what string) *deliverer {
	return &deliverer{sender: s, retry: retry, giveUp: giveUp, tel: tel, logger: logger, what: what, failingLogs: newThrottle(logInterval)}
}

// finishingAttempts makes d let an attempt under way finish when its ctx
// ends (see finishAttempts).
func (d *deliverer) finishingAttempts() *deliverer {
	d.finishAttempts = true
	return d
}

// deliver sends req until the backend takes it, refuses it for good or
// for its size, or ctx ends. The error is the last one seen.
func (d *deliverer) deliver(ctx context.Context, req []byte) (outcome, partialSuccess, error) {
	wait := d.retry.InitialInterval
	start := time.Now()
	for {
		attemptCtx := ctx
		if d.finishAttempts {
			attemptCtx = context.WithoutCancel(ctx)
		}
		ps, err := d.sender.send(attemptCtx, req)
		if err == nil {
			if d.failing {
				d.logger.Info("OTLP "+d.what+" export recovered", "target", d.sender.describe())
				d.failing = false
			}
			return delivered, ps, nil
		}
		d.tel.ExportFailures.Add(1)
		if ctx.Err() != nil {
			return interrupted, ps, err
		}
		var tl *tooLargeError
		if errors.As(err, &tl) {
			return tooLarge, ps, err
		}
		var re *retryableError
		if !errors.As(err, &re) || !d.retry.Enabled {
			return refused, ps, err
		}
		if d.giveUp > 0 && time.Since(start) >= d.giveUp {
			return interrupted, ps, err
		}
		if !d.failing {
			d.failing = true
			d.failingLogs.do(func(suppressed int) {
				d.logger.Warn("OTLP "+d.what+" export failing; retrying with backoff", "target", d.sender.describe(),
					"err", err, "earlier_failures_not_logged", suppressed)
			})
		}
		delay := retryDelay(wait, re.after, d.retry.MaxInterval)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return interrupted, ps, err
		case <-timer.C:
		}
		// A delay the backend chose is not a step of our backoff: the
		// next refusal without one starts where the backoff was.
		if re.after == 0 {
			wait = min(wait*2, d.retry.MaxInterval)
		}
	}
}

// retryDelay is the backoff step with ±20 % jitter, or the delay the
// backend asked for, never longer than maxInterval: one Retry-After of a
// day must not stop shipping for a day.
func retryDelay(wait, after, maxInterval time.Duration) time.Duration {
	d := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
	if after > 0 {
		d = after
	}
	return max(min(d, maxInterval), 0)
}

// logInterval is how often a repeated problem is logged.
const logInterval = time.Minute

// throttle runs a logging function at most once per interval, telling it
// how many calls were skipped since the last one.
type throttle struct {
	mu         sync.Mutex
	every      time.Duration
	last       time.Time
	suppressed int
}

func newThrottle(every time.Duration) *throttle { return &throttle{every: every} }

func (t *throttle) do(log func(suppressed int)) {
	t.mu.Lock()
	now := time.Now()
	if !t.last.IsZero() && now.Sub(t.last) < t.every {
		t.suppressed++
		t.mu.Unlock()
		return
	}
	n := t.suppressed
	t.last, t.suppressed = now, 0
	t.mu.Unlock()
	log(n)
}
