package pipeline

import (
	"fmt"
	"testing"
	"time"
)

// TestCheckpointerForgetsDestroyedContainersForAWhile: a destroyed
// container is remembered long enough to ignore its late acks, and then
// dropped, so that churning containers do not grow the agent.
func TestCheckpointerForgetsDestroyedContainersForAWhile(t *testing.T) {
	c, err := OpenCheckpointer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c.Forget("old")
	c.mu.Lock()
	c.forgot["old"] = time.Now().Add(-forgetHorizon - time.Minute)
	c.mu.Unlock()
	for i := range 2 * pruneEvery {
		id := fmt.Sprintf("c%d", i)
		c.Ack([]LogRecord{{ContainerID: id, Time: time.Now(), Body: []byte("x")}})
		c.Forget(id)
		// A late acknowledgement of a destroyed container's record
		// brings no position back.
		c.Ack([]LogRecord{{ContainerID: id, Time: time.Now(), Body: []byte("late")}})
		if _, ok := c.Get(id); ok {
			t.Fatalf("%s came back from a late acknowledgement", id)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.forgot["old"]; ok {
		t.Error("a container forgotten over the horizon ago is still remembered")
	}
	if len(c.cursors) != 0 {
		t.Errorf("%d positions of destroyed containers kept", len(c.cursors))
	}
}

// TestCheckpointerPrune drops positions loaded from the file for containers
// that are gone, and keeps the others and this run's own.
func TestCheckpointerPrune(t *testing.T) {
	dir := t.TempDir()
	c, _ := OpenCheckpointer(dir)
	for _, id := range []string{"alive", "gone", "gone-but-acked"} {
		c.Ack([]LogRecord{{ContainerID: id, Time: time.Now(), Body: []byte("x")}})
	}
	c2, err := OpenCheckpointer(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Created after the caller listed the containers, and acked already.
	c2.Ack([]LogRecord{{ContainerID: "gone-but-acked", Time: time.Now().Add(time.Second), Body: []byte("y")}})
	c2.Prune(func(id string) bool { return id == "alive" })
	if _, ok := c2.Get("alive"); !ok {
		t.Error("a live container's position was pruned")
	}
	if _, ok := c2.Get("gone"); ok {
		t.Error("a destroyed container's position survived Prune")
	}
	if _, ok := c2.Get("gone-but-acked"); !ok {
		t.Error("a position acknowledged in this run was pruned")
	}
	if err := c2.Save(); err != nil {
		t.Fatal(err)
	}
	c3, _ := OpenCheckpointer(dir)
	if ids := c3.IDs(); len(ids) != 2 {
		t.Errorf("saved positions after Prune: %v", ids)
	}
}
