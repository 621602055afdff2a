//go:build unix

package pipeline

import (
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// hostCheckpointer is a Checkpointer of a host with n containers, each
// with a window of 20 acknowledged records, its snapshot written.
func hostCheckpointer(b *testing.B, n int) (*Checkpointer, *Telemetry) {
	c, err := OpenCheckpointer(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	tel := NewTelemetry()
	c.ReportTo(slog.New(slog.NewTextHandler(io.Discard, nil)), tel)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		id := fmt.Sprintf("%064x", i)
		for k := range 20 {
			c.cursor(id).Advance(RecordPrint{TimeNanos: base.Add(time.Duration(k) * time.Millisecond).UnixNano(), Stream: Stdout, Hash: uint64(k + 1)})
		}
	}
	c.dirty = true
	if err := c.Save(); err != nil {
		b.Fatal(err)
	}
	return c, tel
}

// BenchmarkCheckpointerSaveWith5000Containers: one op is one acknowledged
// batch touching `changed` containers, saved (journal append and fsync)
// before Ack returns, on a host of 5,000 containers. It reports the CPU
// per save (user + system, whole process), the bytes the save wrote,
// those bytes with the snapshot rewrites amortized in (one per
// compactFactor snapshots of journal), and what that makes in a day at one
// acknowledged batch a second. Before the journal, every save rewrote the
// whole 1.3 MB file: 12 ms of CPU (34-49 ms with the fsync), ~110 GB a day.
func BenchmarkCheckpointerSaveWith5000Containers(b *testing.B) {
	const containers = 5000
	for _, changed := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("changed=%d", changed), func(b *testing.B) {
			c, tel := hostCheckpointer(b, containers)
			c.compactMin = 1 << 40 // measured apart, below
			base := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
			batch := make([]LogRecord, changed)
			bytes0, cpu0 := tel.CheckpointBytesWritten.Load(), cpuTime(b)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				for k := range batch {
					batch[k] = LogRecord{ContainerID: fmt.Sprintf("%064x", (i*changed+k)%containers), Time: base.Add(time.Duration(i) * time.Millisecond), Stream: Stdout, Body: []byte("x"), Hash: uint64(i + 1)}
				}
				if err := c.Ack(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu := cpuTime(b) - cpu0
			if f := tel.CheckpointSaveFailures.Load(); f > 0 {
				b.Fatalf("%d saves failed", f)
			}
			perSave := float64(tel.CheckpointBytesWritten.Load()-bytes0) / float64(b.N)

			// One compaction (snapshot and new journal), due once the
			// journal holds compactFactor snapshots: its cost is shared
			// by the saves that filled the journal.
			c.mu.Lock()
			c.dirty = true
			c.mu.Unlock()
			bytes1, cpu1 := tel.CheckpointBytesWritten.Load(), cpuTime(b)
			if err := c.Save(); err != nil {
				b.Fatal(err)
			}
			compactCPU, snapshot := cpuTime(b)-cpu1, float64(tel.CheckpointBytesWritten.Load()-bytes1)
			savesPerCompaction := compactFactor * snapshot / perSave

			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/save")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)+float64(compactCPU.Microseconds())/savesPerCompaction, "amortized-cpu-µs/save")
			b.ReportMetric(perSave, "B/save")
			amortized := perSave + snapshot/savesPerCompaction
			b.ReportMetric(amortized*86400/1e6, "MB/day@1save/s")
			b.ReportMetric(snapshot, "B/compaction")
			b.ReportMetric(float64(compactCPU.Microseconds()), "cpu-µs/compaction")
		})
	}
}
