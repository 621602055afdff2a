package config

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads and parses the configuration file at path. An empty path means
// no file: the defaults.
func Load(path string) (*Config, error) {
	if path == "" {
		c := Default()
		return &c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	return Parse(data, path)
}

// Parse parses a configuration file's content over the defaults, expands
// ${env:NAME} and ${file:PATH} references in values and validates the result. filename only
// labels errors. A bad file gives Errors: every problem found, each an
// *Error naming the file, the line and the key, in file order.
func Parse(data []byte, filename string) (*Config, error) {
	c, _, err := parse(data, filename, sources{lookupEnv: os.LookupEnv, readFile: readSecretFile})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// maxProblems bounds the problems one file reports: a generated file can
// hold thousands of the same mistake, and the first fifty say enough.
const maxProblems = 50

// parse is Parse with the environment and the files passed in, returning as well the line
// of every key present in the file (for tests and for placing Validate's
// errors).
func parse(data []byte, filename string, src sources) (*Config, map[string]int, error) {
	c := Default()
	d := &decoder{file: filename, lines: map[string]int{}, src: src}

	root, err := d.document(data)
	if err != nil {
		// The YAML does not parse: nothing after the syntax error can be
		// placed, so this is the only problem reported.
		return nil, nil, Errors{err.(*Error)}
	}
	if root != nil {
		d.note(d.decode(root, reflect.ValueOf(&c).Elem(), ""))
	}

	// Values that failed to decode kept their defaults; validating those
	// would only report the defaults, so their keys are left out.
	failed := make(map[string]bool, len(d.errs))
	for _, e := range d.errs {
		failed[e.Key] = true
	}
	problems := d.errs
	for _, p := range c.problems() {
		if failed[p.Key] {
			continue
		}
		p.File = filename
		p.Line = d.lineOf(p.Key)
		problems = append(problems, p)
	}
	if len(problems) == 0 {
		return &c, d.lines, nil
	}
	// File order is where a reader starts; problems the file does not
	// place (line 0) come last.
	fileOrder := func(e *Error) int {
		if e.Line == 0 {
			return math.MaxInt
		}
		return e.Line
	}
	slices.SortStableFunc(problems, func(a, b *Error) int { return cmp.Compare(fileOrder(a), fileOrder(b)) })
	if len(problems) > maxProblems {
		more := len(problems) - maxProblems
		problems = append(problems[:maxProblems:maxProblems], &Error{File: filename, Msg: fmt.Sprintf("%d more problems not shown", more)})
	}
	return nil, nil, Errors(problems)
}

// decoder walks a YAML node tree alongside the Config it fills. Doing the
// walk ourselves, rather than yaml's own Decode, is what lets every error
// name the dotted key, and lets unknown keys, duplicate keys and wrong types
// all be reported the same way.
type decoder struct {
	file  string
	lines map[string]int // dotted key -> line of the key in the file
	src   sources
	errs  []*Error // every problem met so far: the walk goes on past each
}

// note records err, an *Error from the walk, if not nil. The walk skips
// what is wrong (the value keeps its default) and goes on, so that one run
// of --config.check shows every problem of the file.
func (d *decoder) note(err error) {
	if err != nil {
		d.errs = append(d.errs, err.(*Error))
	}
}

// document parses data into its root node; nil means an empty document.
func (d *decoder) document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF { // empty, or only comments
			return nil, nil
		}
		return nil, d.syntaxError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return nil, d.syntaxError(err)
	case len(next.Content) > 0 && !isNull(next.Content[0]):
		// A second document would otherwise be ignored without a word.
		return nil, &Error{File: d.file, Line: next.Line, Msg: "only one YAML document is allowed"}
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, nil
	}
	return doc.Content[0], nil
}

// syntaxError turns yaml's "yaml: line N: problem" into an *Error.
func (d *decoder) syntaxError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, problem, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(num); err == nil {
				line, msg = l, problem
			}
		}
	}
	return &Error{File: d.file, Line: line, Msg: "invalid YAML: " + msg}
}

