package pipeline

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func rec(i int, body string) LogRecord {
	return LogRecord{ContainerID: "c", Body: []byte(fmt.Sprintf("%d %s", i, body))}
}

func TestLogQueueFIFOAndBatchBounds(t *testing.T) {
	var c StageCounters
	q := NewLogQueue(1<<20, Block, &c)
	ctx := context.Background()
	for i := range 10 {
		if ok, err := q.Push(ctx, rec(i, "x")); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	b := q.PopBatch(ctx, nil, 4, 1<<20, 0)
	if len(b) != 4 || string(b[0].Body) != "0 x" || string(b[3].Body) != "3 x" {
		t.Fatalf("first batch = %d records starting %q", len(b), b[0].Body)
	}
	// A byte bound of two records' size yields two.
	two := 2 * RecordSize(&b[0])
	if b := q.PopBatch(ctx, nil, 100, two, 0); len(b) != 2 || string(b[0].Body) != "4 x" {
		t.Fatalf("byte-bounded batch = %d records", len(b))
	}
	if q.Len() != 4 || c.In.Load() != 10 {
		t.Fatalf("len %d, in %d", q.Len(), c.In.Load())
	}
}

func TestLogQueueLingerWaitsForMore(t *testing.T) {
	q := NewLogQueue(1<<20, Block, new(StageCounters))
	ctx := context.Background()
	q.Push(ctx, rec(0, ""))
	go func() {
		time.Sleep(20 * time.Millisecond)
		q.Push(ctx, rec(1, ""))
		q.Push(ctx, rec(2, ""))
	}()
	t0 := time.Now()
	b := q.PopBatch(ctx, nil, 3, 1<<20, 2*time.Second)
	if len(b) != 3 {
		t.Fatalf("linger returned %d records, want the 3 that arrived", len(b))
	}
	// The record that completes the batch wakes the lingering exporter.
	if took := time.Since(t0); took > time.Second {
		t.Fatalf("a full batch was returned after %v, not when it filled", took)
	}
	// So does the record that reaches the byte bound.
	go func() {
		time.Sleep(20 * time.Millisecond)
		q.Push(ctx, rec(10, "a long enough body"))
	}()
	t0 = time.Now()
	q.Push(ctx, rec(9, ""))
	if b := q.PopBatch(ctx, nil, 100, RecordSize(&LogRecord{Body: []byte("9 ")})+1, 2*time.Second); len(b) != 1 || time.Since(t0) > time.Second {
		t.Fatalf("byte-bounded linger: %d records after %v", len(b), time.Since(t0))
	}
	q.PopBatch(ctx, nil, 100, 1<<20, 0)
	start := time.Now()
	q.Push(ctx, rec(3, ""))
	if b := q.PopBatch(ctx, nil, 3, 1<<20, 50*time.Millisecond); len(b) != 1 || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("an unfilled batch must wait out its linger: %d records after %v", len(b), time.Since(start))
	}
}

func TestLogQueueBlocksWhenFullAndResumes(t *testing.T) {
	var c StageCounters
	r := rec(0, "0123456789")
	q := NewLogQueue(3*RecordSize(&r), Block, &c)
	ctx := context.Background()
	for i := range 3 {
		q.Push(ctx, rec(i, "0123456789"))
	}
	pushed := make(chan struct{})
	var wg sync.WaitGroup
	// Several blocked readers must all get through as room appears.
	for i := range 3 {
		wg.Go(func() { q.Push(ctx, rec(10+i, "0123456789")) })
	}
	go func() { wg.Wait(); close(pushed) }()
	select {
	case <-pushed:
		t.Fatal("Push did not block on a full queue")
	case <-time.After(50 * time.Millisecond):
	}
	if q.Bytes() > 3*RecordSize(&r) {
		t.Fatalf("queue holds %d bytes over its bound", q.Bytes())
	}
	got := 0
	for got < 6 {
		got += len(q.PopBatch(ctx, nil, 1, 1<<20, 0))
	}
	select {
	case <-pushed:
	case <-time.After(2 * time.Second):
		t.Fatal("blocked readers were not all woken")
	}
	if c.Dropped.Load() != 0 {
		t.Fatal("block policy dropped records")
	}
}

func TestLogQueueDropPolicyCounts(t *testing.T) {
	var c StageCounters
	r := rec(0, "x")
	q := NewLogQueue(2*RecordSize(&r), Drop, &c)
	ctx := context.Background()
	results := []bool{}
	for i := range 5 {
		ok, err := q.Push(ctx, rec(i, "x"))
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, ok)
	}
	if fmt.Sprint(results) != "[true true false false false]" || c.Dropped.Load() != 3 || c.In.Load() != 2 {
		t.Fatalf("results %v, dropped %d, in %d", results, c.Dropped.Load(), c.In.Load())
	}
}

func TestLogQueueOfferNeverWaits(t *testing.T) {
	var c StageCounters
	r := rec(0, "x")
	q := NewLogQueue(2*RecordSize(&r), Block, &c) // Block: Push would wait
	if !q.Offer(rec(0, "x")) || !q.Offer(rec(1, "x")) {
		t.Fatal("Offer refused a record with room for it")
	}
	done := make(chan bool)
	go func() { done <- q.Offer(rec(2, "x")) }()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("Offer queued past the bound")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Offer waited on a full queue")
	}
	if q.Len() != 2 || c.In.Load() != 2 {
		t.Fatalf("len %d, in %d", q.Len(), c.In.Load())
	}
}

