package pipeline

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func rec(i int, body string) LogRecord {
	return LogRecord{ContainerID: "c", Body: []byte(fmt.Sprintf("%d %s", i, body))}
}

// linesBound is the smallest queue bound whose lines' part (the bound less
// the events' reserve) holds n records the size of r.
func linesBound(n int, r LogRecord) int64 {
	want := int64(n) * RecordSize(&r)
	limit := want
	for limit-EventReserve(limit) < want {
		limit++
	}
	return limit
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
	q := NewLogQueue(linesBound(3, r), Block, &c)
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
	q := NewLogQueue(linesBound(2, r), Drop, &c)
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
	q := NewLogQueue(linesBound(2, r), Block, &c) // Block: Push would wait
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
	q := NewLogQueue(linesBound(10, one), Block, new(StageCounters))
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
	q := NewLogQueue(linesBound(3, small), Drop, counters)
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

// TestLogQueueNoisyContainerDoesNotStarveOthers: one container logging
// as fast as it can into a backend slower than the input, nine quiet
// containers at 50 lines/s each and a lifecycle event every 50 ms. In
// both overflow modes every quiet container keeps its pace, its lines get
// through within 5 s, and no event is refused; the noisy one pays alone.
func TestLogQueueNoisyContainerDoesNotStarveOthers(t *testing.T) {
	for _, mode := range []Overflow{Block, Drop} {
		name := map[Overflow]string{Block: "block", Drop: "drop"}[mode]
		t.Run(name, func(t *testing.T) {
			counters := new(StageCounters)
			q := NewLogQueue(1<<20, mode, counters)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			body := make([]byte, 200)
			var noisyDropped atomic.Int64
			wg.Go(func() {
				batch := make([]LogRecord, 1024)
				for ctx.Err() == nil {
					for i := range batch {
						batch[i] = LogRecord{ContainerID: "noisy", Body: body, Observed: time.Now()}
					}
					q.PushBatch(ctx, batch, func(int) { noisyDropped.Add(1) })
				}
			})
			const quiet = 9
			var sent, dropped [quiet]int
			for c := range quiet {
				wg.Go(func() {
					tick := time.NewTicker(20 * time.Millisecond)
					defer tick.Stop()
					id := fmt.Sprintf("quiet-%d", c)
					for {
						select {
						case <-ctx.Done():
							return
						case <-tick.C:
						}
						r := LogRecord{ContainerID: id, Body: []byte("a quiet line"), Observed: time.Now()}
						if _, err := q.PushBatch(ctx, []LogRecord{r}, func(int) { dropped[c]++ }); err != nil {
							return
						}
						sent[c]++
					}
				})
			}
			var events, refused int
			wg.Go(func() { // the event handler never waits
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					events++
					if !q.Offer(LogRecord{ContainerID: "quiet-0", Event: &Event{Name: "container.die"}, Observed: time.Now()}) {
						refused++
					}
				}
			})
			var delivered [quiet]int
			var slowest time.Duration
			var noisyOut int
			// The backend, taking ~2,000 records/s, goes on after the
			// readers stop until the quiet lines are all through.
			backend, stop := context.WithTimeout(context.Background(), 10*time.Second)
			defer stop()
			var bwg sync.WaitGroup
			bwg.Go(func() {
				for {
					batch := q.PopBatch(backend, nil, 200, 1<<20, 0)
					if len(batch) == 0 {
						return // closed and drained, or out of time
					}
					for _, r := range batch {
						var c int
						switch _, err := fmt.Sscanf(r.ContainerID, "quiet-%d", &c); {
						case r.Event != nil:
						case err != nil:
							noisyOut++
						default:
							delivered[c]++
							slowest = max(slowest, time.Since(r.Observed))
						}
					}
					time.Sleep(100 * time.Millisecond)
				}
			})
			wg.Wait()
			q.Close()
			bwg.Wait()
			for c := range quiet {
				if sent[c] < 100 || dropped[c] > 0 {
					t.Errorf("quiet-%d: %d lines sent in 3 s at 50/s, %d dropped", c, sent[c], dropped[c])
				}
				if delivered[c] != sent[c] {
					t.Errorf("quiet-%d: %d of %d lines delivered", c, delivered[c], sent[c])
				}
			}
			if slowest > 5*time.Second {
				t.Errorf("a quiet container's line took %v to get through", slowest)
			}
			if refused > 0 {
				t.Errorf("%d of %d events refused while the noisy container kept the queue full", refused, events)
			}
			if noisyOut == 0 {
				t.Error("the noisy container got nothing through")
			}
			if mode == Drop && (noisyDropped.Load() == 0 || counters.Dropped.Load() != uint64(noisyDropped.Load())) {
				t.Errorf("drops: noisy %d, counted %d; want only the noisy container's, all counted", noisyDropped.Load(), counters.Dropped.Load())
			}
			t.Logf("overflow=%s: quiet lines sent %v, delivered %v, slowest %v; events %d refused %d; noisy delivered %d dropped %d",
				name, sent, delivered, slowest.Round(time.Millisecond), events, refused, noisyOut, noisyDropped.Load())
		})
	}
}

