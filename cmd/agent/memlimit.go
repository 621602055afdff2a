package main

import (
	"context"
	"time"
)

// perContainerMemory is what the agent may hold for each container it
// knows beyond the log buffer: the store's entry, an idle log tailer (its
// goroutine and read state, ≤ 24 KiB), the read and acknowledged log
// cursors, and the kept cgroup stat files. Measured growth at 50–500
// containers was about 57 KiB of RSS per container, stats included.
const perContainerMemory = 64 << 10

// softMemoryLimit is the Go runtime's soft memory limit for a log buffer of
// bufferBytes and that many containers: a full log buffer is live data, and
// the GC's default pacing lets the heap grow to twice the live data, so
// without a limit a long backend outage doubles the agent's memory. The
// limit grows with the host, so that a host of thousands of containers does
// not make the GC run continuously against a bound sized for a few hundred.
func softMemoryLimit(bufferBytes int64, containers int) int64 {
	return bufferBytes + memoryHeadroom + int64(containers)*perContainerMemory
}

// memoryLimitEvery is how often the limit follows the number of containers.
const memoryLimitEvery = 10 * time.Second

// followMemoryLimit sets the soft memory limit now and again every
// interval, as containers come and go, until ctx ends. set is
// debug.SetMemoryLimit outside tests.
func followMemoryLimit(ctx context.Context, bufferBytes int64, containers func() int, every time.Duration, set func(int64) int64) {
	last := int64(-1)
	apply := func() {
		if limit := softMemoryLimit(bufferBytes, containers()); limit != last {
			set(limit)
			last = limit
		}
	}
	apply()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			apply()
		}
	}
}
