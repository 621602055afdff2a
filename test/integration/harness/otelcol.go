package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Collector is a real OpenTelemetry Collector started by Otelcol: an otlp
// receiver (gRPC and HTTP) whose metrics and logs pipelines go to a file
// exporter (OTLP JSON, one export request per line) and the debug exporter
// (one summary line per export in the process output).
type Collector struct {
	GRPCEndpoint string // "127.0.0.1:port", for OTLP/gRPC
	HTTPEndpoint string // "http://127.0.0.1:port", for OTLP/HTTP (paths /v1/metrics, /v1/logs)
	OutputPath   string // the file exporter's output
	Config       string // path of the collector's configuration
	bin          string
	// earlier holds the outputs of previous runs: the file exporter
	// truncates its file when it starts, so Start moves the old one aside.
	earlier []string
	Proc    *Process
}

var (
	otelcolMu  sync.Mutex
	otelcolBin string
)

// OtelcolBinary returns the path of the test collector binary. It is
// $DOCKSCOPE_OTELCOL_BIN if that is set; otherwise test/otelcol/build.sh
// --cache builds it into the per-user cache (minutes the first time, then
// reused across test runs until test/otelcol changes).
func OtelcolBinary(t testing.TB) string {
	t.Helper()
	otelcolMu.Lock()
	defer otelcolMu.Unlock()
	if otelcolBin != "" {
		return otelcolBin
	}
	if bin := os.Getenv("DOCKSCOPE_OTELCOL_BIN"); bin != "" {
		otelcolBin = bin
		return bin
	}
	script := filepath.Join(RepoRoot(t), "test", "otelcol", "build.sh")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("sh", script, "--cache")
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("harness: %s --cache: %v\n%s%s", script, err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	otelcolBin = strings.TrimSpace(lines[len(lines)-1])
	if stderr.Len() > 0 {
		t.Logf("harness: %s", strings.TrimSpace(stderr.String()))
	}
	return otelcolBin
}

// Otelcol starts the test OpenTelemetry Collector (see OtelcolBinary) with
// OTLP gRPC and HTTP receivers on free ports of 127.0.0.1 and a file exporter
// writing to a temporary file, and waits until both receivers accept
// connections. It is stopped when the test ends.
func Otelcol(t testing.TB) *Collector {
	t.Helper()
	bin := OtelcolBinary(t)
	dir := t.TempDir()
	c := &Collector{
		OutputPath: filepath.Join(dir, "otlp.jsonl"),
		Config:     filepath.Join(dir, "otelcol.yaml"),
	}
	grpcPort, httpPort := FreePort(t), FreePort(t)
	c.GRPCEndpoint = fmt.Sprintf("127.0.0.1:%d", grpcPort)
	c.HTTPEndpoint = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
exporters:
  file:
    path: %q
    format: json
    flush_interval: 50ms
  debug:
    verbosity: basic
service:
  telemetry:
    logs:
      level: info
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file, debug]
    logs:
      receivers: [otlp]
      exporters: [file, debug]
`, grpcPort, httpPort, c.OutputPath)
	if err := os.WriteFile(c.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c.bin = bin
	c.Start(t)
	return c
}

// Start (re)starts a stopped collector with the same configuration, ports
// and output file, and waits until both receivers accept connections: a
// backend that went away and came back.
func (c *Collector) Start(t testing.TB) {
	t.Helper()
	if c.Proc != nil {
		prev := fmt.Sprintf("%s.%d", c.OutputPath, len(c.earlier))
		if err := os.Rename(c.OutputPath, prev); err == nil {
			c.earlier = append(c.earlier, prev)
		}
	}
	c.Proc = StartProcess(t, c.bin, nil, "--config", c.Config)
	WaitFor(t, 60*time.Second, 50*time.Millisecond, func() (bool, string) {
		if code, exited := c.Proc.Exited(); exited {
			t.Fatalf("harness: otelcol exited with code %d:\n%s", code, c.Proc.Output())
		}
		for _, addr := range []string{c.GRPCEndpoint, strings.TrimPrefix(c.HTTPEndpoint, "http://")} {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return false, "otelcol not listening: " + err.Error()
			}
			conn.Close()
		}
		return true, ""
	})
}

// Stop stops the collector (SIGTERM), which flushes the file exporter.
func (c *Collector) Stop() error { return c.Proc.Stop() }

// Attrs are OTLP attributes. Values are string, bool, int64, float64,
// []any (arrayValue), map[string]any (kvlistValue), []byte (bytesValue) or nil.
type Attrs map[string]any

// Str returns the value of key formatted as a string ("" if absent); an
// array is formatted as its elements joined by ",".
func (a Attrs) Str(key string) string {
	v, ok := a[key]
	if !ok || v == nil {
		return ""
	}
	if arr, ok := v.([]any); ok {
		parts := make([]string, len(arr))
		for i, e := range arr {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

// Has reports whether key is present.
func (a Attrs) Has(key string) bool { _, ok := a[key]; return ok }

// ResourceMetrics is one resource of an OTLP metrics export, with the
// metrics of all its scopes.
type ResourceMetrics struct {
	Resource  Attrs
	SchemaURL string
	Metrics   []Metric
}

// Metric is one OTLP metric with its data points.
type Metric struct {
	Scope        string // instrumentation scope name
	ScopeVersion string
	Name         string
	Unit         string
	Description  string
	Type         string // gauge, sum, histogram, exponentialHistogram, summary
	Monotonic    bool   // sums only
	Temporality  string // cumulative, delta or "" (sums and histograms)
	Points       []Point
}

// Point is one data point. Value is the gauge or sum value (asInt or
// asDouble), or the sum of a histogram or summary.
type Point struct {
	Attrs     Attrs
	Value     float64
	IsInt     bool // Value came from asInt
	Count     uint64
	Buckets   []uint64  // histogram bucket counts
	Bounds    []float64 // histogram explicit bounds
	StartTime time.Time
	Time      time.Time
}

// Metric returns the first metric named name, or false.
func (r ResourceMetrics) Metric(name string) (Metric, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// Point returns the first data point whose attributes include all of want
// (compared with Attrs.Str), or false.
func (m Metric) Point(want map[string]string) (Point, bool) {
	for _, p := range m.Points {
		ok := true
		for k, v := range want {
			if !p.Attrs.Has(k) || p.Attrs.Str(k) != v {
				ok = false
				break
			}
		}
		if ok {
			return p, true
		}
	}
	return Point{}, false
}

// ResourceLogs is one resource of an OTLP logs export, with the records of
// all its scopes.
type ResourceLogs struct {
	Resource  Attrs
	SchemaURL string
	Records   []LogRecord
}

// LogRecord is one OTLP log record. Body is the body's value (usually a string).
type LogRecord struct {
	Scope          string
	Time           time.Time
	ObservedTime   time.Time
	SeverityNumber int
	SeverityText   string
	Body           any
	Attrs          Attrs
	Flags          uint32
	EventName      string
}

// BodyString returns the body as a string ([]byte bodies converted, other
// kinds formatted with fmt).
func (l LogRecord) BodyString() string {
	switch b := l.Body.(type) {
	case string:
		return b
	case []byte:
		return string(b)
	case nil:
		return ""
	default:
		return fmt.Sprint(b)
	}
}

// ResourceMetrics reads everything the collector has written so far and
// returns the resource metrics of all export requests, in arrival order.
func (c *Collector) ResourceMetrics(t testing.TB) []ResourceMetrics {
	t.Helper()
	var all []ResourceMetrics
	for _, path := range c.outputs() {
		rm, _, err := ReadOTLPJSONFile(path)
		if err != nil {
			t.Fatalf("harness: %v", err)
		}
		all = append(all, rm...)
	}
	return all
}

// outputs lists every run's output file, oldest first.
func (c *Collector) outputs() []string {
	return append(append([]string(nil), c.earlier...), c.OutputPath)
}

// ResourceLogs reads everything the collector has written so far and returns
// the resource logs of all export requests, in arrival order.
func (c *Collector) ResourceLogs(t testing.TB) []ResourceLogs {
	t.Helper()
	var all []ResourceLogs
	for _, path := range c.outputs() {
		_, rl, err := ReadOTLPJSONFile(path)
		if err != nil {
			t.Fatalf("harness: %v", err)
		}
		all = append(all, rl...)
	}
	return all
}

// LogRecords returns all log records received so far with their resources,
// flattened, in arrival order.
func (c *Collector) LogRecords(t testing.TB) []ResourceLogRecord {
	t.Helper()
	var out []ResourceLogRecord
	for _, rl := range c.ResourceLogs(t) {
		for _, r := range rl.Records {
			out = append(out, ResourceLogRecord{Resource: rl.Resource, LogRecord: r})
		}
	}
	return out
}

// LogTail reads a collector's log records incrementally: each Next returns
// only what was written since the previous call, so a test shipping
// hundreds of thousands of lines does not parse the whole output at every
// poll. Files are tracked by inode, so a restart's rename (see Start) keeps
// its place.
type LogTail struct {
	c       *Collector
	offsets map[uint64]int64
}

// Tail starts reading c's log records from the beginning.
func (c *Collector) Tail() *LogTail { return &LogTail{c: c, offsets: map[uint64]int64{}} }

// Next returns the log records written since the last call, in arrival order.
func (lt *LogTail) Next(t testing.TB) []ResourceLogRecord {
	t.Helper()
	var out []ResourceLogRecord
	for _, path := range lt.c.outputs() {
		f, err := os.Open(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatalf("harness: %v", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			t.Fatalf("harness: %v", err)
		}
		ino := fi.Sys().(*syscall.Stat_t).Ino
		off := lt.offsets[ino]
		if fi.Size() <= off {
			f.Close()
			continue
		}
		b := make([]byte, fi.Size()-off)
		n, err := f.ReadAt(b, off)
		f.Close()
		if err != nil && err != io.EOF {
			t.Fatalf("harness: reading %s: %v", path, err)
		}
		b = b[:n]
		// Only whole lines: the last one may still be being written.
		end := bytes.LastIndexByte(b, '\n')
		if end < 0 {
			continue
		}
		for _, line := range bytes.Split(b[:end], []byte{'\n'}) {
			if line = bytes.TrimSpace(line); len(line) == 0 {
				continue
			}
			_, rls, err := ParseOTLPJSON(line)
			if err != nil {
				t.Fatalf("harness: %s at offset %d: %v", path, off, err)
			}
			for _, rl := range rls {
				for _, r := range rl.Records {
					out = append(out, ResourceLogRecord{Resource: rl.Resource, LogRecord: r})
				}
			}
		}
		lt.offsets[ino] = off + int64(end) + 1
	}
	return out
}

// ResourceLogRecord is a log record with its resource's attributes.
type ResourceLogRecord struct {
	Resource Attrs
	LogRecord
}

// ReadOTLPJSONFile parses a file exporter's JSON-lines output. A missing file
// is empty; a last line without its newline (being written) is ignored.
func ReadOTLPJSONFile(path string) ([]ResourceMetrics, []ResourceLogs, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	var rms []ResourceMetrics
	var rls []ResourceLogs
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 1<<20), 256<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		m, l, err := ParseOTLPJSON(line)
		if err != nil {
			return nil, nil, fmt.Errorf("%s line %d: %v", path, n, err)
		}
		rms = append(rms, m...)
		rls = append(rls, l...)
	}
	return rms, rls, sc.Err()
}

// ParseOTLPJSON parses one OTLP/JSON export request (metrics or logs).
func ParseOTLPJSON(b []byte) ([]ResourceMetrics, []ResourceLogs, error) {
	var req jsonRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, nil, err
	}
	var rms []ResourceMetrics
	for _, jr := range req.ResourceMetrics {
		rm := ResourceMetrics{Resource: jr.Resource.attrs(), SchemaURL: jr.SchemaURL}
		for _, js := range jr.ScopeMetrics {
			for _, jm := range js.Metrics {
				m, err := jm.metric()
				if err != nil {
					return nil, nil, fmt.Errorf("metric %s: %v", jm.Name, err)
				}
				m.Scope, m.ScopeVersion = js.Scope.Name, js.Scope.Version
				rm.Metrics = append(rm.Metrics, m)
			}
		}
		rms = append(rms, rm)
	}
	var rls []ResourceLogs
	for _, jr := range req.ResourceLogs {
		rl := ResourceLogs{Resource: jr.Resource.attrs(), SchemaURL: jr.SchemaURL}
		for _, js := range jr.ScopeLogs {
			for _, jl := range js.LogRecords {
				rec := LogRecord{
					Scope:          js.Scope.Name,
					Time:           jl.TimeUnixNano.time(),
					ObservedTime:   jl.ObservedTimeUnixNano.time(),
					SeverityNumber: int(jl.SeverityNumber),
					SeverityText:   jl.SeverityText,
					Body:           jl.Body.value(),
					Attrs:          kvAttrs(jl.Attributes),
					Flags:          uint32(jl.Flags),
					EventName:      jl.EventName,
				}
				rl.Records = append(rl.Records, rec)
			}
		}
		rls = append(rls, rl)
	}
	return rms, rls, nil
}

// The OTLP/JSON encoding: 64-bit integers are strings, enums are numbers (or
// names), bytes are base64 (hex for trace and span ids).

type jsonRequest struct {
	ResourceMetrics []struct {
		Resource     jsonResource `json:"resource"`
		SchemaURL    string       `json:"schemaUrl"`
		ScopeMetrics []struct {
			Scope   jsonScope    `json:"scope"`
			Metrics []jsonMetric `json:"metrics"`
		} `json:"scopeMetrics"`
	} `json:"resourceMetrics"`
	ResourceLogs []struct {
		Resource  jsonResource `json:"resource"`
		SchemaURL string       `json:"schemaUrl"`
		ScopeLogs []struct {
			Scope      jsonScope `json:"scope"`
			LogRecords []struct {
				TimeUnixNano         jsonInt   `json:"timeUnixNano"`
				ObservedTimeUnixNano jsonInt   `json:"observedTimeUnixNano"`
				SeverityNumber       jsonInt   `json:"severityNumber"`
				SeverityText         string    `json:"severityText"`
				Body                 jsonValue `json:"body"`
				Attributes           []jsonKV  `json:"attributes"`
				Flags                jsonInt   `json:"flags"`
				EventName            string    `json:"eventName"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

type jsonResource struct {
	Attributes []jsonKV `json:"attributes"`
}

func (r jsonResource) attrs() Attrs { return kvAttrs(r.Attributes) }

type jsonScope struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type jsonKV struct {
	Key   string    `json:"key"`
	Value jsonValue `json:"value"`
}

func kvAttrs(kvs []jsonKV) Attrs {
	a := make(Attrs, len(kvs))
	for _, kv := range kvs {
		a[kv.Key] = kv.Value.value()
	}
	return a
}

type jsonValue struct {
	StringValue *string    `json:"stringValue"`
	BoolValue   *bool      `json:"boolValue"`
	IntValue    *jsonInt   `json:"intValue"`
	DoubleValue *jsonFloat `json:"doubleValue"`
	BytesValue  []byte     `json:"bytesValue"`
	ArrayValue  *struct {
		Values []jsonValue `json:"values"`
	} `json:"arrayValue"`
	KvlistValue *struct {
		Values []jsonKV `json:"values"`
	} `json:"kvlistValue"`
}

func (v jsonValue) value() any {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.BoolValue != nil:
		return *v.BoolValue
	case v.IntValue != nil:
		return int64(*v.IntValue)
	case v.DoubleValue != nil:
		return float64(*v.DoubleValue)
	case v.BytesValue != nil:
		return v.BytesValue
	case v.ArrayValue != nil:
		out := make([]any, len(v.ArrayValue.Values))
		for i, e := range v.ArrayValue.Values {
			out[i] = e.value()
		}
		return out
	case v.KvlistValue != nil:
		out := make(map[string]any, len(v.KvlistValue.Values))
		for _, kv := range v.KvlistValue.Values {
			out[kv.Key] = kv.Value.value()
		}
		return out
	}
	return nil
}

