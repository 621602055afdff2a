package pipeline

import (
	"context"
	"math/bits"
	"sync"
	"time"
	"unsafe"
)

// Overflow is what a full LogQueue does with a new record.
type Overflow int

const (
	// Block makes the reader wait: it stops reading its follow stream, and
	// Docker's log file holds the lines meanwhile. Nothing is lost.
	Block Overflow = iota
	// Drop discards the record and counts it.
	Drop
)

// recordOverhead is a queued record's memory beyond its body, so that a
// queue of empty lines is bounded too. Records are stored in blocks per
// container, sized to its backlog (see minBlockRecords): beyond the bound,
// memory holds at most one part-filled block per container with lines
// queued, ~550 B for most, under 4 KB for a busy one.
const recordOverhead = int64(unsafe.Sizeof(LogRecord{}))

// Each container with lines queued has blocks of its own. Most have a few
// lines at a time, a noisy one thousands: a flow's first block holds
// minBlockRecords (~500 B), each next one twice its predecessor, up to
// maxBlockRecords (~4 KB). So 5,000 containers with a line each hold
// 2.6 MB of blocks, not 20, while a noisy one moves to its next block once
// every 32 lines.
const (
	minBlockRecords = 4
	maxBlockRecords = 32
	blockClasses    = 4 // 4, 8, 16 and 32 records
)

// maxFreeBlocks bounds, per class, the emptied blocks kept for reuse
// (~1 MB each, 1.5 for the largest, which holds an exporter batch of the
// default 8192 records and part-filled blocks of 128 containers): enough
// that a steady flow allocates none, from a noisy container or from a
// thousand quiet ones, without keeping a drained 64 MiB queue.
var maxFreeBlocks = [blockClasses]int{2048, 1024, 512, 384}

// block is one link of a flow's FIFO: records[head:tail] are queued.
// records is the array of the sizedBlock the block is part of: one
// allocation.
type block struct {
	records    []LogRecord
	head, tail int
	next       *block
}

type sizedBlock[A any] struct {
	block
	array A
}

// freeBlocks is a list of emptied blocks of one class.
type freeBlocks struct {
	first *block // linked by next
	n     int
}

// blockClass is the class of a block of n records.
func blockClass(n int) int { return bits.TrailingZeros(uint(n / minBlockRecords)) }

// newBlock returns an empty block of n records, a power of two from
// minBlockRecords to maxBlockRecords.
func (q *LogQueue) newBlock(n int) *block {
	free := &q.free[blockClass(n)]
	if b := free.first; b != nil {
		free.first, b.next = b.next, nil
		free.n--
		return b
	}
	switch n {
	case 4:
		b := new(sizedBlock[[4]LogRecord])
		b.records = b.array[:]
		return &b.block
	case 8:
		b := new(sizedBlock[[8]LogRecord])
		b.records = b.array[:]
		return &b.block
	case 16:
		b := new(sizedBlock[[16]LogRecord])
		b.records = b.array[:]
		return &b.block
	}
	b := new(sizedBlock[[maxBlockRecords]LogRecord])
	b.records = b.array[:]
	return &b.block
}

// freeBlock keeps an emptied block for reuse, or leaves it to the GC. Its
// records were zeroed as they were taken: no body is kept alive.
func (q *LogQueue) freeBlock(b *block) {
	b.head, b.tail, b.next = 0, 0, nil
	c := blockClass(len(b.records))
	if free := &q.free[c]; free.n < maxFreeBlocks[c] {
		b.next, free.first = free.first, b
		free.n++
	}
}

// flow is one container's queued lines, oldest first, or (LogQueue.events)
// the queued lifecycle events.
type flow struct {
	id          string
	first, last *block
	count       int
	// bytes is what the flow's records count against the bound: for a
	// container, its share (see shareFactor).
	bytes int64
	// deficit is what the flow may still take in its turn (deficit round
	// robin); it goes negative by at most one record, repaid next turns.
	deficit int64
	next    *flow // in the round
}

