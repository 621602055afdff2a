package otlp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

func testRecords() []pipeline.LogRecord {
	web := &pipeline.ContainerMeta{ID: "w", Name: "web", ImageName: "nginx", ImageTag: "1"}
	db := &pipeline.ContainerMeta{ID: "d", Name: "db", ImageName: "pg"}
	now := time.Unix(1_800_000_000, 5)
	return []pipeline.LogRecord{
		{ContainerID: "w", Container: web, Time: now, Observed: now, Stream: pipeline.Stdout, Body: []byte("w1")},
		{ContainerID: "d", Container: db, Time: now, Observed: now, Stream: pipeline.Stderr, Body: []byte("d1")},
		{ContainerID: "w", Container: web, Time: now, Observed: now, Stream: pipeline.Stderr, Body: []byte("w2\xff"), Truncated: true},
	}
}

func TestLogRequestGroupsByContainer(t *testing.T) {
	req := decodeRequest(t, newLogEncoder(testScope).encode(testRecords()))
	if len(req.ResourceLogs) != 2 {
		t.Fatalf("%d resources, want one per container", len(req.ResourceLogs))
	}
	web := req.ResourceLogs[0]
	if web.Resource.Attributes[0].Value.GetStringValue() != "w" || len(web.ScopeLogs[0].LogRecords) != 2 {
		t.Fatalf("first resource = %v", web)
	}
	r1, r2 := web.ScopeLogs[0].LogRecords[0], web.ScopeLogs[0].LogRecords[1]
	if r1.Body.GetStringValue() != "w1" || r1.Attributes[0].Value.GetStringValue() != "stdout" || r1.TimeUnixNano != 1_800_000_000_000_000_005 {
		t.Errorf("record 1 = %v", r1)
	}
	// Invalid UTF-8 travels as bytes, unchanged; the cut line is marked.
	if string(r2.Body.GetBytesValue()) != "w2\xff" || r2.Attributes[0].Value.GetStringValue() != "stderr" ||
		len(r2.Attributes) != 2 || r2.Attributes[1].Key != "log.truncated" {
		t.Errorf("record 2 = %v", r2)
	}
}

func TestEventRecordsCarryNameSeverityAndAttributes(t *testing.T) {
	web := &pipeline.ContainerMeta{ID: "w", Name: "web"}
	at := time.Unix(1_800_000_000, 0)
	ev := &pipeline.Event{Name: "container.die", Severity: pipeline.SeverityWarn, Attrs: []pipeline.EventAttr{
		{Key: "docker.event.action", Str: "die"}, {Key: "process.exit.code", Int: 3, IsInt: true},
	}}
	req := decodeRequest(t, newLogEncoder(testScope).encode([]pipeline.LogRecord{
		{ContainerID: "w", Container: web, Time: at, Observed: at, Body: []byte("container web die (exit code 3)"), Event: ev},
	}))
	r := req.ResourceLogs[0].ScopeLogs[0].LogRecords[0]
	if r.EventName != "container.die" || r.SeverityNumber != 13 || r.SeverityText != "WARN" || r.Body.GetStringValue() != "container web die (exit code 3)" {
		t.Fatalf("event record = %v", r)
	}
	got := map[string]any{}
	for _, kv := range r.Attributes {
		if kv.Value.GetIntValue() != 0 {
			got[kv.Key] = kv.Value.GetIntValue()
		} else {
			got[kv.Key] = kv.Value.GetStringValue()
		}
	}
	if got["event.name"] != "container.die" || got["process.exit.code"] != int64(3) || got["docker.event.action"] != "die" {
		t.Errorf("attributes = %v", got)
	}
	if _, ok := got["log.iostream"]; ok {
		t.Error("an event has no stream")
	}
}

type recordingAcker struct {
	mu    sync.Mutex
	acked int
}

func (a *recordingAcker) Ack(rs []pipeline.LogRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acked += len(rs)
	return nil
}

