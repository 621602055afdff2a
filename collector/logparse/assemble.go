package logparse

import (
	"bytes"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// DefaultMaxLineBytes is the default logs.max_line_bytes.
const DefaultMaxLineBytes = 1 << 20

// retainBytes bounds the merge buffer kept between lines: a 1 MiB line
// must not pin 1 MiB per stream of every container for good, while lines
// of a few pieces (40 KB) reuse their buffer.
const retainBytes = 64 << 10

// Line is one complete line of a container's output.
type Line struct {
	Stream pipeline.Stream
	// Time is the timestamp of the line's first piece; zero if that piece
	// had no valid timestamp prefix.
	Time time.Time
	// Body is the line without its trailing newline (and, for a TTY, the
	// "\r" before it), bytes kept as written. It aliases the payload passed
	// to Add or the Assembler's buffer: it is only valid until the next
	// call to Add, Flush or Reset and until the payload's buffer is reused
	// (for a PieceReader, its next Next). Callers copy it.
	Body []byte
	// Truncated is set when the line was longer than maxLineBytes: Body
	// holds its first maxLineBytes bytes and the rest was discarded.
	Truncated bool
	// Unterminated is set on a line returned by Flush: the stream ended
	// before the line's newline, so the line may be incomplete.
	Unterminated bool
}

// Stats counts what an Assembler has seen.
type Stats struct {
	Pieces        uint64 // non-empty pieces passed to Add
	Lines         uint64 // lines returned by Add and Flush
	Bytes         uint64 // body bytes of those lines
	BadTimestamps uint64 // pieces without a valid timestamp prefix (their bytes are kept)
	Truncated     uint64 // lines cut at maxLineBytes
	DroppedBytes  uint64 // bytes discarded by those cuts
}

// Assembler turns Docker log pieces back into lines: it strips each
// piece's timestamp prefix, merges the partial pieces of a line (pieces
// not ending in "\n", kept per stream since stdout and stderr pieces
// interleave) and cuts lines longer than maxLineBytes. It is not safe for
// concurrent use; read Stats from the goroutine that calls Add.
type Assembler struct {
	max     int
	tty     bool
	pending [2]pending // stdout, stderr
	seq     uint64     // orders pending lines for Flush
	sec     secCache
	stats   Stats
}

// secCache remembers the last timestamp's "YYYY-MM-DDTHH:MM:SS" and its
// Unix seconds: consecutive lines mostly share them, which leaves only the
// nanoseconds to parse.
type secCache struct {
	key  [19]byte
	unix int64
	ok   bool
}

type pending struct {
	active   bool // a line has started and not ended
	overflow bool // the line outgrew maxLineBytes: discard until its end
	last     byte // the line's last byte so far, kept or discarded
	seq      uint64
	time     time.Time
	buf      []byte
	dropped  int // bytes discarded so far: always a suffix of the line
}

// NewAssembler returns an Assembler that cuts lines at maxLineBytes
// (DefaultMaxLineBytes if ≤ 0). With tty set, one "\r" before a line's
// "\n" is removed: a TTY's ONLCR turns every "\n" the program wrote into
// "\r\n", so the "\r" is not the program's.
func NewAssembler(maxLineBytes int, tty bool) *Assembler {
	if maxLineBytes <= 0 {
		maxLineBytes = DefaultMaxLineBytes
	}
	return &Assembler{max: maxLineBytes, tty: tty}
}

// Stats returns the counters.
func (a *Assembler) Stats() Stats { return a.stats }

// Reset drops any pending partial lines, e.g. when the stream is reopened
// from a checkpoint (the line is then read again from its first piece).
// The counters are kept.
func (a *Assembler) Reset() {
	for i := range a.pending {
		p := &a.pending[i]
		*p = pending{buf: p.buf[:0]}
	}
}

// Add consumes one piece "<ts> <content>" of stream and returns a line when
// the piece completes one. A stream other than pipeline.Stderr is treated
// as pipeline.Stdout. Empty pieces are ignored. A piece whose timestamp is
// missing or invalid is kept whole as content.
func (a *Assembler) Add(stream pipeline.Stream, payload []byte) (Line, bool) {
	if len(payload) == 0 {
		return Line{}, false
	}
	a.stats.Pieces++
	idx := 0
	if stream == pipeline.Stderr {
		idx = 1
	} else {
		stream = pipeline.Stdout
	}
	t, content, ok := a.splitTimestamp(payload)
	if !ok {
		a.stats.BadTimestamps++
	}
	return a.add(idx, stream, t, content)
}

func (a *Assembler) add(idx int, stream pipeline.Stream, t time.Time, content []byte) (Line, bool) {
	complete := len(content) > 0 && content[len(content)-1] == '\n'
	if complete {
		content = content[:len(content)-1]
	}
	p := &a.pending[idx]
	if !p.active {
		if complete {
			// The common case: a whole line in one piece, returned
			// without copying.
			if a.tty && len(content) > 0 && content[len(content)-1] == '\r' {
				content = content[:len(content)-1]
			}
			cut := 0
			if len(content) > a.max {
				cut = len(content) - a.max
				content = content[:a.max]
			}
			return a.emit(Line{Stream: stream, Time: t, Body: content}, cut), true
		}
		a.seq++
		buf := p.buf[:0]
		if cap(buf) > retainBytes {
			buf = nil // the last Body aliasing it is no longer valid
		}
		*p = pending{active: true, seq: a.seq, time: t, buf: buf}
	}
	p.append(content, a.max)
	if !complete {
		return Line{}, false
	}
	return a.finish(p, stream, false), true
}

func (p *pending) append(content []byte, limit int) {
	if len(content) == 0 {
		return
	}
	p.last = content[len(content)-1]
	if p.overflow {
		p.dropped += len(content)
		return
	}
	if room := limit - len(p.buf); len(content) > room {
		p.buf = append(p.buf, content[:room]...)
		p.dropped += len(content) - room
		p.overflow = true
		return
	}
	p.buf = append(p.buf, content...)
}

// finish turns the pending line into a Line and clears it; the buffer is
// kept for the next line, so Body stays valid until the next Add.
func (a *Assembler) finish(p *pending, stream pipeline.Stream, unterminated bool) Line {
	body, cut := p.buf, p.dropped
	if a.tty && !unterminated && p.last == '\r' {
		// The TTY's "\r" is not the program's: it is neither part of the
		// body nor a reason to call the line truncated.
		if cut > 0 {
			cut--
		} else {
			body = body[:len(body)-1]
		}
	}
	l := Line{Stream: stream, Time: p.time, Body: body, Unterminated: unterminated}
	*p = pending{buf: p.buf[:0]}
	return a.emit(l, cut)
}

func (a *Assembler) emit(l Line, cut int) Line {
	if cut > 0 {
		l.Truncated = true
		a.stats.Truncated++
		a.stats.DroppedBytes += uint64(cut)
	}
	a.stats.Lines++
	a.stats.Bytes += uint64(len(l.Body))
	return l
}

// Flush returns a pending partial line, the oldest first, marked
// Unterminated; call it until ok is false at the end of a stream. A line
// is not marked Truncated for having ended early.
func (a *Assembler) Flush() (Line, bool) {
	idx := -1
	for i := range a.pending {
		if a.pending[i].active && (idx < 0 || a.pending[i].seq < a.pending[idx].seq) {
			idx = i
		}
	}
	if idx < 0 {
		return Line{}, false
	}
	stream := pipeline.Stdout
	if idx == 1 {
		stream = pipeline.Stderr
	}
	return a.finish(&a.pending[idx], stream, true), true
}

// splitTimestamp splits "<ts> <content>". Without a valid timestamp it
// returns the whole payload as content, so no byte is lost.
func (a *Assembler) splitTimestamp(payload []byte) (time.Time, []byte, bool) {
	// Docker's fixed form first: no search.
	if len(payload) > fixedTSLen && payload[fixedTSLen] == ' ' {
		if t, ok := a.parseFixedCached(payload[:fixedTSLen]); ok {
			return t, payload[fixedTSLen+1:], true
		}
	}
	head := payload[:min(len(payload), maxTSLen+1)]
	if i := bytes.IndexByte(head, ' '); i > 0 {
		if t, err := ParseTimestamp(payload[:i]); err == nil {
			// Docker writes UTC; a numeric zone is normalised so that
			// every record's Time is in UTC.
			return t.UTC(), payload[i+1:], true
		}
	}
	return time.Time{}, payload, false
}

// parseFixedCached is parseFixed with secCache. A hit needs the same 19
// bytes as a timestamp parseFixed accepted, so it accepts and returns
// exactly what parseFixed would.
func (a *Assembler) parseFixedCached(b []byte) (time.Time, bool) {
	if a.sec.ok && b[19] == '.' && b[29] == 'Z' && string(b[:19]) == string(a.sec.key[:]) {
		if ns, ok := nanos(b[20:29]); ok {
			return time.Unix(a.sec.unix, int64(ns)).UTC(), true
		}
		return time.Time{}, false
	}
	t, ok := parseFixed(b)
	if ok {
		copy(a.sec.key[:], b[:19])
		a.sec.unix, a.sec.ok = t.Unix(), true
	}
	return t, ok
}

// PendingSince returns the timestamps of the first pieces of the lines
// begun and not finished on stdout and stderr (zero for none). A reader
// must not let a resume position pass them: a stream reopened later than
// a line's first piece loses the line (Engine < 24, which filters each
// piece) or returns it headless (Engine ≥ 24).
func (a *Assembler) PendingSince() (stdout, stderr time.Time) {
	return a.pending[0].startedAt(), a.pending[1].startedAt()
}

func (p *pending) startedAt() time.Time {
	if !p.active {
		return time.Time{}
	}
	return p.time
}

// PendingSince is the Assembler's PendingSince for the stream read.
func (lr *Reader) PendingSince() (stdout, stderr time.Time) { return lr.asm.PendingSince() }
