package config

import (
	"strconv"
	"strings"
)

// Error is a problem with the configuration: a YAML syntax error, an
// unknown key, a value of the wrong type or one that fails validation. It is
// a type of its own so that the agent can tell a bad file (exit code 2) from
// other failures.
type Error struct {
	// File is the configuration file's name; empty when the configuration
	// did not come from a file.
	File string
	// Line is 1-based; 0 when unknown.
	Line int
	// Key is the dotted YAML path of the offending key, list items as
	// "discovery.include.names[2]"; empty for problems with the file as a
	// whole, such as a syntax error.
	Key string
	// Msg says what is wrong.
	Msg string
}

// Error formats as "file:line: key: msg", leaving out whatever is unknown:
// "file: key: msg", "line 3: key: msg", "key: msg", "file:line: msg".
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are all the problems of one configuration file, in file order;
// never empty. Parse reports them together so that one run of
// --config.check shows every mistake rather than one per run.
type Errors []*Error

// Error puts each problem on a line of its own.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find the problems, the first one first.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}