type jsonPoint struct {
	Attributes        []jsonKV    `json:"attributes"`
	StartTimeUnixNano jsonInt     `json:"startTimeUnixNano"`
	TimeUnixNano      jsonInt     `json:"timeUnixNano"`
	AsInt             *jsonInt    `json:"asInt"`
	AsDouble          *jsonFloat  `json:"asDouble"`
	Count             jsonInt     `json:"count"`
	Sum               *jsonFloat  `json:"sum"`
	BucketCounts      []jsonInt   `json:"bucketCounts"`
	ExplicitBounds    []jsonFloat `json:"explicitBounds"`
}

type jsonData struct {
	DataPoints             []jsonPoint `json:"dataPoints"`
	AggregationTemporality jsonEnum    `json:"aggregationTemporality"`
	IsMonotonic            bool        `json:"isMonotonic"`
}

type jsonMetric struct {
	Name                 string    `json:"name"`
	Unit                 string    `json:"unit"`
	Description          string    `json:"description"`
	Gauge                *jsonData `json:"gauge"`
	Sum                  *jsonData `json:"sum"`
	Histogram            *jsonData `json:"histogram"`
	ExponentialHistogram *jsonData `json:"exponentialHistogram"`
	Summary              *jsonData `json:"summary"`
}

func (jm jsonMetric) metric() (Metric, error) {
	m := Metric{Name: jm.Name, Unit: jm.Unit, Description: jm.Description}
	var d *jsonData
	switch {
	case jm.Gauge != nil:
		m.Type, d = "gauge", jm.Gauge
	case jm.Sum != nil:
		m.Type, d = "sum", jm.Sum
	case jm.Histogram != nil:
		m.Type, d = "histogram", jm.Histogram
	case jm.ExponentialHistogram != nil:
		m.Type, d = "exponentialHistogram", jm.ExponentialHistogram
	case jm.Summary != nil:
		m.Type, d = "summary", jm.Summary
	default:
		return m, fmt.Errorf("no data")
	}
	m.Monotonic = d.IsMonotonic
	switch d.AggregationTemporality {
	case "1", "AGGREGATION_TEMPORALITY_DELTA":
		m.Temporality = "delta"
	case "2", "AGGREGATION_TEMPORALITY_CUMULATIVE":
		m.Temporality = "cumulative"
	}
	for _, jp := range d.DataPoints {
		p := Point{
			Attrs:     kvAttrs(jp.Attributes),
			StartTime: jp.StartTimeUnixNano.time(),
			Time:      jp.TimeUnixNano.time(),
			Count:     uint64(jp.Count),
			Bounds:    make([]float64, len(jp.ExplicitBounds)),
		}
		switch {
		case jp.AsInt != nil:
			p.Value, p.IsInt = float64(*jp.AsInt), true
		case jp.AsDouble != nil:
			p.Value = float64(*jp.AsDouble)
		case jp.Sum != nil:
			p.Value = float64(*jp.Sum)
		}
		for _, c := range jp.BucketCounts {
			p.Buckets = append(p.Buckets, uint64(c))
		}
		for i, b := range jp.ExplicitBounds {
			p.Bounds[i] = float64(b)
		}
		m.Points = append(m.Points, p)
	}
	return m, nil
}

// jsonInt accepts a JSON number or a string holding one (protojson writes
// 64-bit integers as strings).
type jsonInt int64

func (i *jsonInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		return nil
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		*i = jsonInt(v)
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("bad integer %s", b)
	}
	*i = jsonInt(v)
	return nil
}

func (i jsonInt) time() time.Time {
	if i == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(i))
}

// jsonFloat accepts a JSON number or the strings "NaN", "Infinity", "-Infinity".
type jsonFloat float64

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	switch s {
	case "NaN":
		*f = jsonFloat(math.NaN())
	case "Infinity":
		*f = jsonFloat(math.Inf(1))
	case "-Infinity":
		*f = jsonFloat(math.Inf(-1))
	default:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("bad number %s", b)
		}
		*f = jsonFloat(v)
	}
	return nil
}

// jsonEnum accepts an enum as a number or a name; it keeps the text.
type jsonEnum string

func (e *jsonEnum) UnmarshalJSON(b []byte) error {
	*e = jsonEnum(strings.Trim(string(b), `"`))
	return nil
}