// Fair shares. One container logging faster than the backend drains would
// otherwise keep the queue full, and every other container's lines would
// wait behind it (block) or be dropped (drop) as often as its own. So a
// container's lines are admitted only while the bytes it holds stay under
// shareFactor times the room left for lines (the dynamic threshold of
// shared switch buffers, Choudhury and Hahne): a lone container fills up to
// shareFactor/(shareFactor+1) of the line bound, n equally noisy ones
// share shareFactor·n/(shareFactor·n+1) of it equally, and the rest is
// always free for a container that has little or nothing queued. No count
// of active containers, no clock: only the bytes each one holds.
//
// Admission alone is not enough: with 64 MiB of a noisy container's lines
// queued, a quiet container's line that got in would still wait behind all
// of them in a FIFO — minutes at a slow backend's rate. So each container
// has its own FIFO, and batches are filled by deficit round robin over the
// containers with lines queued, quantum bytes per turn: a line waits for
// at most one turn of each other container, not for the queue.
const (
	shareFactor = 8
	// shareFloor is what any container may hold whatever the threshold,
	// so that a quiet container's burst is not cut while others are
	// many; the queue's own bound still applies.
	shareFloor = 64 << 10
	// eventReserveDiv: lifecycle events (records with Event set) may use
	// the whole bound, lines only all but 1/eventReserveDiv of it, so that
	// a queue kept full by log readers still takes events, which the
	// event handler can never wait for (Offer). Likewise, events are taken
	// first into each batch, up to 1/eventReserveDiv of its bytes.
	eventReserveDiv = 16
	// quantum is what a container's lines may take of a batch per turn:
	// ~200 lines of 200 bytes, so that the checkpointer and the encoder
	// see runs of one container, while a quiet line waits for at most
	// 64 KiB per busy container (a 4 MiB batch serves 64 of them).
	quantum = 64 << 10
)

// EventReserve is the part of a queue bound of limit bytes that only
// lifecycle events may use.
func EventReserve(limit int64) int64 { return limit / eventReserveDiv }

// RecordSize is what a record counts against the queue's byte bound.
func RecordSize(r *LogRecord) int64 { return int64(len(r.Body)) + recordOverhead }

// LogQueue is the byte-bounded queue between the log readers and the log
// exporter. It is the only buffer on the log path: when the exporter is slow
// or its backend down, it fills, and then readers block (or drop) — first
// those holding more than their share, so that one noisy container cannot
// starve the others. Each container's records leave in the order they came
// (checkpoints rely on it); across containers, batches are filled in turns
// (see quantum), so a quiet container's line is not delayed by a noisy
// one's backlog.
type LogQueue struct {
	limit    int64
	overflow Overflow
	counters *StageCounters

	// lineLimit is limit less the events' reserve: lines never use it.
	lineLimit int64

	mu     sync.Mutex
	count  int
	bytes  int64
	closed bool
	// flows holds the containers with lines queued; a flow leaves when
	// its last line does, so the map is bounded by the queue's records.
	flows     map[string]*flow
	freeFlows []*flow // kept for reuse, so a quiet container allocates none
	events    flow
	// round is the containers with lines queued, in turn order: the head
	// is served, and goes to the tail when its turn is over.
	round, roundTail *flow
	free             [blockClasses]freeBlocks // emptied blocks kept for reuse
	// While PopBatch lingers it needs waking only when a batch is ready:
	// a wake-up per record would cost the exporter a goroutine switch per
	// line. Zero wakes it on every record.
	wakeRecords int
	wakeBytes   int64

	notEmpty chan struct{} // signalled when records arrive
	// room is closed, and replaced, when records leave while a reader
	// waits: every waiter looks again, since which of them may go on
	// depends on its own share, not only on the room left.
	room    chan struct{}
	waiting bool
}

