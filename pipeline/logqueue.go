package pipeline

import (
	"context"
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
// queue of empty lines is bounded too. The queue stores records in
// fixed-size blocks, so there is no growth slack to add.
const recordOverhead = int64(unsafe.Sizeof(LogRecord{}))

// blockRecords is how many records one queue block holds.
const blockRecords = 512

// maxFreeBlocks bounds the emptied blocks kept for reuse (~60 KB each):
// enough for an exporter batch of the default 8192 records, so that a
// steady flow allocates none, without keeping a drained 64 MiB queue.
const maxFreeBlocks = 20

// block is one link of the queue's FIFO: records[head:tail] are queued.
type block struct {
	records    [blockRecords]LogRecord
	head, tail int
	next       *block
}

// RecordSize is what a record counts against the queue's byte bound.
func RecordSize(r *LogRecord) int64 { return int64(len(r.Body)) + recordOverhead }

// LogQueue is the byte-bounded FIFO between the log readers and the log
// exporter. It is the only buffer on the log path: when the exporter is slow
// or its backend down, it fills, and then readers block (or drop).
type LogQueue struct {
	limit    int64
	overflow Overflow
	counters *StageCounters

	mu          sync.Mutex
	first, last *block // FIFO of blocks, oldest first
	free        *block // emptied blocks kept for reuse, linked by next
	nfree       int
	count       int
	bytes       int64
	closed      bool
	// While PopBatch lingers it needs waking only when a batch is ready:
	// a wake-up per record would cost the exporter a goroutine switch per
	// line. Zero wakes it on every record.
	wakeRecords int
	wakeBytes   int64

	notEmpty chan struct{} // signalled when records arrive
	notFull  chan struct{} // signalled when records leave
}

// NewLogQueue returns a queue holding at most limit bytes of records.
// counters receive In for every record accepted and Dropped for every
// record discarded by the Drop policy.
func NewLogQueue(limit int64, overflow Overflow, counters *StageCounters) *LogQueue {
	return &LogQueue{
		limit:    limit,
		overflow: overflow,
		counters: counters,
		notEmpty: make(chan struct{}, 1),
		notFull:  make(chan struct{}, 1),
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
	for {
		queued, err := q.tryAppend(&r)
		if queued || err != nil {
			return queued, err
		}
		if q.overflow == Drop {
			q.counters.Dropped.Add(1)
			return false, nil
		}
		select {
		case <-q.notFull:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// PushBatch appends records in order, as Push would one by one, but taking
// the lock once for as many as fit. onDrop, if not nil, is told the index
// of each record the Drop policy discarded. It returns how many records
// were handled (queued or dropped), all of them unless ctx ended or the
// queue closed while it waited for room.
func (q *LogQueue) PushBatch(ctx context.Context, recs []LogRecord, onDrop func(i int)) (int, error) {
	i := 0
	for i < len(recs) {
		n, err := q.tryAppendBatch(recs[i:])
		i += n
		if err != nil {
			return i, err
		}
		if i == len(recs) {
			break
		}
		// recs[i] does not fit now.
		if q.overflow == Drop {
			q.counters.Dropped.Add(1)
			if onDrop != nil {
				onDrop(i)
			}
			i++
			continue
		}
		select {
		case <-q.notFull:
		case <-ctx.Done():
			return i, ctx.Err()
		}
	}
	return i, nil
}

// Offer appends a record only if there is room now, whatever the overflow
// policy, and reports whether it did. It is for callers that must never
// wait for the exporter, such as the Docker event handler (dockerd drops
// an event subscriber that falls behind); they count what is refused.
func (q *LogQueue) Offer(r LogRecord) bool {
	queued, _ := q.tryAppend(&r)
	return queued
}

// tryAppend queues r if it fits (or the queue is empty, so that a record
// larger than the whole bound cannot wedge a reader).
func (q *LogQueue) tryAppend(r *LogRecord) (bool, error) {
	n, err := q.tryAppendBatch(unsafe.Slice(r, 1))
	return n == 1, err
}

// tryAppendBatch queues the longest prefix of recs that fits and reports
// its length.
func (q *LogQueue) tryAppendBatch(recs []LogRecord) (int, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0, context.Canceled
	}
	n := 0
	for n < len(recs) {
		size := RecordSize(&recs[n])
		if q.bytes+size > q.limit && q.bytes != 0 {
			break
		}
		q.append(recs[n])
		q.bytes += size
		n++
	}
	room := q.bytes < q.limit
	wake := n > 0 && (q.count >= q.wakeRecords || q.bytes >= q.wakeBytes)
	q.mu.Unlock()
	q.counters.In.Add(uint64(n))
	if wake {
		signal(q.notEmpty)
	}
	if room && n > 0 {
		// notFull wakes one waiter; pass the wake-up on to the next
		// blocked reader while there is room.
		signal(q.notFull)
	}
	return n, nil
}

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

// append adds a record at the tail; q.mu is held.
func (q *LogQueue) append(r LogRecord) {
	if q.last == nil || q.last.tail == blockRecords {
		b := q.free
		if b != nil {
			q.free, b.next = b.next, nil
			q.nfree--
		} else {
			b = new(block)
		}
		if q.last == nil {
			q.first = b
		} else {
			q.last.next = b
		}
		q.last = b
	}
	q.last.records[q.last.tail] = r
	q.last.tail++
	q.count++
}

// Close wakes every waiter; Push fails from then on, PopBatch drains what is
// left and then returns nothing.
func (q *LogQueue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.notEmpty)
	signal(q.notFull)
}

// PopBatch waits for at least one record, then up to linger for the batch to
// reach maxRecords records or maxBytes bytes, and returns the records in
// FIFO order, appended to dst[:0] (whose array is reused: the caller clears
// it once done, so that it does not keep bodies alive). It returns an empty
// batch when ctx is done or the queue is closed and empty.
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

func (q *LogQueue) take(out []LogRecord, maxRecords int, maxBytes int64) []LogRecord {
	q.mu.Lock()
	size := int64(0)
	for q.first != nil && len(out) < maxRecords {
		b := q.first
		if b.head == b.tail {
			if b.tail < blockRecords {
				break // the tail block, empty for now
			}
			q.first = b.next
			if q.first == nil {
				q.last = nil
			}
			// Every record was zeroed as it was taken: no body is
			// kept alive, and the block needs no clearing.
			b.head, b.tail, b.next = 0, 0, nil
			if q.nfree < maxFreeBlocks {
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
		b.records[b.head] = LogRecord{}
		b.head++
		size += s
	}
	q.count -= len(out)
	q.bytes -= size
	remaining := q.count
	q.mu.Unlock()
	signal(q.notFull)
	if remaining > 0 {
		signal(q.notEmpty)
	}
	return out
}