func (d *decoder) errorf(line int, key, format string, args ...any) *Error {
	return &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// lineOf is the line of key in the file, or of its closest ancestor there
// (a cross-field check may name a key left at its default), or 0.
func (d *decoder) lineOf(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// decode fills v from n. A null node ("key:" with no value, "~", "null")
// leaves v as it is, so a section whose keys are all commented out keeps its
// defaults rather than being zeroed.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string) error {
	line := n.Line // of the alias, not the anchor, when n is an alias
	n = resolveAlias(n)
	if isNull(n) {
		return nil
	}
	if isDuration(v.Type()) {
		return d.leaf(n, v, key, line)
	}
	switch v.Kind() {
	case reflect.Struct:
		return d.mapping(n, v, key, line)
	case reflect.Slice:
		return d.sequence(n, v, key, line)
	case reflect.Map:
		return d.dict(n, v, key, line)
	default:
		return d.leaf(n, v, key, line)
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, key string, line int) error {
	if n.Kind != yaml.MappingNode {
		return d.errorf(line, key, "expected a mapping, got %s", describe(n))
	}
	fields := yamlFields(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		name, err := d.keyName(k, key, seen)
		if err != nil {
			d.note(err)
			continue
		}
		child := joinKey(key, name)
		idx, ok := fields[name]
		if !ok {
			d.note(d.errorf(k.Line, child, "unknown key%s", suggest(name, fields)))
			continue
		}
		d.lines[child] = k.Line
		d.note(d.decode(val, v.Field(idx), child))
	}
	return nil
}

func (d *decoder) dict(n *yaml.Node, v reflect.Value, key string, line int) error {
	if n.Kind != yaml.MappingNode {
		return d.errorf(line, key, "expected a mapping, got %s", describe(n))
	}
	if v.Type().Key().Kind() != reflect.String {
		return d.errorf(line, key, "internal error: unsupported map type %s", v.Type())
	}
	if len(n.Content) == 0 {
		// An empty mapping is nil, like the defaults, so that the default
		// file parses back to exactly Default().
		v.Set(reflect.Zero(v.Type()))
		return nil
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		name, err := d.keyName(k, key, seen)
		if err != nil {
			d.note(err)
			continue
		}
		child := joinKey(key, name)
		d.lines[child] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		if err := d.decode(val, elem, child); err != nil {
			d.note(err)
			continue
		}
		m.SetMapIndex(reflect.ValueOf(name).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
	return nil
}

// keyName checks a mapping key: a scalar, not a merge key, not seen before.
func (d *decoder) keyName(k *yaml.Node, parent string, seen map[string]int) (string, error) {
	if k.Kind != yaml.ScalarNode {
		return "", d.errorf(k.Line, parent, "keys must be strings, got %s", describe(k))
	}
	if k.ShortTag() == "!!merge" {
		// Merges would need yaml's alias-expansion limits re-implemented
		// here; anchors and aliases of whole values cover the need.
		return "", d.errorf(k.Line, joinKey(parent, k.Value), "merge keys are not supported")
	}
	if first, dup := seen[k.Value]; dup {
		return "", d.errorf(k.Line, joinKey(parent, k.Value), "duplicate key, first set on line %d", first)
	}
	seen[k.Value] = k.Line
	return k.Value, nil
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, key string, line int) error {
	if n.Kind != yaml.SequenceNode {
		return d.errorf(line, key, "expected a list, got %s", describe(n))
	}
	if len(n.Content) == 0 {
		v.Set(reflect.Zero(v.Type())) // nil, as in Default()
		return nil
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		child := key + "[" + strconv.Itoa(i) + "]"
		d.lines[child] = item.Line
		d.note(d.decode(item, s.Index(i), child))
	}
	v.Set(s)
	return nil
}

// leaf decodes a scalar by the type of its destination, whatever its YAML
// tag: "8" and 8 are both fine for an integer, and an expanded
// "${env:PORT}" is a plain string until here.
func (d *decoder) leaf(n *yaml.Node, v reflect.Value, key string, line int) error {
	want := typeName(v)
	if n.Kind != yaml.ScalarNode {
		return d.errorf(line, key, "expected %s, got %s", want, describe(n))
	}
	s, err := expandEnv(n.Value, d.src)
	if err != nil {
		return d.errorf(line, key, "%s", err.Error())
	}
	if isDuration(v.Type()) {
		dur, err := time.ParseDuration(s)
		if err != nil {
			return d.errorf(line, key, `cannot parse %q as a duration (e.g. "10s", "1m30s")`, s)
		}
		v.SetInt(int64(dur))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, ok := parseBool(s)
		if !ok {
			return d.errorf(line, key, "cannot parse %q as a boolean (true or false)", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return d.errorf(line, key, "cannot parse %q as an integer", s)
		}
		v.SetInt(i)
	default:
		return d.errorf(line, key, "internal error: unsupported type %s", v.Type())
	}
	return nil
}

// parseBool accepts what yaml accepts for a bool field, YAML 1.1 spellings
// included.
func parseBool(s string) (bool, bool) {
	switch s {
	case "true", "True", "TRUE", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON":
		return true, true
	case "false", "False", "FALSE", "n", "N", "no", "No", "NO", "off", "Off", "OFF":
		return false, true
	}
	return false, false
}

func typeName(v reflect.Value) string {
	if isDuration(v.Type()) {
		return "a duration"
	}
	switch v.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	default:
		return "a string"
	}
}

// describe names what a node is, for "expected X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	default:
		return "an unexpected node"
	}
}

// resolveAlias follows an alias to its anchored node. yaml rejects unknown
// anchors when parsing; a node can still be an alias of itself, which the
// walk stops at a type mismatch since the schema is finite.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isDuration(t reflect.Type) bool { return t == reflect.TypeFor[time.Duration]() }

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func joinKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// yamlFields maps a struct's yaml key names to field indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}