// NewLogQueue returns a queue holding at most limit bytes of records, of
// which lines may use all but EventReserve(limit). counters receive In for
// every record accepted and Dropped for every record discarded by the Drop
// policy.
func NewLogQueue(limit int64, overflow Overflow, counters *StageCounters) *LogQueue {
	return &LogQueue{
		limit:     limit,
		lineLimit: limit - EventReserve(limit),
		overflow:  overflow,
		counters:  counters,
		flows:     map[string]*flow{},
		notEmpty:  make(chan struct{}, 1),
		room:      make(chan struct{}),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Push appends a record. With Block it waits for room (or ctx); a record
// larger than the whole bound is admitted into an empty queue so that it
// cannot wedge the reader. It reports whether the record was queued; false
// with a nil error means it was dropped.
func (q *LogQueue) Push(ctx context.Context, r LogRecord) (bool, error) {
	dropped := false
	n, err := q.PushBatch(ctx, unsafe.Slice(&r, 1), func(int) { dropped = true })
	return n == 1 && !dropped, err
}

// PushBatch appends records in order, as Push would one by one, but taking
// the lock once for as many as fit. A line waits (Block) or is dropped
// (Drop) when the queue is full or its container holds more than its fair
// share (see shareFactor); events are held to the whole bound only. onDrop,
// if not nil, is told the index of each record the Drop policy discarded.
// It returns how many records were handled (queued or dropped), all of them
// unless ctx ended or the queue closed while it waited for room.
func (q *LogQueue) PushBatch(ctx context.Context, recs []LogRecord, onDrop func(i int)) (int, error) {
	// With Drop, a noisy container's reader drops most of what it reads:
	// the indices are gathered under one lock, maxDropRun at a time, not
	// one lock per dropped line, which the quiet readers and the exporter
	// would queue behind.
	var dropBuf [maxDropRun]int
	i := 0
	for i < len(recs) {
		var drops []int
		if q.overflow == Drop {
			drops = dropBuf[:0]
		}
		n, drops, room, err := q.tryAppendBatch(recs[i:], q.overflow == Block, drops)
		if len(drops) > 0 {
			q.counters.Dropped.Add(uint64(len(drops)))
			if onDrop != nil {
				for _, d := range drops {
					onDrop(i + d)
				}
			}
		}
		i += n
		if err != nil {
			return i, err
		}
		if i == len(recs) || q.overflow == Drop {
			continue // Drop: the buffer of indices was full
		}
		// recs[i] may not go in now.
		select {
		case <-room:
		case <-ctx.Done():
			return i, ctx.Err()
		}
	}
	return i, nil
}

// maxDropRun is how many dropped records' indices PushBatch gathers under
// one lock.
const maxDropRun = 64

// Offer appends a record only if there is room now, whatever the overflow
// policy, and reports whether it did. It is for callers that must never
// wait for the exporter, such as the Docker event handler (dockerd drops
// an event subscriber that falls behind); they count what is refused. A
// record with Event set may use the events' reserve (EventReserve), which
// lines never fill.
func (q *LogQueue) Offer(r LogRecord) bool {
	n, _, _, _ := q.tryAppendBatch(unsafe.Slice(&r, 1), false, nil)
	return n == 1
}

// admit reports whether a record of size bytes may be queued now into f
// (q.events for an event). q.mu is held.
func (q *LogQueue) admit(f *flow, size int64) bool {
	if q.bytes == 0 {
		return true // a record larger than the whole bound cannot wedge a reader
	}
	if f == &q.events {
		return q.bytes+size <= q.limit
	}
	if q.bytes+size > q.lineLimit {
		return false
	}
	held := f.bytes + size
	return held <= shareFloor || held <= shareFactor*(q.lineLimit-q.bytes)
}

// tryAppendBatch queues the longest prefix of recs that may go in now and
// reports its length. Given drops (an empty slice with room), it goes on
// past records that may not go in, while drops has room for their
// indices, and reports them; n then counts them too. When it stops short
// and wait is set, room is the channel closed when records next leave.
func (q *LogQueue) tryAppendBatch(recs []LogRecord, wait bool, drops []int) (n int, dropped []int, room <-chan struct{}, err error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0, drops, nil, context.Canceled
	}
	// A tailer's batch is one container's lines: look its flow up once
	// (the ID strings are then the same, and compare by pointer).
	var lines *flow
	for ; n < len(recs); n++ {
		r := &recs[n]
		f := &q.events
		if r.Event == nil {
			if lines == nil || r.ContainerID != lines.id {
				if lines != nil && lines.count == 0 {
					q.forget(lines) // all of its lines were dropped
				}
				lines = q.flowOf(r.ContainerID)
			}
			f = lines
		}
		size := RecordSize(r)
		if !q.admit(f, size) {
			if len(drops) == cap(drops) {
				break
			}
			drops = append(drops, n)
			continue
		}
		q.append(f, r, size)
	}
	if lines != nil && lines.count == 0 {
		q.forget(lines) // looked up for lines that did not go in
	}
	if n < len(recs) && wait {
		room, q.waiting = q.room, true
	}
	queued := n - len(drops)
	wake := queued > 0 && (q.count >= q.wakeRecords || q.bytes >= q.wakeBytes)
	q.mu.Unlock()
	q.counters.In.Add(uint64(queued))
	if wake {
		signal(q.notEmpty)
	}
	return n, drops, room, nil
}

// flowOf returns a container's flow, creating it; q.mu is held.
func (q *LogQueue) flowOf(id string) *flow {
	if f, ok := q.flows[id]; ok {
		return f
	}
	var f *flow
	if n := len(q.freeFlows); n > 0 {
		f, q.freeFlows = q.freeFlows[n-1], q.freeFlows[:n-1]
	} else {
		f = new(flow)
	}
	f.id = id
	q.flows[id] = f
	return f
}

// forget drops a container's flow whose last line left (it is out of the
// round); q.mu is held.
func (q *LogQueue) forget(f *flow) {
	delete(q.flows, f.id)
	*f = flow{}
	if len(q.freeFlows) < maxFreeFlows {
		q.freeFlows = append(q.freeFlows, f)
	}
}

// maxFreeFlows bounds the emptied flows kept for reuse (~200 KB), as many
// as the first blocks kept: 2,048 containers logging now and then allocate
// nothing.
const maxFreeFlows = 2048

// Bytes is what the queue holds now.
func (q *LogQueue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// Len is the number of records queued.
func (q *LogQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}

// append adds a record of size bytes at f's tail, and f to the round if it
// was empty; q.mu is held.
func (q *LogQueue) append(f *flow, r *LogRecord, size int64) {
	if f.last == nil || f.last.tail == len(f.last.records) {
		n := minBlockRecords
		if f.last != nil {
			n = min(2*len(f.last.records), maxBlockRecords)
		}
		b := q.newBlock(n)
		if f.last == nil {
			f.first = b
		} else {
			f.last.next = b
		}
		f.last = b
	}
	f.last.records[f.last.tail] = *r
	f.last.tail++
	if f.count == 0 && f != &q.events {
		if q.roundTail == nil {
			q.round = f
		} else {
			q.roundTail.next = f
		}
		q.roundTail = f
	}
	f.count++
	f.bytes += size
	q.count++
	q.bytes += size
}

// Close wakes every waiter; Push fails from then on, PopBatch drains what is
// left and then returns nothing.
func (q *LogQueue) Close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.room)
		q.waiting = false
	}
	q.mu.Unlock()
	signal(q.notEmpty)
}

