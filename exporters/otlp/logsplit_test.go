package otlp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// manyContainers returns perContainer 1 KiB lines from each of n
// containers with realistic metadata, interleaved as tailers push them.
func manyContainers(n, perContainer int) []pipeline.LogRecord {
	body := bytes.Repeat([]byte("x"), 1024)
	now := time.Now()
	metas := make([]*pipeline.ContainerMeta, n)
	for c := range metas {
		id := fmt.Sprintf("%064d", c)
		metas[c] = &pipeline.ContainerMeta{ID: id, Name: fmt.Sprintf("shop-svc-%d-1", c), Image: "registry.example.com/team/app:1.2.3",
			ImageName: "registry.example.com/team/app", ImageTag: "1.2.3", ImageID: "sha256:" + id, Hostname: "node-17.example.com",
			ComposeProject: "shop", ComposeService: fmt.Sprintf("svc-%d", c)}
	}
	var out []pipeline.LogRecord
	for i := range perContainer {
		for _, m := range metas {
			out = append(out, pipeline.LogRecord{ContainerID: m.ID, Container: m, Time: now.Add(time.Duration(i)), Observed: now,
				Stream: pipeline.Stdout, Body: body})
		}
	}
	return out
}

// seqAcker checks that acknowledgements come in queue order, each record
// once.
type seqAcker struct {
	mu    sync.Mutex
	batch []pipeline.LogRecord
	next  int
	err   error
}

func (a *seqAcker) Ack(rs []pipeline.LogRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range rs {
		if a.next >= len(a.batch) || &a.batch[a.next].Body[0] != &rs[i].Body[0] || !a.batch[a.next].Time.Equal(rs[i].Time) || a.batch[a.next].ContainerID != rs[i].ContainerID {
			a.err = fmt.Errorf("acknowledgement %d out of order", a.next)
		}
		a.next++
	}
	return nil
}

type sizedLogsServer struct {
	collogspb.UnimplementedLogsServiceServer
	mu      sync.Mutex
	records int
	reqs    int
}

func (s *sizedLogsServer) Export(_ context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs++
	for _, rl := range req.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			s.records += len(sl.LogRecords)
		}
	}
	return &collogspb.ExportLogsServiceResponse{}, nil
}

// A batch from 1,000 containers that encodes past gRPC's default 4 MiB
// receive limit goes out as several requests under it, all delivered,
// acknowledged in queue order, none refused.
func TestLogBatchOfManyContainersFitsGRPCLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer() // MaxRecvMsgSize 4 MiB, as the OTel Collector's receiver
	backend := &sizedLogsServer{}
	collogspb.RegisterLogsServiceServer(srv, backend)
	go srv.Serve(ln)
	defer srv.Stop()

	batch := manyContainers(1000, 5)
	tel := pipeline.NewTelemetry()
	acker := &seqAcker{batch: batch}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol, cfg.Insecure = ln.Addr().String(), ProtocolGRPC, true
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = 10*time.Millisecond, 10*time.Millisecond
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.Default().Logs.Batch, Acker: acker, Telemetry: tel, Logger: quietLogger(), Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	defer e.sender.close()
	if whole := len(e.enc.encode(batch)); whole <= 4<<20 {
		t.Fatalf("the batch encodes to %d bytes: not over the limit, nothing tested", whole)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !e.export(ctx, batch) {
		t.Fatal("not delivered")
	}
	backend.mu.Lock()
	defer backend.mu.Unlock()
	st := tel.Stage(pipeline.StageLogs)
	if backend.records != len(batch) || st.Out.Load() != uint64(len(batch)) || st.Dropped.Load() != 0 || tel.ExportFailures.Load() != 0 {
		t.Errorf("server got %d records in %d requests, out %d, dropped %d, failures %d; want all %d, no failure",
			backend.records, backend.reqs, st.Out.Load(), st.Dropped.Load(), tel.ExportFailures.Load(), len(batch))
	}
	if acker.next != len(batch) || acker.err != nil {
		t.Errorf("acknowledged %d of %d: %v", acker.next, len(batch), acker.err)
	}
}

// A backend that takes less than logs.batch.max_bytes (a proxy's body
// limit) answers 413: the request is split until it fits, and a record too
// large even alone is dropped, counted, and logged once per interval.
func TestLogExporterSplitsWhatTheBackendRefusesForItsSize(t *testing.T) {
	const limit = 20 << 10
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if len(body) > limit {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		var req collogspb.ExportLogsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rl := range req.ResourceLogs {
			for _, lr := range rl.ScopeLogs[0].LogRecords {
				got = append(got, lr.Body.GetStringValue()[:8])
			}
		}
	}))
	defer srv.Close()
	batch := manyContainers(50, 2) // 100 records of 1 KiB
	for i := range batch {
		batch[i].Body = fmt.Appendf(nil, "rec-%04d%s", i, bytes.Repeat([]byte("y"), 1024))
	}
	batch[37].Body = fmt.Appendf(nil, "rec-%04d%s", 37, bytes.Repeat([]byte("z"), 2*limit)) // never fits
	var logs bytes.Buffer
	tel := pipeline.NewTelemetry()
	acker := &seqAcker{batch: batch}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol, cfg.Compression = srv.URL, ProtocolHTTP, "none"
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.Default().Logs.Batch, Acker: acker, Telemetry: tel,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	defer e.sender.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !e.export(ctx, batch) {
		t.Fatal("not delivered")
	}
	if !e.export(ctx, batch[37:38]) { // the same oversized record again
		t.Fatal("not delivered")
	}
	mu.Lock()
	defer mu.Unlock()
	var want []string
	for i := range batch {
		if i != 37 {
			want = append(want, fmt.Sprintf("rec-%04d", i))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("backend got %v\nwant %v", got, want)
	}
	st := tel.Stage(pipeline.StageLogs)
	if st.Dropped.Load() != 2 || st.Out.Load() != 99 {
		t.Errorf("out %d, dropped %d; want 99 out and the oversized record dropped twice", st.Out.Load(), st.Dropped.Load())
	}
	if acker.next != len(batch)+1 {
		t.Errorf("acknowledged %d, want %d", acker.next, len(batch)+1)
	}
	if e.maxRequest > limit {
		t.Errorf("max request still %d, over the backend's %d", e.maxRequest, limit)
	}
	if n := strings.Count(logs.String(), "refused a single log record for its size"); n != 1 {
		t.Errorf("the dropped record was logged %d times, want once per interval:\n%s", n, logs.String())
	}
}

