package pipeline

// The FIFO LogQueue as it was before per-container dequeue (commit
// 356275c), kept only so that BenchmarkLogQueueFairVsFIFO compares the two
// in one run. Not used by the agent.

import (
	"context"
	"sync"
	"time"
	"unsafe"
)

// fifoBlockRecords is how many records one queue block holds.
const fifoBlockRecords = 512

// fifoMaxFreeBlocks bounds the emptied blocks kept for reuse (~60 KB each):
// enough for an exporter batch of the default 8192 records, so that a
// steady flow allocates none, without keeping a drained 64 MiB queue.
const fifoMaxFreeBlocks = 20

// block is one link of the queue's FIFO: records[head:tail] are queued.
// shares[i] is the share records[i] counts against (nil for an event).
type fifoBlock struct {
	records    [fifoBlockRecords]LogRecord
	shares     [fifoBlockRecords]*fifoShare
	head, tail int
	next       *fifoBlock
}

// share is the bytes of one container's lines in the queue.
type fifoShare struct{ bytes int64 }

// fifoLogQueue is the byte-bounded FIFO between the log readers and the log
// exporter. It is the only buffer on the log path: when the exporter is slow
// or its backend down, it fills, and then readers block (or drop) — first
// those holding more than their share, so that one noisy container cannot
// starve the others. Order is FIFO across containers: a line waits behind
// at most the bound's worth of records, so its delay is bounded by the
// bound over the backend's rate, not by the noisy container's output.
type fifoLogQueue struct {
	limit    int64
	overflow Overflow
	counters *StageCounters

	// lineLimit is limit less the events' reserve: lines never use it.
	lineLimit int64

	mu          sync.Mutex
	first, last *fifoBlock // FIFO of blocks, oldest first
	free        *fifoBlock // emptied blocks kept for reuse, linked by next
	nfree       int
	count       int
	bytes       int64
	closed      bool
	// shares holds the containers with lines queued; a share leaves when
	// its last line does, so the map is bounded by the queue's records.
	shares     map[string]*fifoShare
	freeShares []*fifoShare // kept for reuse, so a quiet container allocates none
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

// newFIFOLogQueue returns a queue holding at most limit bytes of records, of
// which lines may use all but EventReserve(limit). counters receive In for
// every record accepted and Dropped for every record discarded by the Drop
// policy.
func newFIFOLogQueue(limit int64, overflow Overflow, counters *StageCounters) *fifoLogQueue {
	return &fifoLogQueue{
		limit:     limit,
		lineLimit: limit - EventReserve(limit),
		overflow:  overflow,
		counters:  counters,
		shares:    map[string]*fifoShare{},
		notEmpty:  make(chan struct{}, 1),
		room:      make(chan struct{}),
	}
}

// Push appends a record. With Block it waits for room (or ctx); a record
// larger than the whole bound is admitted into an empty queue so that it
// cannot wedge the reader. It reports whether the record was queued; false
// with a nil error means it was dropped.
func (q *fifoLogQueue) Push(ctx context.Context, r LogRecord) (bool, error) {
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
func (q *fifoLogQueue) PushBatch(ctx context.Context, recs []LogRecord, onDrop func(i int)) (int, error) {
	i := 0
	for i < len(recs) {
		n, room, err := q.tryAppendBatch(recs[i:], q.overflow == Block)
		i += n
		if err != nil {
			return i, err
		}
		if i == len(recs) {
			break
		}
		// recs[i] may not go in now.
		if q.overflow == Drop {
			q.counters.Dropped.Add(1)
			if onDrop != nil {
				onDrop(i)
			}
			i++
			continue
		}
		select {
		case <-room:
		case <-ctx.Done():
			return i, ctx.Err()
		}
	}
	return i, nil
}

// Offer appends a record only if there is room now, whatever the overflow
// policy, and reports whether it did. It is for callers that must never
// wait for the exporter, such as the Docker event handler (dockerd drops
// an event subscriber that falls behind); they count what is refused. A
// record with Event set may use the events' reserve (EventReserve), which
// lines never fill.
func (q *fifoLogQueue) Offer(r LogRecord) bool {
	n, _, _ := q.tryAppendBatch(unsafe.Slice(&r, 1), false)
	return n == 1
}

// admit reports whether a record of size bytes may be queued now; sh is
// its container's share, nil for an event. q.mu is held.
func (q *fifoLogQueue) admit(sh *fifoShare, size int64) bool {
	if q.bytes == 0 {
		return true // a record larger than the whole bound cannot wedge a reader
	}
	if sh == nil {
		return q.bytes+size <= q.limit
	}
	if q.bytes+size > q.lineLimit {
		return false
	}
	held := sh.bytes + size
	return held <= shareFloor || held <= shareFactor*(q.lineLimit-q.bytes)
}

// tryAppendBatch queues the longest prefix of recs that may go in now and
// reports its length. When it stops short and wait is set, room is the
// channel closed when records next leave.
func (q *fifoLogQueue) tryAppendBatch(recs []LogRecord, wait bool) (n int, room <-chan struct{}, err error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0, nil, context.Canceled
	}
	// A tailer's batch is one container's lines: look its share up once
	// (the ID strings are then the same, and compare by pointer).
	var sh *fifoShare
	id := ""
	for n < len(recs) {
		r := &recs[n]
		var s *fifoShare
		if r.Event == nil {
			if sh == nil || r.ContainerID != id {
				id, sh = r.ContainerID, q.shareOf(r.ContainerID)
			}
			s = sh
		}
		size := RecordSize(r)
		if !q.admit(s, size) {
			break
		}
		q.append(r, s)
		q.bytes += size
		if s != nil {
			s.bytes += size
		}
		n++
	}
	if sh != nil && sh.bytes == 0 {
		q.dropShare(id, sh) // looked up for a line that did not go in
	}
	if n < len(recs) && wait {
		room, q.waiting = q.room, true
	}
	wake := n > 0 && (q.count >= q.wakeRecords || q.bytes >= q.wakeBytes)
	q.mu.Unlock()
	q.counters.In.Add(uint64(n))
	if wake {
		signal(q.notEmpty)
	}
	return n, room, nil
}

// shareOf returns a container's share, creating it; q.mu is held.
func (q *fifoLogQueue) shareOf(id string) *fifoShare {
	if sh, ok := q.shares[id]; ok {
		return sh
	}
	var sh *fifoShare
	if n := len(q.freeShares); n > 0 {
		sh, q.freeShares = q.freeShares[n-1], q.freeShares[:n-1]
	} else {
		sh = new(fifoShare)
	}
	q.shares[id] = sh
	return sh
}

// dropShare forgets a share whose last line left; q.mu is held.
func (q *fifoLogQueue) dropShare(id string, sh *fifoShare) {
	delete(q.shares, id)
	if len(q.freeShares) < fifoMaxFreeShares {
		q.freeShares = append(q.freeShares, sh)
	}
}

// fifoMaxFreeShares bounds the emptied shares kept for reuse.
const fifoMaxFreeShares = 256

// Bytes is what the queue holds now.
func (q *fifoLogQueue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// Len is the number of records queued.
func (q *fifoLogQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}

// append adds a record at the tail; q.mu is held.
func (q *fifoLogQueue) append(r *LogRecord, sh *fifoShare) {
	if q.last == nil || q.last.tail == fifoBlockRecords {
		b := q.free
		if b != nil {
			q.free, b.next = b.next, nil
			q.nfree--
		} else {
			b = new(fifoBlock)
		}
		if q.last == nil {
			q.first = b
		} else {
			q.last.next = b
		}
		q.last = b
	}
	q.last.records[q.last.tail] = *r
	q.last.shares[q.last.tail] = sh
	q.last.tail++
	q.count++
}

// Close wakes every waiter; Push fails from then on, PopBatch drains what is
// left and then returns nothing.
func (q *fifoLogQueue) Close() {
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
// reach maxRecords records or maxBytes bytes, and returns the records in
// FIFO order, appended to dst[:0] (whose array is reused: the caller clears
// it once done, so that it does not keep bodies alive). It returns an empty
// batch when ctx is done or the queue is closed and empty.
func (q *fifoLogQueue) PopBatch(ctx context.Context, dst []LogRecord, maxRecords int, maxBytes int64, linger time.Duration) []LogRecord {
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
func (q *fifoLogQueue) full(maxRecords int, maxBytes int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count >= maxRecords || q.bytes >= maxBytes || q.closed
}

func (q *fifoLogQueue) take(out []LogRecord, maxRecords int, maxBytes int64) []LogRecord {
	q.mu.Lock()
	size := int64(0)
	for q.first != nil && len(out) < maxRecords {
		b := q.first
		if b.head == b.tail {
			if b.tail < fifoBlockRecords {
				break // the tail block, empty for now
			}
			q.first = b.next
			if q.first == nil {
				q.last = nil
			}
			// Every record was zeroed as it was taken: no body is
			// kept alive, and the block needs no clearing.
			b.head, b.tail, b.next = 0, 0, nil
			if q.nfree < fifoMaxFreeBlocks {
				b.next, q.free = q.free, b
				q.nfree++
			}
			continue
		}
		s := RecordSize(&b.records[b.head])
		if len(out) > 0 && size+s > maxBytes {
			break
		}
		if cap(out) == 0 {
			out = make([]LogRecord, 0, min(maxRecords, q.count))
		}
		out = append(out, b.records[b.head])
		if sh := b.shares[b.head]; sh != nil {
			if sh.bytes -= s; sh.bytes == 0 {
				q.dropShare(b.records[b.head].ContainerID, sh)
			}
			b.shares[b.head] = nil
		}
		b.records[b.head] = LogRecord{}
		b.head++
		size += s
	}
	q.count -= len(out)
	q.bytes -= size
	remaining := q.count
	if q.waiting && len(out) > 0 {
		close(q.room)
		q.room, q.waiting = make(chan struct{}), false
	}
	q.mu.Unlock()
	if remaining > 0 {
		signal(q.notEmpty)
	}
	return out
}
