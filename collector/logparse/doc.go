// Package logparse reads the log stream of the Engine API's
// GET /containers/{id}/logs?stdout=1&stderr=1&timestamps=1 back into lines.
//
// The stream is a sequence of Docker log messages ("pieces"), each
// "<RFC3339Nano timestamp> <content>". Docker cuts a line longer than
// 16 KiB into pieces of 16384 content bytes; every piece carries the first
// piece's timestamp and only the last ends in "\n". For a container
// without a TTY the pieces come in frames that say stdout or stderr
// (Demuxer), and the two streams' pieces may interleave; for a TTY they
// are concatenated raw (TTYSplitter). An Assembler merges pieces into
// lines, one record per line, and Reader ties the two together.
//
// Measured on Engine 20.10 (API 1.41): a 40,000-byte line arrives as
// frames of 16415, 16415 and 7264 bytes; a line of exactly 16384 bytes as a
// full 16415-byte piece and a second piece holding only "<ts> \n"; in a TTY
// a 16383-byte line as a piece ending in "\r" and a piece "<ts> \n".
//
// Bytes are never altered: invalid UTF-8, NUL, ESC and "\r" inside a line
// are kept; only the newline (and a TTY's "\r" before it) is removed.
package logparse
