package otlp

import (
	"math"
	"unicode/utf8"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dockscope/dockscope/pipeline"
)

// logEncoder writes an OTLP ExportLogsServiceRequest straight from a batch
// of records into a reused buffer. Building the generated protobuf structs
// and marshalling them by reflection cost about as much as everything else
// the agent does per line; the wire format of a log line is a handful of
// fields, whose sizes are known before writing. Resources and the scope,
// which are few, are marshalled once with the protobuf library and
// reused. It is not safe for concurrent use.
type logEncoder struct {
	scope []byte // InstrumentationScope message
	// resources holds the batch's Resource messages, one per container:
	// marshalled per batch rather than cached across batches, so that the
	// metadata of removed containers is not kept.
	resources []byte
	buf       []byte

	// Per batch, reused: records grouped by container in a linked list
	// through next, and each record's size.
	groups  []logGroup
	byID    map[string]int32
	next    []int32
	sizes   []int
	evAttrs []byte
}

type logGroup struct {
	resource    []byte
	first, last int32
	records     int // bytes of the log_records fields
}

// Field numbers of the OTLP log protos (opentelemetry/proto/logs/v1,
// common/v1, collector/logs/v1).
const (
	fRequestResourceLogs = 1 // ExportLogsServiceRequest.resource_logs

	fResourceLogsResource  = 1
	fResourceLogsScopeLogs = 2
	fResourceLogsSchemaURL = 3

	fScopeLogsScope      = 1
	fScopeLogsLogRecords = 2

	fRecordTime         = 1
	fRecordSeverity     = 2
	fRecordSeverityText = 3
	fRecordBody         = 5
	fRecordAttributes   = 6
	fRecordObserved     = 11
	fRecordEventName    = 12

	fKeyValueKey   = 1
	fKeyValueValue = 2

	fAnyString = 1
	fAnyBool   = 2
	fAnyInt    = 3
	fAnyBytes  = 7
)

// Attribute fields shared by every line, encoded once (tag included).
var (
	fieldStdout    = attributeField("log.iostream", stringValue("stdout"))
	fieldStderr    = attributeField("log.iostream", stringValue("stderr"))
	fieldTruncated = attributeField("log.truncated", protowire.AppendVarint(protowire.AppendTag(nil, fAnyBool, protowire.VarintType), 1))
)

func newLogEncoder(scope *commonpb.InstrumentationScope) *logEncoder {
	b, err := proto.Marshal(scope)
	if err != nil {
		panic("marshalling the instrumentation scope: " + err.Error()) // a fixed, valid message
	}
	return &logEncoder{scope: b, byID: map[string]int32{}}
}

// encode returns the request for the whole batch; see encodeUpTo.
func (e *logEncoder) encode(batch []pipeline.LogRecord) []byte {
	req, _ := e.encodeUpTo(batch, math.MaxInt)
	return req
}

// encodeUpTo returns the request for the longest prefix of batch, n
// records, that encodes to at most limit bytes (at least one record,
// whatever its size): one ResourceLogs per container, in order of first
// appearance, each container's records in batch order. The result is valid
// until the next call.
func (e *logEncoder) encodeUpTo(batch []pipeline.LogRecord, limit int) (req []byte, n int) {
	e.resources = e.resources[:0]
	n, total := e.group(batch, limit)
	b := e.buf[:0]
	if cap(b) < total {
		b = make([]byte, 0, total+total/8)
	}
	for i := range e.groups {
		g := &e.groups[i]
		scopeLogs := sizeField(len(e.scope)) + g.records
		b = protowire.AppendTag(b, fRequestResourceLogs, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(e.resourceLogsSize(g)))
		b = appendBytesField(b, fResourceLogsResource, g.resource)
		b = protowire.AppendTag(b, fResourceLogsScopeLogs, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(scopeLogs))
		b = appendBytesField(b, fScopeLogsScope, e.scope)
		for j := g.first; j >= 0; j = e.next[j] {
			b = protowire.AppendTag(b, fScopeLogsLogRecords, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(e.sizes[j]))
			b = appendRecord(b, &batch[j])
		}
		b = protowire.AppendTag(b, fResourceLogsSchemaURL, protowire.BytesType)
		b = protowire.AppendString(b, semconv.SchemaURL)
	}
	e.buf = b
	// Let the records' bodies and metadata go with the batch.
	clear(e.groups)
	clear(e.byID)
	e.groups = e.groups[:0]
	return b, n
}

