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
	Stream   Stream
	// Body is the line without its trailing newline. Bytes are kept as the
	// container wrote them, invalid UTF-8 included; exporters decide how to
	// encode them.
	Body []byte
	// Truncated is set when the line was longer than logs.max_line_bytes
	// and was cut; the rest of the line was discarded.
	Truncated bool
}
