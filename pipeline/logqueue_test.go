package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
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
				// 150 ticks in 3 s; a producer held up by the queue
				// sends far fewer, one merely short of CPU on a busy
				// machine under -race a few less (97 seen).
				if sent[c] < 75 || dropped[c] > 0 {
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
// never fill; flows are released when their lines leave.
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
	if len(q.flows) != 0 || q.round != nil || q.events.count != 0 || q.bytes != 0 {
		t.Fatalf("drained queue keeps %d flows, %d bytes", len(q.flows), q.bytes)
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

// TestLogQueueQuietLinesOvertakeNoisyBacklog: the default 64 MiB buffer
// kept full by one container logging as fast as dockerd serves a stream,
// a backend taking 10,000 records/s, nine quiet containers at 10 lines/s
// and a lifecycle event every 100 ms. A FIFO makes every quiet line wait
// behind the noisy container's ~50 MiB backlog (~17 s at the backend's
// rate: none of them was out after 9 s); served in turns, each quiet line and each event leaves within 5 s
// of being queued, nothing quiet is lost, and every container's records
// leave in the order they were queued. Both overflow modes.
func TestLogQueueQuietLinesOvertakeNoisyBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 2×5 s")
	}
	defer goleak.VerifyNone(t)
	const (
		limit    = 64 << 20 // logs.buffer_bytes' default
		quiet    = 9
		run      = 4 * time.Second
		maxDelay = 5 * time.Second
	)
	for _, mode := range []Overflow{Block, Drop} {
		name := map[Overflow]string{Block: "block", Drop: "drop"}[mode]
		t.Run(name, func(t *testing.T) {
			counters := new(StageCounters)
			q := NewLogQueue(limit, mode, counters)
			ctx, cancel := context.WithTimeout(context.Background(), run)
			defer cancel()
			var wg sync.WaitGroup
			body := make([]byte, 200)
			var noisySeq, noisyDropped atomic.Uint64
			// Hash carries each container's sequence number, so that the
			// backend can check the order. The noisy reader goes as fast as
			// dockerd can serve one stream (~190k lines/s, design.md §3),
			// 20 times the backend's rate; no faster, so that on a loaded
			// machine the quiet readers still get the CPU to keep pace.
			wg.Go(func() {
				batch := make([]LogRecord, 1024)
				var seq uint64
				const perBatch = time.Second * 1024 / 200_000
				for next := time.Now(); ctx.Err() == nil; next = next.Add(perBatch) {
					time.Sleep(time.Until(next))
					for i := range batch {
						seq++
						batch[i] = LogRecord{ContainerID: "noisy", Body: body, Hash: seq}
					}
					n, _ := q.PushBatch(ctx, batch, func(int) { noisyDropped.Add(1) })
					seq -= uint64(len(batch) - n) // those were never handled
					noisySeq.Store(seq)
				}
			})
			var sent, dropped [quiet]int
			var slowPush [quiet]time.Duration // a quiet reader waiting for room
			for c := range quiet {
				wg.Go(func() {
					tick := time.NewTicker(100 * time.Millisecond)
					defer tick.Stop()
					id := fmt.Sprintf("quiet-%d", c)
					for {
						select {
						case <-ctx.Done():
							return
						case <-tick.C:
						}
						r := LogRecord{ContainerID: id, Body: []byte("a quiet line"), Hash: uint64(sent[c] + 1), Observed: time.Now()}
						if _, err := q.PushBatch(ctx, []LogRecord{r}, func(int) { dropped[c]++ }); err != nil {
							return
						}
						slowPush[c] = max(slowPush[c], time.Since(r.Observed))
						sent[c]++
					}
				})
			}
			var events, refused int
			wg.Go(func() { // the event handler never waits
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					events++
					if !q.Offer(LogRecord{ContainerID: "quiet-0", Event: &Event{Name: "container.die"}, Hash: uint64(events), Observed: time.Now()}) {
						refused++
					}
				}
			})

			// The backend takes ~10,000 records/s in batches of 2,000:
			// the noisy reader alone queues far more.
			var (
				delivered       [quiet]int
				lastQuiet       [quiet]uint64
				lastNoisy       uint64
				eventsOut       int
				slowest, slowEv time.Duration
				noisyOut        int
				disorder        []string
				mu              sync.Mutex // the above, read before bwg.Wait
			)
			backend, stop := context.WithCancel(context.Background())
			defer stop()
			var bwg sync.WaitGroup
			bwg.Go(func() {
				for backend.Err() == nil {
					batch := q.PopBatch(backend, nil, 2000, 4<<20, 0)
					now := time.Now()
					mu.Lock()
					for _, r := range batch {
						var c int
						switch _, err := fmt.Sscanf(r.ContainerID, "quiet-%d", &c); {
						case r.Event != nil:
							if eventsOut++; r.Hash != uint64(eventsOut) {
								disorder = append(disorder, fmt.Sprintf("event %d after %d", r.Hash, eventsOut-1))
							}
							slowEv = max(slowEv, now.Sub(r.Observed))
						case err != nil:
							noisyOut++
							if r.Hash <= lastNoisy || mode == Block && r.Hash != lastNoisy+1 {
								disorder = append(disorder, fmt.Sprintf("noisy %d after %d", r.Hash, lastNoisy))
							}
							lastNoisy = r.Hash
						default:
							if delivered[c]++; r.Hash != lastQuiet[c]+1 {
								disorder = append(disorder, fmt.Sprintf("quiet-%d: %d after %d", c, r.Hash, lastQuiet[c]))
							}
							lastQuiet[c] = r.Hash
							slowest = max(slowest, now.Sub(r.Observed))
						}
					}
					mu.Unlock()
					time.Sleep(200 * time.Millisecond)
				}
			})
			wg.Wait()
			// The readers have stopped: give the backend what a fair queue
			// needs to ship the quiet lines still queued, no more (a FIFO
			// would need tens of seconds for the noisy backlog).
			deadline := time.Now().Add(maxDelay)
			for time.Now().Before(deadline) {
				mu.Lock()
				left := eventsOut < events-refused
				for c := range quiet {
					left = left || delivered[c] < sent[c]
				}
				mu.Unlock()
				if !left {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			stop()
			bwg.Wait()
			queued := q.Bytes()
			q.Close()

			for c := range quiet {
				if sent[c] < int(run/(100*time.Millisecond))/2 || dropped[c] > 0 || slowPush[c] > time.Second {
					t.Errorf("quiet-%d: %d lines sent in %v at 10/s, %d dropped, the slowest waited %v to be queued",
						c, sent[c], run, dropped[c], slowPush[c])
				}
				if delivered[c] != sent[c] {
					t.Errorf("quiet-%d: %d of %d lines delivered", c, delivered[c], sent[c])
				}
			}
			if slowest > maxDelay || slowEv > maxDelay {
				t.Errorf("slowest quiet line %v, slowest event %v; want both within %v", slowest, slowEv, maxDelay)
			}
			if refused > 0 || eventsOut != events {
				t.Errorf("events: %d offered, %d refused, %d delivered", events, refused, eventsOut)
			}
			if len(disorder) > 0 {
				t.Errorf("records left out of their container's order: %v", disorder[:min(5, len(disorder))])
			}
			// The noisy reader outran the backend: the queue was full.
			if noisyOut == 0 || queued < limit/2 {
				t.Errorf("noisy: %d delivered, %d bytes still queued; want a backend slower than the input", noisyOut, queued)
			}
			if mode == Drop && counters.Dropped.Load() != noisyDropped.Load() {
				t.Errorf("drops: noisy %d, counted %d; want only the noisy container's, all counted", noisyDropped.Load(), counters.Dropped.Load())
			}
			t.Logf("overflow=%s, %d MiB bound: quiet lines sent %v, delivered %v, slowest %v (queueing %v); events %d, slowest %v; noisy handled %d, delivered %d, dropped %d, %d MiB left queued",
				name, limit>>20, sent, delivered, slowest.Round(time.Millisecond), slices.Max(slowPush[:]).Round(time.Millisecond), events, slowEv.Round(time.Millisecond),
				noisySeq.Load(), noisyOut, noisyDropped.Load(), queued>>20)
		})
	}
}

// TestLogQueueTakesContainersInTurns: behind a noisy container's backlog,
// a quiet container's line and an event go out in the next batch; the
// noisy container gets at most a quantum (and one line) before the quiet
// ones' turn; every container's lines keep their order across batches.
func TestLogQueueTakesContainersInTurns(t *testing.T) {
	q := NewLogQueue(64<<20, Block, new(StageCounters))
	ctx := context.Background()
	line := func(id string, i int) LogRecord {
		return LogRecord{ContainerID: id, Body: fmt.Appendf(nil, "%s %d %0200d", id, i, 0), Hash: uint64(i)}
	}
	noisy := make([]LogRecord, 20000)
	for i := range noisy {
		noisy[i] = line("noisy", i)
	}
	if n, err := q.PushBatch(ctx, noisy, nil); n != len(noisy) || err != nil {
		t.Fatal(n, err)
	}
	for i := range 3 {
		q.Push(ctx, line("a", i))
		q.Push(ctx, line("b", i))
	}
	q.Offer(LogRecord{ContainerID: "a", Event: &Event{Name: "container.start"}})

	b := q.PopBatch(ctx, nil, 8192, 4<<20, 0)
	if b[0].Event == nil {
		t.Errorf("the event is not first in the batch: %q", b[0].Body)
	}
	got := map[string][]int{}
	noisyBefore := int64(0)
	for _, r := range b[1:] {
		got[r.ContainerID] = append(got[r.ContainerID], int(r.Hash))
		if r.ContainerID == "noisy" && len(got["a"]) == 0 {
			noisyBefore += RecordSize(&r)
		}
	}
	if fmt.Sprint(got["a"], got["b"]) != "[0 1 2] [0 1 2]" {
		t.Errorf("quiet lines in the first batch: a %v, b %v; want all of them, in order", got["a"], got["b"])
	}
	if one := RecordSize(&noisy[0]); noisyBefore > quantum+one {
		t.Errorf("the noisy container took %d bytes before the quiet ones' turn; quantum is %d", noisyBefore, quantum)
	}
	next := 0
	for _, r := range append(b, q.PopBatch(ctx, nil, 100000, 64<<20, 0)...) {
		if r.ContainerID == "noisy" {
			if int(r.Hash) != next {
				t.Fatalf("noisy line %d came after %d", r.Hash, next-1)
			}
			next++
		}
	}
	if next != len(noisy) || q.Len() != 0 || q.Bytes() != 0 {
		t.Fatalf("%d of %d noisy lines taken; %d records, %d bytes left", next, len(noisy), q.Len(), q.Bytes())
	}
}

// TestLogQueueTurnsByBytes: two containers with lines of different sizes
// get about the same bytes of each batch, not the same number of lines,
// and a line larger than a quantum still goes out.
func TestLogQueueTurnsByBytes(t *testing.T) {
	q := NewLogQueue(64<<20, Block, new(StageCounters))
	ctx := context.Background()
	big, small := make([]byte, 4000), make([]byte, 40)
	huge := make([]byte, 3*quantum)
	for i := range 20000 {
		if i < 2000 {
			q.Push(ctx, LogRecord{ContainerID: "big", Body: big})
		}
		q.Push(ctx, LogRecord{ContainerID: "small", Body: small})
	}
	q.Push(ctx, LogRecord{ContainerID: "huge", Body: huge})
	bytes := map[string]int64{}
	for _, r := range q.PopBatch(ctx, nil, 100000, 2<<20, 0) {
		bytes[r.ContainerID] += RecordSize(&r)
	}
	if bytes["huge"] != RecordSize(&LogRecord{Body: huge}) {
		t.Errorf("a line of 3 quanta was not taken: %v", bytes)
	}
	if r := float64(bytes["big"]) / float64(bytes["small"]); r < 0.8 || r > 1.25 {
		t.Errorf("bytes per container in a batch: %v; want the two busy ones about equal", bytes)
	}
}

// TestLogQueueEventsReservedShareOfBatch: with events and lines both
// queued in bulk, a batch takes events first but only up to its reserved
// part; lines get the rest. With no lines queued, events fill the batch.
func TestLogQueueEventsReservedShareOfBatch(t *testing.T) {
	q := NewLogQueue(64<<20, Block, new(StageCounters))
	ctx := context.Background()
	ev := LogRecord{ContainerID: "a", Event: &Event{Name: "container.die"}, Body: make([]byte, 100)}
	for range 5000 {
		if !q.Offer(ev) {
			t.Fatal("event refused")
		}
		q.Push(ctx, LogRecord{ContainerID: "a", Body: make([]byte, 100)})
	}
	const maxBytes = 256 << 10
	var events, lines int64
	for _, r := range q.PopBatch(ctx, nil, 100000, maxBytes, 0) {
		if r.Event != nil {
			events += RecordSize(&r)
		} else {
			lines += RecordSize(&r)
		}
	}
	if one := RecordSize(&ev); events == 0 || events > maxBytes/eventReserveDiv+one || lines < maxBytes-maxBytes/eventReserveDiv-2*one {
		t.Errorf("a %d-byte batch took %d bytes of events and %d of lines; want events up to 1/%d of it", maxBytes, events, lines, eventReserveDiv)
	}
	for q.Len() > 0 {
		q.PopBatch(ctx, nil, 100000, 64<<20, 0)
	}
	for range 100 {
		q.Offer(ev)
	}
	if b := q.PopBatch(ctx, nil, 100000, maxBytes, 0); len(b) != 100 {
		t.Errorf("with no lines queued a batch took %d of 100 events", len(b))
	}
}

// TestLogQueueBatchesAckPerContainer: batches that mix containers, cut at
// any record, acknowledged one after the other, move each container's
// checkpoint to exactly its last line taken: the order the checkpoints
// rely on is each container's, which the turns keep.
func TestLogQueueBatchesAckPerContainer(t *testing.T) {
	cp, err := OpenCheckpointer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	q := NewLogQueue(64<<20, Block, new(StageCounters))
	ctx := context.Background()
	ids := []string{"a", "b", "c"}
	base := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for i := range 3000 {
		id := ids[i%7%3] // uneven runs
		q.Push(ctx, LogRecord{ContainerID: id, Time: base.Add(time.Duration(i) * time.Millisecond), Stream: Stdout,
			Body: fmt.Appendf(nil, "%s line %d %0*d", id, i, i%500, 0)})
		if i%100 == 0 {
			q.Offer(LogRecord{ContainerID: id, Event: &Event{Name: "container.health_status"}})
		}
	}
	last := map[string]LogRecord{}
	for n := 1; q.Len() > 0; n = n%97 + 13 {
		b := q.PopBatch(ctx, nil, n, 64<<20, 0)
		for _, r := range b {
			if r.Event != nil {
				continue
			}
			if prev, ok := last[r.ContainerID]; ok && !r.Time.After(prev.Time) {
				t.Fatalf("%s: line of %v after line of %v", r.ContainerID, r.Time, prev.Time)
			}
			last[r.ContainerID] = r
		}
		if err := cp.Ack(b); err != nil {
			t.Fatal(err)
		}
		for id, r := range last {
			if got, _ := cp.Get(id); got.Last != PrintOf(&r) || got.Latest != r.Time.UnixNano() {
				t.Fatalf("%s: checkpoint at %+v after acknowledging its line %+v", id, got.Last, PrintOf(&r))
			}
		}
	}
}

// BenchmarkLogQueueFairVsFIFO: one op is one record through PushBatch and
// PopBatch (exporter batches of 8192), for this queue and for the FIFO it
// replaced (logqueue_fifo_test.go), with one container, 64 interleaved,
// one noisy container among 9 quiet ones, and 1,000 quiet ones — so that the cost of the
// turns shows in one run: go test -run '^$' -bench FairVsFIFO ./pipeline/
func BenchmarkLogQueueFairVsFIFO(b *testing.B) {
	type queue interface {
		PushBatch(context.Context, []LogRecord, func(int)) (int, error)
		PopBatch(context.Context, []LogRecord, int, int64, time.Duration) []LogRecord
		Len() int
	}
	reads := func(containers int) [][]LogRecord {
		r := make([][]LogRecord, containers)
		for c := range r {
			r[c] = make([]LogRecord, 200)
			id := fmt.Sprintf("%064x", c) // a tailer's records share its ID string
			for i := range r[c] {
				r[c][i] = rec(i, "a line of seventy bytes or so, as the log benchmark writes them")
				r[c][i].ContainerID = id
			}
		}
		return r
	}
	for _, load := range []struct {
		name  string
		reads [][]LogRecord
	}{
		{"1container", reads(1)},
		{"64containers", reads(64)},
		// reads[0] is the noisy one: 200 lines, then one line of each quiet one.
		{"noisy+9quiet", func() [][]LogRecord {
			r := reads(10)
			for c := 1; c < len(r); c++ {
				r[c] = r[c][:1]
			}
			return r
		}()},
		// A line at a time from each of 1,000 containers: flows come and go.
		{"1000quiet", func() [][]LogRecord {
			r := reads(1000)
			for c := range r {
				r[c] = r[c][:1]
			}
			return r
		}()},
	} {
		for _, impl := range []struct {
			name string
			new  func() queue
		}{
			{"fifo", func() queue { return newFIFOLogQueue(64<<20, Block, new(StageCounters)) }},
			{"fair", func() queue { return NewLogQueue(64<<20, Block, new(StageCounters)) }},
		} {
			b.Run(load.name+"/"+impl.name, func(b *testing.B) {
				q := impl.new()
				ctx := context.Background()
				var out []LogRecord
				b.ReportAllocs()
				n := 0
				for i := 0; b.Loop(); i++ {
					if n > 0 {
						n--
						continue
					}
					r := load.reads[i%len(load.reads)]
					q.PushBatch(ctx, r, nil)
					n = len(r) - 1
					if q.Len() >= 8192 {
						out = q.PopBatch(ctx, out, 8192, 4<<20, 0)
						clear(out)
					}
				}
			})
		}
	}
}

// TestLogQueueRandomOpsKeepOrderAndAccounts: random reads of 20
// containers (some lines larger than a quantum), events, and batches of
// random bounds, in both overflow modes against a small bound: every
// record queued comes out once, each container's and the events' in
// order; the bytes held match what is queued, never over the bound but
// for a lone oversized record; nothing is kept once drained.
func TestLogQueueRandomOpsKeepOrderAndAccounts(t *testing.T) {
	for _, mode := range []Overflow{Block, Drop} {
		rng := rand.New(rand.NewPCG(uint64(mode)+1, 7))
		counters := new(StageCounters)
		const limit = 1 << 20
		q := NewLogQueue(limit, mode, counters)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // Block: a PushBatch that would wait returns at once
		ids := make([]string, 20)
		for i := range ids {
			ids[i] = fmt.Sprintf("c%02d", i)
		}
		pushed := map[string][]uint64{} // queued, by container ("" for events)
		var seq uint64
		held := int64(0)
		taken, short := 0, 0 // short: reads Block cut short at the bound
		check := func(b []LogRecord) {
			for _, r := range b {
				id := r.ContainerID
				if r.Event != nil {
					id = ""
				}
				if len(pushed[id]) == 0 || pushed[id][0] != r.Hash {
					t.Fatalf("mode %d: %q: record %d out, next queued %v", mode, id, r.Hash, pushed[id][:min(1, len(pushed[id]))])
				}
				pushed[id] = pushed[id][1:]
				held -= RecordSize(&r)
				taken++
			}
		}
		for range 20000 {
			switch op := rng.IntN(10); {
			case op < 6:
				id := ids[rng.IntN(len(ids))]
				if rng.IntN(4) == 0 {
					id = ids[0] // a noisy one
				}
				batch := make([]LogRecord, 1+rng.IntN(50))
				for i := range batch {
					size := rng.IntN(300)
					if rng.IntN(200) == 0 {
						size = 3 * quantum
					}
					seq++
					batch[i] = LogRecord{ContainerID: id, Body: make([]byte, size), Hash: seq}
				}
				dropped := map[int]bool{}
				n, _ := q.PushBatch(ctx, batch, func(i int) { dropped[i] = true })
				if n < len(batch) {
					short++
				}
				for i := range batch[:n] {
					if !dropped[i] {
						pushed[id] = append(pushed[id], batch[i].Hash)
						held += RecordSize(&batch[i])
					}
				}
			case op < 7:
				seq++
				r := LogRecord{ContainerID: ids[rng.IntN(len(ids))], Event: &Event{Name: "container.start"}, Body: make([]byte, rng.IntN(100)), Hash: seq}
				if q.Offer(r) {
					pushed[""] = append(pushed[""], r.Hash)
					held += RecordSize(&r)
				}
			default:
				if q.Len() > 0 { // PopBatch waits for a record
					check(q.PopBatch(context.Background(), nil, 1+rng.IntN(300), int64(1+rng.IntN(256<<10)), 0))
				}
			}
			if q.Bytes() != held {
				t.Fatalf("mode %d: queue counts %d bytes, holds %d", mode, q.Bytes(), held)
			}
			if held > limit && q.Len() > 1 {
				t.Fatalf("mode %d: %d bytes queued, bound %d", mode, held, limit)
			}
		}
		for q.Len() > 0 {
			check(q.PopBatch(context.Background(), nil, 1000, 1<<20, 0))
		}
		for id, left := range pushed {
			if len(left) > 0 {
				t.Fatalf("mode %d: %q: %d records never came out", mode, id, len(left))
			}
		}
		q.mu.Lock()
		if len(q.flows) != 0 || q.round != nil || q.roundTail != nil || q.events.count != 0 || q.events.first != nil || q.bytes != 0 || q.count != 0 {
			t.Fatalf("mode %d: drained queue keeps %d flows, round %v, %d events, %d bytes", mode, len(q.flows), q.round != nil, q.events.count, q.bytes)
		}
		q.mu.Unlock()
		if in := counters.In.Load(); int(in) != taken {
			t.Fatalf("mode %d: %d records counted in, %d came out", mode, in, taken)
		}
		if mode == Drop && counters.Dropped.Load() == 0 || mode == Block && short == 0 {
			t.Fatal("the bound was never reached")
		}
		t.Logf("mode %d: %d records through, %d dropped, %d reads cut short", mode, taken, counters.Dropped.Load(), short)
	}
}

// TestLogQueueManyQuietContainersCostLittle: each container with lines
// queued has blocks of its own; with a line each, 5,000 containers cost
// the queue ~1 KB each beyond the records' size, not a 4 KB block each.
func TestLogQueueManyQuietContainersCostLittle(t *testing.T) {
	const n = 5000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%064x", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	q := NewLogQueue(64<<20, Block, new(StageCounters))
	size := int64(0)
	for _, id := range ids {
		r := LogRecord{ContainerID: id, Body: make([]byte, 70)}
		size += RecordSize(&r)
		q.Push(context.Background(), r)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(q)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	per := (grew - size) / n
	t.Logf("%d containers with a line queued: heap +%d KB, %d B per container beyond the records", n, grew>>10, per)
	if per > 1024 {
		t.Errorf("%d B per container with a line queued, beyond the record", per)
	}
}
