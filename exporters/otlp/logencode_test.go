package otlp

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/dockscope/dockscope/pipeline"
)

var testScope = &commonpb.InstrumentationScope{Name: "github.com/dockscope/dockscope", Version: "1.2.3"}

// referenceRequest builds the request the way the exporter did before
// logEncoder, with the generated protobuf structs: the encoder must
// produce the same message.
func referenceRequest(batch []pipeline.LogRecord) *collogspb.ExportLogsServiceRequest {
	str := func(s string) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
	}
	byContainer := map[string]*logspb.ScopeLogs{}
	req := &collogspb.ExportLogsServiceRequest{}
	for i := range batch {
		r := &batch[i]
		sl, ok := byContainer[r.ContainerID]
		if !ok {
			sl = &logspb.ScopeLogs{Scope: testScope}
			byContainer[r.ContainerID] = sl
			req.ResourceLogs = append(req.ResourceLogs, &logspb.ResourceLogs{
				Resource: logResource(r), ScopeLogs: []*logspb.ScopeLogs{sl}, SchemaUrl: semconv.SchemaURL,
			})
		}
		lr := &logspb.LogRecord{Body: str(string(r.Body))}
		if !r.Time.IsZero() {
			lr.TimeUnixNano = uint64(r.Time.UnixNano())
		}
		if !r.Observed.IsZero() {
			lr.ObservedTimeUnixNano = uint64(r.Observed.UnixNano())
		}
		if !isUTF8(r.Body) {
			lr.Body = &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: r.Body}}
		}
		if ev := r.Event; ev != nil {
			lr.EventName = ev.Name
			lr.SeverityNumber = logspb.SeverityNumber(ev.Severity)
			lr.SeverityText = ev.Severity.String()
			lr.Attributes = []*commonpb.KeyValue{{Key: "event.name", Value: str(ev.Name)}}
			for _, a := range ev.Attrs {
				v := str(a.Str)
				if a.IsInt {
					v = &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: a.Int}}
				}
				lr.Attributes = append(lr.Attributes, &commonpb.KeyValue{Key: a.Key, Value: v})
			}
		} else {
			lr.Attributes = []*commonpb.KeyValue{{Key: "log.iostream", Value: str(r.Stream.String())}}
			if r.Truncated {
				lr.Attributes = append(lr.Attributes, &commonpb.KeyValue{Key: "log.truncated", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}})
			}
		}
		sl.LogRecords = append(sl.LogRecords, lr)
	}
	return req
}

func isUTF8(b []byte) bool {
	for _, r := range string(b) {
		if r == 0xFFFD {
			return false // the replacement: an invalid byte, or U+FFFD itself (never in test bodies)
		}
	}
	return true
}

// decodeRequest parses an encoded request.
func decodeRequest(t testing.TB, b []byte) *collogspb.ExportLogsServiceRequest {
	t.Helper()
	req := &collogspb.ExportLogsServiceRequest{}
	if err := proto.Unmarshal(b, req); err != nil {
		t.Fatalf("the encoded request does not parse: %v", err)
	}
	return req
}

// randomBatch mixes containers (some metadata shared, one missing), both
// streams, empty, long, binary and truncated lines, zero times and events.
func randomBatch(rng *rand.Rand, n int) []pipeline.LogRecord {
	metas := []*pipeline.ContainerMeta{
		{ID: "a1", Name: "web", ImageName: "nginx", ImageTag: "1", Labels: map[string]string{"team": "x"}},
		{ID: "b2", Name: "db", ImageName: "pg"},
		nil,
	}
	out := make([]pipeline.LogRecord, n)
	for i := range out {
		m := rng.IntN(len(metas))
		r := pipeline.LogRecord{
			ContainerID: fmt.Sprintf("c%d", m), Container: metas[m],
			Time:      time.Unix(1_800_000_000+int64(rng.IntN(1000)), int64(rng.IntN(1e9))),
			Observed:  time.Unix(1_800_000_100, int64(i)),
			Stream:    pipeline.Stream(1 + rng.IntN(2)),
			Truncated: rng.IntN(10) == 0,
		}
		body := make([]byte, []int{0, 1, 70, 127, 128, 300, 20000}[rng.IntN(7)])
		for j := range body {
			body[j] = 'a' + byte(rng.IntN(26))
		}
		if rng.IntN(8) == 0 && len(body) > 0 {
			body[rng.IntN(len(body))] = 0xff
		}
		r.Body = body
		switch rng.IntN(12) {
		case 0:
			r.Time = time.Time{}
		case 1:
			r.Stream, r.Truncated = 0, false
			r.Event = &pipeline.Event{Name: "container.die", Severity: pipeline.SeverityWarn, Attrs: []pipeline.EventAttr{
				{Key: "docker.event.action", Str: "die"}, {Key: "process.exit.code", Int: int64(rng.IntN(300)) - 5, IsInt: true},
			}}
		case 2:
			r.Stream, r.Truncated = 0, false
			r.Event = &pipeline.Event{Attrs: []pipeline.EventAttr{{Key: "k", Str: ""}}}
		}
		out[i] = r
	}
	return out
}

