package pipeline

import "time"

// Stream tells stdout from stderr.
type Stream uint8

// The two output streams of a container. A TTY container has only stdout.
const (
	Stdout Stream = 1
	Stderr Stream = 2
)

func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return "unknown"
}

// LogRecord is one line of a container's output: one record per line, never
// per Docker frame (a line over 16 KiB arrives in several frames and is
// merged back before it becomes a record).
type LogRecord struct {
	ContainerID string
	// Container is the container's identity when the line was read, shared
	// by all of its records and never mutated, so exporters can build one
	// Resource from it per batch.
	Container *ContainerMeta
	// Time is Docker's timestamp of the line (of its first piece when it
	// was split); Observed is when the agent read it.
	Time     time.Time
	Observed time.Time
	// Body is the line without its trailing newline. Bytes are kept as the
	// container wrote them, invalid UTF-8 included; exporters decide how to
	// encode them.
	Body []byte
	// Hash is HashBody(Body, Truncated), stored by the reader so that the
	// read position and the checkpoint do not hash every line twice; zero
	// when not stored (PrintOf then computes it).
	Hash   uint64
	Stream Stream
	// Truncated is set when the line was longer than logs.max_line_bytes
	// and was cut; the rest of the line was discarded.
	Truncated bool
	// Event is set when the record is a container lifecycle event rather
	// than a line of output. Events have no place in the container's log,
	// so they never move its checkpoint; Stream is unset.
	Event *Event
}

// Event is a Docker container event shipped as a log record.
type Event struct {
	// Name is "container.<action>", e.g. container.die.
	Name     string
	Severity Severity
	Attrs    []EventAttr
}

// EventAttr is one attribute of an event: a string, or an integer when
// IsInt.
type EventAttr struct {
	Key   string
	Str   string
	Int   int64
	IsInt bool
}

// Severity of an event record, in OpenTelemetry's severity numbers.
type Severity int32

// The severities events use.
const (
	SeverityInfo  Severity = 9
	SeverityWarn  Severity = 13
	SeverityError Severity = 17
)

// String is the severity's OpenTelemetry short name.
func (s Severity) String() string {
	switch s {
	case SeverityInfo:
		return "INFO"
	case SeverityWarn:
		return "WARN"
	case SeverityError:
		return "ERROR"
	}
	return ""
}
