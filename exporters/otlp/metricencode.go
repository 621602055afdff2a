package otlp

import (
	"math"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dockscope/dockscope/pipeline"
)

// Metrics are written straight to the OTLP wire format, as log records
// are (logencode.go): a container's dozen metrics are built in reused
// slices and their sizes computed before writing, so a round costs no
// generated-struct allocations. At 1,000 containers
// (BenchmarkMetricsRoundEncode1000, this kind of machine), building and
// marshalling the generated structs cost 36 ms, 15 MB and 248,000
// allocations per round; this encoder 22 ms, 4 MB and 46,000, most of them
// the Resources and the store's snapshot.

// metricKind is the data of a metric.
type metricKind uint8

const (
	kindGauge metricKind = iota
	kindSum
	kindMonotonicSum
)

// attrKV is a string attribute of a data point.
type attrKV struct{ key, value string }

// containerMetrics is one container's metrics. Each metric's points are a
// run of points; at most two attributes per point, which is all the
// conventions used here need.
type containerMetrics struct {
	start, now uint64 // of every point
	metrics    []metricRec
	points     []pointRec
}

type metricRec struct {
	name, desc, unit string
	kind             metricKind
	first, n         int // points[first:first+n]
	size, dataSize   int
}

type pointRec struct {
	value  float64
	attrs  [2]attrKV
	nattrs int
	size   int
}

func (c *containerMetrics) reset(start, now uint64) {
	c.start, c.now = start, now
	c.metrics, c.points = c.metrics[:0], c.points[:0]
}

// metric starts a metric; the points added next belong to it.
func (c *containerMetrics) metric(name, desc, unit string, kind metricKind) {
	c.metrics = append(c.metrics, metricRec{name: name, desc: desc, unit: unit, kind: kind, first: len(c.points)})
}

func (c *containerMetrics) point(v float64, attrs ...attrKV) {
	p := pointRec{value: v}
	p.nattrs = copy(p.attrs[:], attrs)
	c.points = append(c.points, p)
	c.metrics[len(c.metrics)-1].n++
}

func (c *containerMetrics) gauge(name, desc, unit string, v float64) {
	c.metric(name, desc, unit, kindGauge)
	c.point(v)
}

func (c *containerMetrics) sum(name, desc, unit string, monotonic bool, v float64) {
	kind := kindSum
	if monotonic {
		kind = kindMonotonicSum
	}
	c.metric(name, desc, unit, kind)
	c.point(v)
}

// Field numbers of the OTLP metric protos (opentelemetry/proto/metrics/v1,
// collector/metrics/v1).
const (
	fRequestResourceMetrics = 1 // ExportMetricsServiceRequest.resource_metrics

	fResourceMetricsResource     = 1
	fResourceMetricsScopeMetrics = 2
	fResourceMetricsSchemaURL    = 3

	fScopeMetricsScope     = 1
	fScopeMetricsMetrics   = 2
	fScopeMetricsSchemaURL = 3

	fMetricName        = 1
	fMetricDescription = 2
	fMetricUnit        = 3
	fMetricGauge       = 5
	fMetricSum         = 7

	fDataPoints             = 1 // Gauge.data_points, Sum.data_points
	fSumTemporality         = 2
	fSumMonotonic           = 3
	temporalityCumulative   = 2 // AGGREGATION_TEMPORALITY_CUMULATIVE
	fPointStartTime         = 2
	fPointTime              = 3
	fPointAsDouble          = 4
	fPointAttributes        = 7
	fixedFieldSize          = 1 + 8 // a fixed64 field with a one-byte tag
	metricsSchemaFieldBytes = 1 + 1 + len(semconv.SchemaURL)
)

// marshalScope is the InstrumentationScope of every request.
func marshalScope(version string) []byte {
	b, err := proto.Marshal(&commonpb.InstrumentationScope{Name: "github.com/dockscope/dockscope", Version: version})
	if err != nil {
		panic("marshalling the instrumentation scope: " + err.Error()) // a fixed, valid message
	}
	return b
}

// metricEncoder holds a round's ExportMetricsServiceRequest entries, one
// ResourceMetrics field per container, back to back: any run of
// consecutive containers is a valid request as it stands.
type metricEncoder struct {
	buf  []byte
	ends []int  // end of each container's entry in buf
	res  []byte // the container's Resource, reused
}

func (m *metricEncoder) reset() {
	m.buf, m.ends = m.buf[:0], m.ends[:0]
}

// release lets a large round's buffer go: ~3 KiB per container, not worth
// keeping for the next round, which is an interval away.
func (m *metricEncoder) release() {
	if cap(m.buf) > 256<<10 {
		m.buf = nil
	}
}

