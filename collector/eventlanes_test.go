package collector

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
)

func ev(id, action string) events.Message {
	return events.Message{Action: events.Action(action), Actor: events.Actor{ID: id}}
}

func actions(batch []events.Message) []string {
	var s []string
	for _, m := range batch {
		s = append(s, string(m.Action))
	}
	return s
}

// Every event is handled once, and each container's in the order sent,
// however the handlers interleave.
func TestEventLanesKeepEachContainersOrder(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]string{}
	lanes := newEventLanes(t.Context(), 4, func(_ context.Context, batch []events.Message) {
		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			if m.Actor.ID != batch[0].Actor.ID {
				t.Errorf("a batch mixes containers: %v and %v", batch[0].Actor.ID, m.Actor.ID)
			}
			got[m.Actor.ID] = append(got[m.Actor.ID], string(m.Action))
		}
	})
	want := map[string][]string{}
	for i := range 5000 {
		id := fmt.Sprintf("c%d", rand.IntN(50))
		action := fmt.Sprint(i)
		want[id] = append(want[id], action)
		if !lanes.dispatch(t.Context(), ev(id, action)) {
			t.Fatal("dispatch gave up")
		}
	}
	lanes.close(time.Minute)
	for id, w := range want {
		if !slices.Equal(got[id], w) {
			t.Errorf("%s: handled %d events %v…, want %d", id, len(got[id]), got[id][:min(5, len(got[id]))], len(w))
		}
	}
}

// busyLane is one lane whose handler records each batch's actions (read
// them after close) and waits for release on the container "busy".
func busyLane(t *testing.T, release chan struct{}) (*eventLanes, *[][]string) {
	var batches [][]string
	lanes := newEventLanes(t.Context(), 1, func(_ context.Context, batch []events.Message) {
		if batch[0].Actor.ID == "busy" {
			<-release
		}
		batches = append(batches, actions(batch))
	})
	return lanes, &batches
}

// Events of a container that queue up while its lane is busy are handed
// over together, so one inspect serves them all.
func TestEventLanesBatchWhatQueuedUp(t *testing.T) {
	release := make(chan struct{})
	lanes, batches := busyLane(t, release)
	lanes.dispatch(t.Context(), ev("busy", "start"))
	for _, a := range []string{"create", "start", "die"} {
		lanes.dispatch(t.Context(), ev("short", a))
	}
	lanes.dispatch(t.Context(), ev("other", "start"))
	close(release)
	lanes.close(time.Minute)
	want := [][]string{{"start"}, {"create", "start", "die"}, {"start"}}
	if !slices.EqualFunc(*batches, want, slices.Equal) {
		t.Errorf("batches = %v, want %v", *batches, want)
	}
}

// A container whose handler waits (dockerd holds its lock) does not hold
// up the containers of other lanes.
func TestEventLanesHandleContainersConcurrently(t *testing.T) {
	release := make(chan struct{})
	handled := make(chan string, 10)
	lanes := newEventLanes(t.Context(), 8, func(_ context.Context, batch []events.Message) {
		if batch[0].Actor.ID == "slow" {
			<-release
		}
		handled <- batch[0].Actor.ID
	})
	defer lanes.close(time.Minute)
	defer close(release)
	other := "other"
	for i := 0; lanes.laneOf(other) == lanes.laneOf("slow"); i++ {
		other = fmt.Sprintf("other%d", i)
	}
	lanes.dispatch(t.Context(), ev("slow", "start"))
	lanes.dispatch(t.Context(), ev(other, "start"))
	select {
	case id := <-handled:
		if id != other {
			t.Fatalf("handled %s first", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a slow container held up another lane")
	}
}

// A dispatch into a full lane gives up when its context ends, and what
// the worker held back for it is still handled at close.
func TestEventLanesDispatchGivesUpOnCancel(t *testing.T) {
	release := make(chan struct{})
	lanes, batches := busyLane(t, release)
	lanes.dispatch(t.Context(), ev("busy", "start"))
	for range laneDepth {
		lanes.dispatch(t.Context(), ev("c", "start"))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if lanes.dispatch(ctx, ev("c", "die")) {
		t.Fatal("dispatch into a full lane with a cancelled context succeeded")
	}
	close(release)
	lanes.close(time.Minute)
	n := 0
	for _, b := range *batches {
		n += len(b)
	}
	if n != 1+laneDepth || !slices.Equal((*batches)[0], []string{"start"}) {
		t.Errorf("handled %d events in %d batches, want %d", n, len(*batches), 1+laneDepth)
	}
}

// close stops waiting for handlers after its grace period: their context
// ends, and close returns once they gave up.
func TestEventLanesCloseCancelsAfterGrace(t *testing.T) {
	lanes := newEventLanes(t.Context(), 2, func(ctx context.Context, _ []events.Message) {
		<-ctx.Done() // a daemon that never answers
	})
	lanes.dispatch(t.Context(), ev("a", "start"))
	t0 := time.Now()
	lanes.close(200 * time.Millisecond)
	if took := time.Since(t0); took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("close took %v with a grace of 200ms", took)
	}
}