// TestLogQueueFairShareBounds: a lone container fills the lines' part of
// the bound up to its share and leaves the rest to others; a second
// container is admitted into that rest; events use the reserve lines
// never fill; shares are released when their lines leave.
func TestLogQueueFairShareBounds(t *testing.T) {
	const limit = 4 << 20
	q := NewLogQueue(limit, Drop, new(StageCounters))
	ctx := context.Background()
	line := func(id string) LogRecord { return LogRecord{ContainerID: id, Body: make([]byte, 1000)} }
	for {
		if ok, _ := q.Push(ctx, line("a")); !ok {
			break
		}
	}
	lines := limit - EventReserve(limit)
	held := q.Bytes()
	want := shareFactor * lines / (shareFactor + 1)
	if one := RecordSize(&LogRecord{Body: make([]byte, 1000)}); held < want-2*one || held > want+2*one {
		t.Fatalf("a lone container holds %d bytes, want about %d (%d/%d of %d)", held, want, shareFactor, shareFactor+1, lines)
	}
	n := 0
	for {
		if ok, _ := q.Push(ctx, line("b")); !ok {
			break
		}
		n++
	}
	if got := q.Bytes(); n == 0 || got > lines {
		t.Fatalf("a second container got %d lines in; queue holds %d of %d for lines", n, got, lines)
	}
	events := 0
	for q.Offer(LogRecord{ContainerID: "a", Event: &Event{Name: "container.die"}, Body: make([]byte, 100)}) {
		events++
	}
	if events == 0 || q.Bytes() > limit {
		t.Fatalf("%d events admitted into a queue full of lines; holds %d of %d", events, q.Bytes(), limit)
	}
	for q.Len() > 0 {
		q.PopBatch(ctx, nil, 1000, 1<<30, 0)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.shares) != 0 || q.bytes != 0 {
		t.Fatalf("drained queue keeps %d shares, %d bytes", len(q.shares), q.bytes)
	}
}

// As BenchmarkLogQueueBatches, with the reads of 64 containers
// interleaved, as on a busy host: one share lookup per read.
func BenchmarkLogQueueBatchesManyContainers(b *testing.B) {
	q := NewLogQueue(64<<20, Block, new(StageCounters))
	ctx := context.Background()
	reads := make([][]LogRecord, 64)
	for c := range reads {
		reads[c] = make([]LogRecord, 200)
		id := fmt.Sprintf("%064x", c) // a tailer's records share its ID string
		for i := range reads[c] {
			reads[c][i] = rec(i, "a line of seventy bytes or so, as the log benchmark writes them")
			reads[c][i].ContainerID = id
		}
	}
	var out []LogRecord
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%200 == 0 {
			q.PushBatch(ctx, reads[i/200%len(reads)], nil)
			if q.Len() >= 8192 {
				out = q.PopBatch(ctx, out, 8192, 4<<20, 0)
				clear(out)
			}
		}
	}
}

// TestLogQueueCloseWakesBlockedReaders: readers waiting for room (for the
// bound or for their share) return when the queue closes.
func TestLogQueueCloseWakesBlockedReaders(t *testing.T) {
	one := rec(0, "")
	q := NewLogQueue(linesBound(2, one), Block, new(StageCounters))
	ctx := context.Background()
	q.Push(ctx, one)
	q.Push(ctx, one)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := q.PushBatch(ctx, []LogRecord{one}, nil)
			errs <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	q.Close()
	for range 3 {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("a reader blocked on a full queue got in after Close")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Close left a reader waiting")
		}
	}
}