// add appends one container's ResourceMetrics.
func (m *metricEncoder) add(meta *pipeline.ContainerMeta, scope []byte, c *containerMetrics) {
	var err error
	m.res, err = proto.MarshalOptions{}.MarshalAppend(m.res[:0], containerResource(meta))
	if err != nil {
		panic("marshalling a resource: " + err.Error()) // strings only: cannot fail
	}
	metrics := 0
	for i := range c.metrics {
		metrics += sizeField(c.sizeMetric(&c.metrics[i]))
	}
	scopeMetrics := sizeField(len(scope)) + metrics + metricsSchemaFieldBytes
	rm := sizeField(len(m.res)) + sizeField(scopeMetrics) + metricsSchemaFieldBytes

	b := protowire.AppendTag(m.buf, fRequestResourceMetrics, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(rm))
	b = appendBytesField(b, fResourceMetricsResource, m.res)
	b = protowire.AppendTag(b, fResourceMetricsScopeMetrics, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(scopeMetrics))
	b = appendBytesField(b, fScopeMetricsScope, scope)
	for i := range c.metrics {
		b = c.appendMetric(b, &c.metrics[i])
	}
	b = appendStringField(b, fScopeMetricsSchemaURL, semconv.SchemaURL)
	b = appendStringField(b, fResourceMetricsSchemaURL, semconv.SchemaURL)
	m.buf = b
	m.ends = append(m.ends, len(m.buf))
}

// sizeMetric sizes a Metric message and its points, noting the sizes.
func (c *containerMetrics) sizeMetric(mr *metricRec) int {
	data := 0
	for i := mr.first; i < mr.first+mr.n; i++ {
		p := &c.points[i]
		p.size = fixedFieldSize + fixedFieldSize // time, as_double
		if c.start != 0 {
			p.size += fixedFieldSize
		}
		for _, a := range p.attrs[:p.nattrs] {
			p.size += sizeField(keyValueSize(a.key, sizeField(len(a.value))))
		}
		data += sizeField(p.size)
	}
	if mr.kind != kindGauge {
		data += 2 // aggregation_temporality
		if mr.kind == kindMonotonicSum {
			data += 2
		}
	}
	mr.dataSize = data
	mr.size = optStringSize(mr.name) + optStringSize(mr.desc) + optStringSize(mr.unit) + sizeField(data)
	return mr.size
}

// appendMetric writes a Metric field sized by sizeMetric, fields in the
// order the protobuf library writes them: by number, oneofs last.
func (c *containerMetrics) appendMetric(b []byte, mr *metricRec) []byte {
	b = protowire.AppendTag(b, fScopeMetricsMetrics, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(mr.size))
	b = appendOptString(b, fMetricName, mr.name)
	b = appendOptString(b, fMetricDescription, mr.desc)
	b = appendOptString(b, fMetricUnit, mr.unit)
	f := protowire.Number(fMetricGauge)
	if mr.kind != kindGauge {
		f = fMetricSum
	}
	b = protowire.AppendTag(b, f, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(mr.dataSize))
	for i := mr.first; i < mr.first+mr.n; i++ {
		p := &c.points[i]
		b = protowire.AppendTag(b, fDataPoints, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(p.size))
		if c.start != 0 {
			b = protowire.AppendTag(b, fPointStartTime, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, c.start)
		}
		b = protowire.AppendTag(b, fPointTime, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, c.now)
		for _, a := range p.attrs[:p.nattrs] {
			b = protowire.AppendTag(b, fPointAttributes, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(keyValueSize(a.key, sizeField(len(a.value)))))
			b = appendStringField(b, fKeyValueKey, a.key)
			b = protowire.AppendTag(b, fKeyValueValue, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(sizeField(len(a.value))))
			b = appendStringField(b, fAnyString, a.value)
		}
		// The value is a oneof, which the protobuf library writes after
		// the other fields.
		b = protowire.AppendTag(b, fPointAsDouble, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(p.value))
	}
	if mr.kind != kindGauge {
		b = protowire.AppendTag(b, fSumTemporality, protowire.VarintType)
		b = protowire.AppendVarint(b, temporalityCumulative)
		if mr.kind == kindMonotonicSum {
			b = protowire.AppendTag(b, fSumMonotonic, protowire.VarintType)
			b = protowire.AppendVarint(b, 1)
		}
	}
	return b
}

// request returns the request for the containers from first on that fit in
// limit bytes (at least one), and how many they are.
func (m *metricEncoder) request(first, limit int) ([]byte, int) {
	start := 0
	if first > 0 {
		start = m.ends[first-1]
	}
	n := 1
	for first+n < len(m.ends) && m.ends[first+n]-start <= limit {
		n++
	}
	return m.buf[start:m.ends[first+n-1]], n
}

// optStringSize is the size of a string field left out when empty, as
// proto3 does.
func optStringSize(s string) int {
	if s == "" {
		return 0
	}
	return sizeField(len(s))
}

func appendOptString(b []byte, f protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendStringField(b, f, s)
}
