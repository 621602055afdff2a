package logtail

import (
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// Podman 4.3's follow stream does not only stop short when its container
// exits: just before it ends it can skip a stretch of lines and deliver a
// few later ones (seen here: frames 2,839-2,858 of a stream jumped from
// line 2,844 to 3,353, then the stream ended; the plain read had them
// all, in order). A resume from the last record read would pass over the
// skipped stretch. So on Podman the tailer remembers the prints of the
// records it read last (recentPrints), and the final plain read of a
// stopped container is matched against them record by record: what was
// read is dropped, whatever else is shipped.

// Recent prints kept: recheckWindow before the newest, at most
// recheckMax records (the stretches skipped were within the last ~40
// frames of a stream).
const (
	recheckWindow = 5 * time.Second
	recheckMax    = 32 << 10
)

// recentPrints is a ring of the prints of the records a tailer read last,
// in stream order.
type recentPrints struct {
	buf  []pipeline.RecordPrint
	head int
}

func (r *recentPrints) add(p pipeline.RecordPrint) {
	r.buf = append(r.buf, p)
	limit := p.TimeNanos - int64(recheckWindow)
	for r.head < len(r.buf) && (r.buf[r.head].TimeNanos < limit || len(r.buf)-r.head > recheckMax) {
		r.head++
	}
	if r.head > 1024 && r.head > len(r.buf)/2 {
		r.buf = r.buf[:copy(r.buf, r.buf[r.head:])]
		r.head = 0
	}
}

func (r *recentPrints) live() []pipeline.RecordPrint { return r.buf[r.head:] }

// since is where a re-read covering every remembered record starts: a
// microsecond before the oldest (see orderedSinceSlack), "" if none.
func (r *recentPrints) since() string {
	w := r.live()
	if len(w) == 0 {
		return ""
	}
	return sinceNanos(w[0].TimeNanos - orderedSinceSlack)
}

// newRecheck is the filter for the final plain read of a Podman container:
// the records before the oldest remembered one are dropped (read before
// it), then each remembered record once, as often as it was read; the
// records the follow stream skipped are kept.
func newRecheck(r *recentPrints) *Resume {
	w := r.live()
	known := make(map[pipeline.RecordPrint]int, len(w))
	for _, p := range w {
		known[p]++
	}
	return &Resume{known: known, remaining: len(w), first: w[0], skip: 1}
}

// keepRechecked is Keep for a recheck.
func (r *Resume) keepRechecked(p pipeline.RecordPrint) bool {
	if !r.decided {
		if p != r.first && p.TimeNanos <= r.first.TimeNanos && r.seeking < maxSeekFirst {
			r.seeking++
			return false
		}
		r.decided = true
	}
	if n := r.known[p]; n > 0 {
		if n == 1 {
			delete(r.known, p)
		} else {
			r.known[p] = n - 1
		}
		r.remaining--
		if r.remaining == 0 {
			r.skip = 0
		}
		return false
	}
	r.Recovered++
	return true
}
