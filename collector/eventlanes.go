package collector

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
)

// eventLanes hands events to a few workers, each container's events to the
// same worker in the order they came. Handling an event costs an inspect,
// which dockerd makes wait while it starts or removes that container: one
// handler in turn fell tens of seconds behind a busy daemon, and a
// container removed before its events were handled was never read.
//
// While a worker finds more events of a container queued behind the one it
// took, it holds them back and hands over all of them with the last: one
// inspect then serves a create, start and die that arrived together.
type eventLanes struct {
	lanes  []*lane
	seed   maphash.Seed
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

type lane struct {
	ch chan events.Message

	mu     sync.Mutex
	queued map[string]int // events sent to ch and not taken yet, per container
}

// laneDepth bounds each lane; a full lane makes the dispatcher wait, and
// the event reader's own queue (which counts what it drops) fills instead.
const laneDepth = 256

// newEventLanes starts n workers that call handle with each container's
// events, oldest first, in batches. They run until close is called and
// their lanes are drained; handle gets a context that ends with ctx or
// when close gives up waiting, and should then give up early.
func newEventLanes(ctx context.Context, n int, handle func(context.Context, []events.Message)) *eventLanes {
	ctx, cancel := context.WithCancel(ctx)
	l := &eventLanes{seed: maphash.MakeSeed(), cancel: cancel}
	for range n {
		ln := &lane{ch: make(chan events.Message, laneDepth), queued: map[string]int{}}
		l.lanes = append(l.lanes, ln)
		l.wg.Go(func() { ln.work(ctx, handle) })
	}
	return l
}

// dispatch queues m on its container's lane. It waits while that lane is
// full and reports false if ctx ended first.
func (l *eventLanes) dispatch(ctx context.Context, m events.Message) bool {
	ln := l.laneOf(m.Actor.ID)
	ln.mu.Lock()
	ln.queued[m.Actor.ID]++
	ln.mu.Unlock()
	select {
	case ln.ch <- m:
		return true
	case <-ctx.Done():
		ln.taken(m.Actor.ID)
		return false
	}
}

func (l *eventLanes) laneOf(id string) *lane {
	return l.lanes[maphash.String(l.seed, id)%uint64(len(l.lanes))]
}

// close lets the workers finish what was dispatched and waits for them;
// after grace it cancels what they still do (a daemon that stopped
// answering would otherwise hold each inspect for its full timeout).
func (l *eventLanes) close(grace time.Duration) {
	for _, ln := range l.lanes {
		close(ln.ch)
	}
	done := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		l.cancel()
		<-done
	}
	l.cancel()
}

// taken counts one event of id off the lane and reports how many more of
// id's events are queued behind it.
func (ln *lane) taken(id string) int {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	ln.queued[id]--
	left := ln.queued[id]
	if left <= 0 {
		delete(ln.queued, id)
	}
	return left
}

func (ln *lane) work(ctx context.Context, handle func(context.Context, []events.Message)) {
	held := map[string][]events.Message{}
	for m := range ln.ch {
		id := m.Actor.ID
		batch := append(held[id], m)
		if ln.taken(id) > 0 {
			held[id] = batch
			continue
		}
		delete(held, id)
		handle(ctx, batch)
	}
	// Only a dispatch that gave up leaves events held.
	for _, batch := range held {
		handle(ctx, batch)
	}
}