func TestLogQueueOversizedRecordFitsEmptyQueue(t *testing.T) {
	q := NewLogQueue(10, Block, new(StageCounters))
	big := LogRecord{Body: make([]byte, 1000)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if ok, err := q.Push(ctx, big); !ok || err != nil {
		t.Fatalf("an oversized record must not wedge an empty queue: %v %v", ok, err)
	}
}

func TestLogQueueCancelAndClose(t *testing.T) {
	r := rec(0, "x")
	q := NewLogQueue(RecordSize(&r), Block, new(StageCounters))
	q.Push(context.Background(), r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if ok, err := q.Push(ctx, r); ok || err == nil {
		t.Fatal("a blocked Push must give up when its context ends")
	}
	q.Close()
	if b := q.PopBatch(context.Background(), nil, 10, 1<<20, time.Second); len(b) != 1 {
		t.Fatalf("Close must let the rest drain, got %d", len(b))
	}
	if b := q.PopBatch(context.Background(), nil, 10, 1<<20, time.Second); len(b) != 0 {
		t.Fatal("PopBatch on a closed, empty queue must return at once")
	}
}

func TestLogQueueOrderAcrossBlocks(t *testing.T) {
	q := NewLogQueue(1<<30, Block, new(StageCounters))
	ctx := context.Background()
	next := 0
	pushed := 0
	for round := range 5 {
		for range 700 + round*300 { // spans several blocks, reusing emptied ones
			q.Push(ctx, rec(pushed, ""))
			pushed++
		}
		for q.Len() > 0 {
			for _, r := range q.PopBatch(ctx, nil, 300, 1<<30, 0) {
				if want := fmt.Sprintf("%d ", next); string(r.Body) != want {
					t.Fatalf("got %q, want %q", r.Body, want)
				}
				next++
			}
		}
		if q.Bytes() != 0 {
			t.Fatalf("empty queue holds %d bytes", q.Bytes())
		}
	}
	if next != pushed {
		t.Fatalf("popped %d of %d", next, pushed)
	}
}

func TestLogQueuePushBatchBlocksAndKeepsOrder(t *testing.T) {
	one := rec(0, "")
	q := NewLogQueue(10*RecordSize(&one), Block, new(StageCounters))
	batch := make([]LogRecord, 35)
	for i := range batch {
		batch[i] = rec(i, "")
	}
	ctx := context.Background()
	done := make(chan int)
	go func() {
		n, err := q.PushBatch(ctx, batch, nil)
		if err != nil {
			t.Error(err)
		}
		done <- n
	}()
	var got []LogRecord
	for len(got) < len(batch) {
		got = append(got, q.PopBatch(ctx, nil, 4, 1<<30, 0)...)
	}
	if n := <-done; n != len(batch) {
		t.Fatalf("PushBatch handled %d of %d", n, len(batch))
	}
	for i, r := range got {
		if want := fmt.Sprintf("%d ", i); string(r.Body) != want {
			t.Fatalf("record %d = %q, want %q", i, r.Body, want)
		}
	}

	// A full queue and an ended context: the records handled so far.
	for range 10 {
		q.Push(ctx, one)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if n, err := q.PushBatch(cctx, batch[:3], nil); n != 0 || err == nil {
		t.Fatalf("PushBatch on a full queue after its context ended: %d, %v", n, err)
	}
}

func TestLogQueuePushBatchDropsWhatDoesNotFit(t *testing.T) {
	small, big := rec(0, ""), LogRecord{Body: make([]byte, 100)}
	counters := new(StageCounters)
	q := NewLogQueue(3*RecordSize(&small), Drop, counters)
	batch := []LogRecord{small, small, big, small, small}
	var dropped []int
	n, err := q.PushBatch(context.Background(), batch, func(i int) { dropped = append(dropped, i) })
	if n != len(batch) || err != nil {
		t.Fatalf("PushBatch: %d, %v", n, err)
	}
	if fmt.Sprint(dropped) != "[2 4]" || counters.Dropped.Load() != 2 || counters.In.Load() != 3 || q.Len() != 3 {
		t.Fatalf("dropped %v (counted %d), queued %d (%d in); want the big one and the one past the bound dropped",
			dropped, counters.Dropped.Load(), q.Len(), counters.In.Load())
	}
}

func TestLogQueuePopBatchReusesDst(t *testing.T) {
	q := NewLogQueue(1<<20, Block, new(StageCounters))
	ctx := context.Background()
	dst := make([]LogRecord, 0, 8)
	for i := range 3 {
		q.Push(ctx, rec(i, ""))
	}
	b := q.PopBatch(ctx, dst, 8, 1<<20, 0)
	if len(b) != 3 || &b[0] != &dst[:1][0] {
		t.Fatalf("got %d records, in dst's array: %v", len(b), len(b) > 0 && &b[0] == &dst[:1][0])
	}
}

// One op is one record through PushBatch and PopBatch, as a tailer and the
// exporter use them: in a steady flow the queue allocates nothing.
func BenchmarkLogQueueBatches(b *testing.B) {
	q := NewLogQueue(64<<20, Block, new(StageCounters))
	ctx := context.Background()
	in := make([]LogRecord, 200)
	for i := range in {
		in[i] = rec(i, "a line of seventy bytes or so, as the log benchmark writes them")
	}
	var out []LogRecord
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%len(in) == 0 {
			q.PushBatch(ctx, in, nil)
			if q.Len() >= 8192 {
				out = q.PopBatch(ctx, out, 8192, 4<<20, 0)
				clear(out)
			}
		}
	}
}