// A partial success drops (and counts) what the backend rejected; the
// rest is delivered and the whole batch acknowledged.
func TestLogExporterCountsPartialSuccessRejections(t *testing.T) {
	resp, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 2, ErrorMessage: "too old"}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(resp)
	}))
	defer srv.Close()
	tel := pipeline.NewTelemetry()
	acker := &recordingAcker{}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol = srv.URL, ProtocolHTTP
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.Default().Logs.Batch, Acker: acker, Telemetry: tel, Logger: quietLogger(), Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	defer e.sender.close()
	if !e.export(context.Background(), testRecords()) {
		t.Fatal("not delivered")
	}
	if st := tel.Stage(pipeline.StageLogs); st.Out.Load() != 1 || st.Dropped.Load() != 2 || acker.acked != 3 {
		t.Errorf("out %d, dropped %d, acked %d; want 1, 2, 3", st.Out.Load(), st.Dropped.Load(), acker.acked)
	}
}

type failingAcker struct{ calls int }

func (a *failingAcker) Ack([]pipeline.LogRecord) error {
	a.calls++
	return errors.New("write state.json: no space left on device")
}

// A disk that refuses every checkpoint save is logged once per interval,
// not once per batch.
func TestCheckpointSaveFailuresLoggedOncePerInterval(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	var logs bytes.Buffer
	acker := &failingAcker{}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol = srv.URL, ProtocolHTTP
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.Default().Logs.Batch, Acker: acker, Telemetry: pipeline.NewTelemetry(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	defer e.sender.close()
	for range 20 {
		e.export(context.Background(), testRecords())
	}
	if n := strings.Count(logs.String(), "saving log checkpoints failed"); acker.calls != 20 || n != 1 {
		t.Errorf("%d saves failed, logged %d times; want 20 and once", acker.calls, n)
	}
}

// A shutdown that interrupts a batch between two of its requests resumes,
// when draining, with the first record not delivered: nothing is sent or
// acknowledged twice, nothing skipped.
func TestLogExporterDrainResumesMidBatch(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var calls int
	up := make(chan struct{})
	failing := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls++
		second := calls == 2
		mu.Unlock()
		if second {
			select {
			case failing <- struct{}{}:
			default:
			}
			<-up
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var req collogspb.ExportLogsServiceRequest
		proto.Unmarshal(body, &req)
		mu.Lock()
		defer mu.Unlock()
		for _, rl := range req.ResourceLogs {
			for _, lr := range rl.ScopeLogs[0].LogRecords {
				got = append(got, lr.Body.GetStringValue()[:5])
			}
		}
	}))
	defer srv.Close()
	records := manyContainers(6, 1)
	for i := range records {
		records[i].Body = fmt.Appendf(nil, "rec-%d%s", i, bytes.Repeat([]byte("y"), 1024))
	}
	tel := pipeline.NewTelemetry()
	q := pipeline.NewLogQueue(1<<20, pipeline.Block, tel.Stage(pipeline.StageLogs))
	for _, r := range records {
		q.Push(context.Background(), r)
	}
	acker := &seqAcker{batch: records}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol, cfg.Compression = srv.URL, ProtocolHTTP, "none"
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = 5*time.Millisecond, 5*time.Millisecond
	// 3,000 bytes: a batch of 6 records from 6 containers goes out as
	// requests of one or two records.
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.LogBatchConfig{MaxRecords: 100, MaxBytes: 3000, Timeout: time.Millisecond},
		Queue: q, Acker: acker, Telemetry: tel, Logger: quietLogger(), Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, 5*time.Second); close(done) }()
	<-failing // the second request of the first batch is failing
	cancel()
	close(up)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if want := "[rec-0 rec-1 rec-2 rec-3 rec-4 rec-5]"; fmt.Sprint(got) != want {
		t.Errorf("backend got %v, want %s", got, want)
	}
	if acker.next != 6 || acker.err != nil {
		t.Errorf("acknowledged %d of 6: %v", acker.next, acker.err)
	}
	if calls < 4 {
		t.Errorf("%d requests: the batch was not split, nothing tested", calls)
	}
}