func TestLogExporterRetriesUnavailableThenAcks(t *testing.T) {
	var calls atomic.Int32
	var got collogspb.ExportLogsServiceRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		proto.Unmarshal(body, &got)
	}))
	defer srv.Close()

	tel := pipeline.NewTelemetry()
	q := pipeline.NewLogQueue(1<<20, pipeline.Block, tel.Stage(pipeline.StageLogs))
	acker := &recordingAcker{}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol, cfg.Compression = srv.URL, ProtocolHTTP, "none"
	cfg.Retry.InitialInterval = 10 * time.Millisecond
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.LogBatchConfig{MaxRecords: 10, MaxBytes: 1 << 20, Timeout: 10 * time.Millisecond},
		Queue: q, Acker: acker, Telemetry: tel, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range testRecords() {
		q.Push(context.Background(), r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, time.Second); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for tel.Stage(pipeline.StageLogs).Out.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if calls.Load() != 3 || acker.acked != 3 || len(got.ResourceLogs) != 2 {
		t.Fatalf("calls %d, acked %d, resources %d; want 3 attempts, 3 acked, 2 resources", calls.Load(), acker.acked, len(got.ResourceLogs))
	}
	if f := tel.ExportFailures.Load(); f != 2 {
		t.Errorf("export failures = %d, want 2", f)
	}
}

func TestLogExporterDropsOnPermanentError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad payload", http.StatusBadRequest)
	}))
	defer srv.Close()
	tel := pipeline.NewTelemetry()
	q := pipeline.NewLogQueue(1<<20, pipeline.Block, tel.Stage(pipeline.StageLogs))
	acker := &recordingAcker{}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol = srv.URL, ProtocolHTTP
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.LogBatchConfig{MaxRecords: 10, MaxBytes: 1 << 20, Timeout: time.Millisecond},
		Queue: q, Acker: acker, Telemetry: tel, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	batch := testRecords()
	if !e.export(context.Background(), batch) {
		t.Fatal("a permanent refusal must not stall the pipeline")
	}
	if d := tel.Stage(pipeline.StageLogs).Dropped.Load(); d != 3 || acker.acked != 3 {
		t.Fatalf("dropped %d, acked %d; want the batch counted as dropped and acknowledged", d, acker.acked)
	}
}

func TestResolveLogTarget(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	cfg := config.Default().Exporters.OTLP
	if LogsEnabled(cfg, getenv) {
		t.Fatal("logs enabled without any endpoint")
	}
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://col:4318"
	env["OTEL_EXPORTER_OTLP_HEADERS"] = "authorization=Bearer%20x,team=a"
	tg, err := resolveLogTarget(cfg, getenv)
	if err != nil || tg.endpoint != "http://col:4318/v1/logs" || !tg.insecure || tg.headers["authorization"] != "Bearer x" {
		t.Fatalf("from the generic variable: %+v %v", tg, err)
	}
	env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"] = "https://logs.example/custom"
	if tg, _ := resolveLogTarget(cfg, getenv); tg.endpoint != "https://logs.example/custom" || tg.insecure {
		t.Fatalf("the signal variable is used as is: %+v", tg)
	}
	cfg.Endpoint, cfg.Protocol = "col:4317", ProtocolGRPC
	cfg.Insecure = true
	cfg.Headers = map[string]string{"team": "b"}
	if tg, _ := resolveLogTarget(cfg, getenv); tg.endpoint != "col:4317" || tg.protocol != ProtocolGRPC || tg.headers["team"] != "b" {
		t.Fatalf("the config file wins: %+v", tg)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second, "soon": 0,
		// Never a wrap-around to a negative or short delay.
		"-5": 0, "9223372037": math.MaxInt64, "99999999999999999999": math.MaxInt64, "-99999999999999999999": 0,
		"Fri, 31 Dec 9999 23:59:59 GMT": math.MaxInt64, "Wed, 31 Dec 2025 00:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

type logsServer struct {
	collogspb.UnimplementedLogsServiceServer
	mu   sync.Mutex
	reqs []*collogspb.ExportLogsServiceRequest
}

func (s *logsServer) Export(_ context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, req)
	return &collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 1}}, nil
}