// PopBatch waits for at least one record, then up to linger for the batch to
// reach maxRecords records or maxBytes bytes, and returns the records
// appended to dst[:0] (whose array is reused: the caller clears it once
// done, so that it does not keep bodies alive). Each container's lines, and
// the events, come in the order they were queued; the containers take
// turns (see take). It returns an empty batch when ctx is done or the queue
// is closed and empty.
func (q *LogQueue) PopBatch(ctx context.Context, dst []LogRecord, maxRecords int, maxBytes int64, linger time.Duration) []LogRecord {
	dst = dst[:0]
	for q.Len() == 0 {
		q.mu.Lock()
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return dst
		}
		select {
		case <-q.notEmpty:
		case <-ctx.Done():
			return dst
		}
	}
	if linger > 0 && !q.full(maxRecords, maxBytes) {
		q.mu.Lock()
		q.wakeRecords, q.wakeBytes = maxRecords, maxBytes
		q.mu.Unlock()
		defer func() {
			q.mu.Lock()
			q.wakeRecords, q.wakeBytes = 0, 0
			q.mu.Unlock()
		}()
		timer := time.NewTimer(linger)
	wait:
		for !q.full(maxRecords, maxBytes) {
			select {
			case <-q.notEmpty:
			case <-timer.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		timer.Stop()
	}
	return q.take(dst, maxRecords, maxBytes)
}

// full reports whether a batch of the given bounds is ready.
func (q *LogQueue) full(maxRecords int, maxBytes int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count >= maxRecords || q.bytes >= maxBytes || q.closed
}

// batch is a batch being taken from the queue.
type batch struct {
	out        []LogRecord
	size       int64
	maxRecords int
	maxBytes   int64
}

// full reports whether a record of s bytes does not fit in the batch (a
// batch always takes its first record).
func (b *batch) full(s int64) bool {
	return len(b.out) >= b.maxRecords || len(b.out) > 0 && b.size+s > b.maxBytes
}

// takeFrom moves f's records into b, oldest first, while budget (bytes)
// lasts and b has room, and returns what is left of budget; the last
// record taken may overdraw it. q.mu is held.
func (q *LogQueue) takeFrom(f *flow, b *batch, budget int64) int64 {
	for f.count > 0 && budget > 0 {
		blk := f.first
		r := &blk.records[blk.head]
		s := RecordSize(r)
		if b.full(s) {
			break
		}
		if cap(b.out) == 0 {
			b.out = make([]LogRecord, 0, min(b.maxRecords, q.count))
		}
		b.out = append(b.out, *r)
		*r = LogRecord{} // no body kept alive, and the block needs no clearing
		blk.head++
		f.count--
		f.bytes -= s
		b.size += s
		budget -= s
		if blk.head == blk.tail { // drained: the last block only if f is empty
			f.first = blk.next
			if f.first == nil {
				f.last = nil
			}
			q.freeBlock(blk)
		}
	}
	return budget
}

// take fills a batch: events first, up to their reserved part of it, then
// containers' lines by deficit round robin, then events again if room is
// left.
func (q *LogQueue) take(out []LogRecord, maxRecords int, maxBytes int64) []LogRecord {
	q.mu.Lock()
	b := batch{out: out, maxRecords: maxRecords, maxBytes: maxBytes}
	q.takeFrom(&q.events, &b, max(maxBytes/eventReserveDiv, 1))
	for q.round != nil {
		f := q.round
		if f.deficit <= 0 {
			f.deficit += quantum // its turn begins
		}
		if f.deficit > 0 {
			f.deficit = q.takeFrom(f, &b, f.deficit)
		}
		if f.count > 0 && f.deficit > 0 {
			break // the batch is full; f's turn goes on in the next one
		}
		// f's turn is over: it leaves the round if empty, else goes last.
		if q.round = f.next; q.round == nil {
			q.roundTail = nil
		}
		f.next = nil
		if f.count == 0 {
			q.forget(f)
			continue
		}
		if q.roundTail == nil {
			q.round = f
		} else {
			q.roundTail.next = f
		}
		q.roundTail = f
		if b.full(0) {
			break
		}
	}
	q.takeFrom(&q.events, &b, maxBytes)
	q.count -= len(b.out)
	q.bytes -= b.size
	remaining := q.count
	if q.waiting && len(b.out) > 0 {
		close(q.room)
		q.room, q.waiting = make(chan struct{}), false
	}
	q.mu.Unlock()
	if remaining > 0 {
		signal(q.notEmpty)
	}
	return b.out
}