func (e *logEncoder) resourceLogsSize(g *logGroup) int {
	return sizeField(len(g.resource)) + sizeField(sizeField(len(e.scope))+g.records) + sizeField(len(semconv.SchemaURL))
}

// group links each record of the longest prefix of batch that encodes to
// at most limit bytes (at least one record) to the next one of its
// container, and sizes it. It returns the prefix's length and the
// request's size, kept exact record by record: a container's first record
// brings its Resource, the scope and the schema URL along.
func (e *logEncoder) group(batch []pipeline.LogRecord, limit int) (n, total int) {
	e.next = grow(e.next, len(batch))
	e.sizes = grow(e.sizes, len(batch))
	cur, curID := int32(-1), ""
	for i := range batch {
		r := &batch[i]
		created := false
		if cur < 0 || r.ContainerID != curID {
			g, ok := e.byID[r.ContainerID]
			if !ok {
				g = int32(len(e.groups))
				e.groups = append(e.groups, logGroup{resource: e.resource(r), first: -1, last: -1})
				created = true
			}
			cur, curID = g, r.ContainerID
		}
		g := &e.groups[cur]
		was := 0
		if !created {
			was = sizeField(e.resourceLogsSize(g))
		}
		size := recordSize(r)
		g.records += sizeField(size)
		grown := total - was + sizeField(e.resourceLogsSize(g))
		if i > 0 && grown > limit {
			if created {
				e.resources = e.resources[:len(e.resources)-len(g.resource)]
				e.groups = e.groups[:len(e.groups)-1]
			} else {
				g.records -= sizeField(size)
			}
			return i, total
		}
		if created {
			e.byID[r.ContainerID] = cur
		}
		total = grown
		if g.last >= 0 {
			e.next[g.last] = int32(i)
		} else {
			g.first = int32(i)
		}
		g.last = int32(i)
		e.next[i] = -1
		e.sizes[i] = size
	}
	return len(batch), total
}

func (e *logEncoder) resource(r *pipeline.LogRecord) []byte {
	start := len(e.resources)
	var err error
	e.resources, err = proto.MarshalOptions{}.MarshalAppend(e.resources, logResource(r))
	if err != nil {
		panic("marshalling a resource: " + err.Error()) // strings only: cannot fail
	}
	return e.resources[start:len(e.resources):len(e.resources)]
}

// recordSize is the size of a LogRecord message.
func recordSize(r *pipeline.LogRecord) int {
	n := 0
	if !r.Time.IsZero() {
		n += 1 + 8
	}
	if !r.Observed.IsZero() {
		n += 1 + 8
	}
	n += sizeField(sizeField(len(r.Body)))
	if r.Event != nil {
		return n + eventSize(r.Event)
	}
	n += len(fieldStdout) // both streams' fields have the same size
	if r.Truncated {
		n += len(fieldTruncated)
	}
	return n
}

// appendRecord writes a LogRecord message, fields in number order.
func appendRecord(b []byte, r *pipeline.LogRecord) []byte {
	if !r.Time.IsZero() {
		b = protowire.AppendTag(b, fRecordTime, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, uint64(r.Time.UnixNano()))
	}
	if r.Event != nil {
		b = appendEventSeverity(b, r.Event)
	}
	b = protowire.AppendTag(b, fRecordBody, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeField(len(r.Body))))
	b = appendBody(b, r.Body)
	if r.Event != nil {
		b = appendEventAttributes(b, r.Event)
	} else {
		if r.Stream == pipeline.Stderr {
			b = append(b, fieldStderr...)
		} else {
			b = append(b, fieldStdout...)
		}
		if r.Truncated {
			b = append(b, fieldTruncated...)
		}
	}
	if !r.Observed.IsZero() {
		b = protowire.AppendTag(b, fRecordObserved, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, uint64(r.Observed.UnixNano()))
	}
	if r.Event != nil && r.Event.Name != "" {
		b = appendStringField(b, fRecordEventName, r.Event.Name)
	}
	return b
}