// Encoded requests go through gRPC as they are, compressed or not, and the
// response is decoded.
func TestGRPCLogSenderSendsEncodedRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	backend := &logsServer{}
	collogspb.RegisterLogsServiceServer(srv, backend)
	go srv.Serve(ln)
	defer srv.Stop()

	batch := testRecords()
	for _, comp := range []string{"none", "gzip"} {
		cfg := config.Default().Exporters.OTLP
		cfg.Endpoint, cfg.Protocol, cfg.Insecure, cfg.Compression = ln.Addr().String(), ProtocolGRPC, true, comp
		target, err := resolveLogTarget(cfg, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		s, err := newSender(target)
		if err != nil {
			t.Fatal(err)
		}
		rejected, err := s.send(context.Background(), newLogEncoder(testScope).encode(batch))
		s.close()
		if err != nil || rejected.rejected != 1 {
			t.Fatalf("%s: rejected %d, %v; want the server's partial success read", comp, rejected.rejected, err)
		}
	}
	backend.mu.Lock()
	defer backend.mu.Unlock()
	for _, got := range backend.reqs {
		if !proto.Equal(got, referenceRequest(batch)) {
			t.Fatalf("server got %v", got)
		}
	}
	if len(backend.reqs) != 2 {
		t.Fatalf("server got %d requests, want 2", len(backend.reqs))
	}
}

// orderAcker records the bodies acknowledged, in order.
type orderAcker struct {
	mu     sync.Mutex
	bodies []string
}

func (a *orderAcker) Ack(rs []pipeline.LogRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range rs {
		a.bodies = append(a.bodies, string(r.Body))
	}
	return nil
}

// A batch whose export the shutdown interrupted is the first one sent
// while draining: acknowledging later records first would move the
// checkpoints past lines never delivered.
func TestLogExporterDrainSendsTheInterruptedBatchFirst(t *testing.T) {
	var up atomic.Bool
	failing := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			select {
			case failing <- struct{}{}:
			default:
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	tel := pipeline.NewTelemetry()
	q := pipeline.NewLogQueue(1<<20, pipeline.Block, tel.Stage(pipeline.StageLogs))
	acker := &orderAcker{}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol, cfg.Compression = srv.URL, ProtocolHTTP, "none"
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = 20*time.Millisecond, 20*time.Millisecond
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.LogBatchConfig{MaxRecords: 2, MaxBytes: 1 << 20, Timeout: time.Millisecond},
		Queue: q, Acker: acker, Telemetry: tel, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 6 {
		r := testRecords()[0]
		r.Body = []byte{'a' + byte(i)}
		want = append(want, string(r.Body))
		q.Push(context.Background(), r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, 5*time.Second); close(done) }()
	<-failing // the first batch is being retried
	cancel()
	up.Store(true)
	<-done
	if got := fmt.Sprint(acker.bodies); got != fmt.Sprint(want) {
		t.Fatalf("acknowledged %v, want %v", got, want)
	}
}

// A stop (or reload) while a request is under way lets it finish: the
// backend may already have taken it, and sending its records again in the
// drain would deliver them twice.
func TestStopLetsTheRequestUnderWayFinish(t *testing.T) {
	var requests atomic.Int32
	arrived := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		requests.Add(1)
		arrived <- struct{}{}
		time.Sleep(300 * time.Millisecond)
	}))
	defer srv.Close()
	tel := pipeline.NewTelemetry()
	q := pipeline.NewLogQueue(1<<20, pipeline.Block, tel.Stage(pipeline.StageLogs))
	acker := &recordingAcker{}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol = srv.URL, ProtocolHTTP
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.Default().Logs.Batch, Queue: q, Acker: acker,
		Telemetry: tel, Logger: quietLogger(), Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	records := testRecords()
	if _, err := q.PushBatch(context.Background(), records, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, 5*time.Second) }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the backend")
	}
	cancel() // while the backend holds the request
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end")
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("the records went out in %d requests, want 1: a request cut short was sent again", n)
	}
	acker.mu.Lock()
	defer acker.mu.Unlock()
	if acker.acked != len(records) {
		t.Errorf("acknowledged %d records, want %d", acker.acked, len(records))
	}
}