func TestLogEncoderMatchesGeneratedProtobuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	enc := newLogEncoder(testScope)
	for iter := range 300 {
		batch := randomBatch(rng, 1+rng.IntN(60))
		got := decodeRequest(t, enc.encode(batch))
		if want := referenceRequest(batch); !proto.Equal(got, want) {
			t.Fatalf("iteration %d: encoded request differs from the generated one\n got %v\nwant %v", iter, got, want)
		}
	}
}

func TestLogEncoderEmptyBatch(t *testing.T) {
	if b := newLogEncoder(testScope).encode(nil); len(b) != 0 {
		t.Fatalf("empty batch encoded as %d bytes", len(b))
	}
}

// One op is one line: a batch of 8192 70-byte lines from four containers.
func BenchmarkLogEncode(b *testing.B) {
	batch := benchBatch(8192)
	b.Run("encoder", func(b *testing.B) {
		enc := newLogEncoder(testScope)
		b.ReportAllocs()
		b.SetBytes(70)
		for i := 0; b.Loop(); i++ {
			if i%len(batch) == 0 {
				enc.encode(batch)
			}
		}
	})
	b.Run("generated", func(b *testing.B) {
		var buf []byte
		b.ReportAllocs()
		b.SetBytes(70)
		for i := 0; b.Loop(); i++ {
			if i%len(batch) == 0 {
				buf, _ = proto.MarshalOptions{}.MarshalAppend(buf[:0], referenceRequest(batch))
			}
		}
	})
}

func benchBatch(n int) []pipeline.LogRecord {
	metas := make([]*pipeline.ContainerMeta, 4)
	for i := range metas {
		metas[i] = &pipeline.ContainerMeta{ID: fmt.Sprintf("%064d", i), Name: fmt.Sprintf("bench-%d", i), ImageName: "workload", ImageTag: "latest"}
	}
	body := []byte("2026-12-03T10:00:00.000000000Z line 0000000 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"[:70])
	now := time.Now()
	out := make([]pipeline.LogRecord, n)
	for i := range out {
		m := metas[i/256%4] // tailers push runs of a container's lines
		out[i] = pipeline.LogRecord{ContainerID: m.ID, Container: m, Time: now.Add(time.Duration(i)), Observed: now, Stream: pipeline.Stdout, Body: body}
	}
	return out
}

// A request never exceeds the limit (unless one record alone does), holds
// the longest prefix that fits, and is exactly that prefix's request.
func TestLogEncoderPrefixFitsLimit(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	enc := newLogEncoder(testScope)
	for iter := range 300 {
		batch := randomBatch(rng, 1+rng.IntN(60))
		limit := 1 + rng.IntN(len(enc.encode(batch))+100)
		req, n := enc.encodeUpTo(batch, limit)
		if n < 1 || n > len(batch) {
			t.Fatalf("iteration %d: %d records of %d", iter, n, len(batch))
		}
		if len(req) > limit && n > 1 {
			t.Fatalf("iteration %d: %d records in %d bytes, limit %d", iter, n, len(req), limit)
		}
		if got, want := decodeRequest(t, req), referenceRequest(batch[:n]); !proto.Equal(got, want) {
			t.Fatalf("iteration %d: the request is not that of the first %d records", iter, n)
		}
		if n < len(batch) {
			if more := enc.encode(batch[:n+1]); len(more) <= limit {
				t.Fatalf("iteration %d: %d records fit in %d bytes (limit %d), but only %d were taken", iter, n+1, len(more), limit, n)
			}
		}
	}
}