// appendBody writes the AnyValue of a line: a string when it is valid
// UTF-8 (protobuf strings must be), bytes otherwise, so that binary output
// reaches the backend unchanged instead of failing the whole request. Both
// fields have one-byte tags, so the size does not depend on the choice.
func appendBody(b []byte, body []byte) []byte {
	f := protowire.Number(fAnyString)
	if !utf8.Valid(body) {
		f = fAnyBytes
	}
	b = protowire.AppendTag(b, f, protowire.BytesType)
	return protowire.AppendBytes(b, body)
}

// An event carries its name both in event_name and as the event.name
// attribute, which receivers older than OTLP 1.5 still look for, and its
// severity.
// Fields at their zero value are left out, as protobuf does.
func eventSize(ev *pipeline.Event) int {
	n := 0
	if ev.Name != "" {
		n += sizeField(len(ev.Name)) // event_name: field 12 has a one-byte tag
	}
	if ev.Severity != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(ev.Severity)))
	}
	if s := ev.Severity.String(); s != "" {
		n += sizeField(len(s))
	}
	n += sizeField(keyValueSize("event.name", sizeField(len(ev.Name))))
	for _, a := range ev.Attrs {
		n += sizeField(keyValueSize(a.Key, eventAttrValueSize(a)))
	}
	return n
}

func appendEventSeverity(b []byte, ev *pipeline.Event) []byte {
	if ev.Severity != 0 {
		b = protowire.AppendTag(b, fRecordSeverity, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(ev.Severity)))
	}
	if s := ev.Severity.String(); s != "" {
		b = appendStringField(b, fRecordSeverityText, s)
	}
	return b
}

func appendEventAttributes(b []byte, ev *pipeline.Event) []byte {
	b = appendKeyValue(b, "event.name", sizeField(len(ev.Name)), func(b []byte) []byte {
		return appendStringField(b, fAnyString, ev.Name)
	})
	for _, a := range ev.Attrs {
		b = appendKeyValue(b, a.Key, eventAttrValueSize(a), func(b []byte) []byte {
			if a.IsInt {
				b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
				return protowire.AppendVarint(b, uint64(a.Int))
			}
			return appendStringField(b, fAnyString, a.Str)
		})
	}
	return b
}

func eventAttrValueSize(a pipeline.EventAttr) int {
	if a.IsInt {
		return 1 + protowire.SizeVarint(uint64(a.Int))
	}
	return sizeField(len(a.Str))
}

// keyValueSize is the size of a KeyValue message whose AnyValue is
// valueSize bytes.
func keyValueSize(key string, valueSize int) int {
	return sizeField(len(key)) + sizeField(valueSize)
}

// appendKeyValue writes an attributes field holding key and the AnyValue
// that value writes (valueSize bytes).
func appendKeyValue(b []byte, key string, valueSize int, value func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, fRecordAttributes, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(keyValueSize(key, valueSize)))
	b = appendStringField(b, fKeyValueKey, key)
	b = protowire.AppendTag(b, fKeyValueValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(valueSize))
	return value(b)
}

// attributeField encodes a whole attributes field of a LogRecord.
func attributeField(key string, value []byte) []byte {
	return appendKeyValue(nil, key, len(value), func(b []byte) []byte { return append(b, value...) })
}

func stringValue(s string) []byte { return appendStringField(nil, fAnyString, s) }

// sizeField is the size of a length-delimited field of n bytes whose tag
// takes one byte (field numbers up to 15).
func sizeField(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

func appendBytesField(b []byte, f protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, f, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendStringField(b []byte, f protowire.Number, v string) []byte {
	b = protowire.AppendTag(b, f, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// grow returns s with length n, reusing its array when it is large enough.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}
