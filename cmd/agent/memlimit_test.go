package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSoftMemoryLimitFollowsTheContainers(t *testing.T) {
	var n atomic.Int64
	n.Store(10)
	var mu sync.Mutex
	var set []int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		followMemoryLimit(ctx, 16<<20, func() int { return int(n.Load()) }, time.Millisecond, func(v int64) int64 {
			mu.Lock()
			set = append(set, v)
			mu.Unlock()
			return 0
		})
	}()
	waitFor := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			last := int64(-1)
			if len(set) > 0 {
				last = set[len(set)-1]
			}
			mu.Unlock()
			if last == want {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("limit never became %d (set: %v)", want, set)
	}
	waitFor(16<<20 + memoryHeadroom + 10*perContainerMemory)
	n.Store(2000)
	waitFor(16<<20 + memoryHeadroom + 2000*perContainerMemory)
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(set) != 2 {
		t.Errorf("the limit was set %d times for two counts of containers: %v", len(set), set)
	}
}
