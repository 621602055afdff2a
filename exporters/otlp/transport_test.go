package otlp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

func noEnv(string) string { return "" }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// kind names what the exporter does with a send error.
func kind(err error) string {
	var re *retryableError
	var tl *tooLargeError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &tl):
		return "split"
	case errors.As(err, &re):
		return "retry"
	}
	return "drop"
}

// Only a request the backend calls malformed is dropped; a size refusal is
// split; every other answer (auth, routing, throttling, a backend down,
// a redirect) keeps the data and retries.
func TestHTTPSenderClassifiesStatuses(t *testing.T) {
	var redirected atomic.Int32
	var status atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { redirected.Add(1) })
	mux.HandleFunc("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		code := int(status.Load())
		if code >= 300 && code < 400 {
			http.Redirect(w, r, "/elsewhere", code)
			return
		}
		w.WriteHeader(code)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol = srv.URL, ProtocolHTTP
	tg, err := resolveLogTarget(cfg, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	s := newHTTPSender(tg)
	defer s.close()
	for code, want := range map[int]string{
		200: "ok", 202: "ok", 400: "drop", 413: "split",
		401: "retry", 403: "retry", 404: "retry", 405: "retry", 408: "retry", 429: "retry",
		500: "retry", 502: "retry", 503: "retry", 504: "retry",
		301: "retry", 302: "retry", 307: "retry", 308: "retry",
	} {
		status.Store(int32(code))
		_, err := s.send(context.Background(), []byte("x"))
		if got := kind(err); got != want {
			t.Errorf("HTTP %d: %s (%v), want %s", code, got, err, want)
		}
	}
	if n := redirected.Load(); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
}

type statusLogsServer struct {
	collogspb.UnimplementedLogsServiceServer
	err atomic.Pointer[error]
}

func (s *statusLogsServer) Export(context.Context, *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	if err := s.err.Load(); err != nil && *err != nil {
		return nil, *err
	}
	return &collogspb.ExportLogsServiceResponse{}, nil
}

func withRetryInfo(code codes.Code, d time.Duration) error {
	st, err := status.New(code, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestGRPCSenderClassifiesCodes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	backend := &statusLogsServer{}
	collogspb.RegisterLogsServiceServer(srv, backend)
	go srv.Serve(ln)
	defer srv.Stop()
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol, cfg.Insecure = ln.Addr().String(), ProtocolGRPC, true
	tg, err := resolveLogTarget(cfg, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newGRPCSender(tg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	for _, tc := range []struct {
		err   error
		want  string
		after time.Duration
	}{
		{status.Error(codes.InvalidArgument, "bad"), "drop", 0},
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), "split", 0},
		{withRetryInfo(codes.ResourceExhausted, 3*time.Second), "retry", 3 * time.Second},
		{withRetryInfo(codes.Unavailable, -time.Second), "retry", 0},
		{withRetryInfo(codes.Unavailable, time.Duration(math.MaxInt64)), "retry", time.Duration(math.MaxInt64)},
		{status.Error(codes.Unauthenticated, "token expired"), "retry", 0},
		{status.Error(codes.PermissionDenied, "no"), "retry", 0},
		{status.Error(codes.Unavailable, "down"), "retry", 0},
		{status.Error(codes.Internal, "oops"), "retry", 0},
		{status.Error(codes.Unknown, "?"), "retry", 0},
		{status.Error(codes.DeadlineExceeded, "slow"), "retry", 0},
		{status.Error(codes.NotFound, "no route"), "retry", 0},
		{nil, "ok", 0},
	} {
		backend.err.Store(&tc.err)
		_, err := s.send(context.Background(), []byte{})
		if got := kind(err); got != tc.want {
			t.Errorf("%v: %s (%v), want %s", tc.err, got, err, tc.want)
		}
		var re *retryableError
		if errors.As(err, &re) && re.after != tc.after {
			t.Errorf("%v: retry after %v, want %v", tc.err, re.after, tc.after)
		}
	}
}

// An expired token, a route being fixed, a backend restarting: the batch
// waits and is delivered once the backend takes it, nothing dropped.
func TestLogExporterRetriesWhatCanHeal(t *testing.T) {
	for _, code := range []int{401, 403, 404, 429, 500, 503} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if calls.Add(1) <= 3 {
				w.WriteHeader(code)
			}
		}))
		tel := pipeline.NewTelemetry()
		acker := &recordingAcker{}
		cfg := config.Default().Exporters.OTLP
		cfg.Endpoint, cfg.Protocol = srv.URL, ProtocolHTTP
		cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = time.Millisecond, 5*time.Millisecond
		e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.Default().Logs.Batch, Acker: acker, Telemetry: tel, Logger: quietLogger(), Getenv: noEnv})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok := e.export(ctx, testRecords())
		cancel()
		e.sender.close()
		srv.Close()
		if st := tel.Stage(pipeline.StageLogs); !ok || acker.acked != 3 || st.Dropped.Load() != 0 || st.Out.Load() != 3 || calls.Load() != 4 {
			t.Errorf("HTTP %d: delivered %v after %d requests, acked %d, out %d, dropped %d; want delivered on the 4th, nothing dropped",
				code, ok, calls.Load(), acker.acked, st.Out.Load(), st.Dropped.Load())
		}
	}
}

// A redirect is never taken for a delivery: nothing is acknowledged while
// the endpoint answers 3xx, and the redirect's target is never posted to.
func TestLogExporterNeverAcksARedirect(t *testing.T) {
	var target atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/moved/v1/logs", func(http.ResponseWriter, *http.Request) { target.Add(1) })
	mux.HandleFunc("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/moved/v1/logs", http.StatusMovedPermanently)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tel := pipeline.NewTelemetry()
	acker := &recordingAcker{}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol = srv.URL, ProtocolHTTP
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = time.Millisecond, 5*time.Millisecond
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.Default().Logs.Batch, Acker: acker, Telemetry: tel, Logger: quietLogger(), Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	defer e.sender.close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if e.export(ctx, testRecords()) || acker.acked != 0 || target.Load() != 0 || tel.Stage(pipeline.StageLogs).Out.Load() != 0 {
		t.Fatalf("acked %d, out %d, redirect target hit %d times; want nothing delivered", acker.acked, tel.Stage(pipeline.StageLogs).Out.Load(), target.Load())
	}
	if tel.ExportFailures.Load() < 2 {
		t.Errorf("export failures = %d, want the redirect retried", tel.ExportFailures.Load())
	}
}

// Retry-After: 86400 waits retry.max_interval, not a day.
func TestRetryAfterIsCappedAtMaxInterval(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	acker := &recordingAcker{}
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol = srv.URL, ProtocolHTTP
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = 10*time.Millisecond, 50*time.Millisecond
	e, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.Default().Logs.Batch, Acker: acker, Telemetry: pipeline.NewTelemetry(), Logger: quietLogger(), Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	defer e.sender.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if !e.export(ctx, testRecords()) {
		t.Fatal("not delivered")
	}
	if took := time.Since(start); took < 40*time.Millisecond || took > 2*time.Second {
		t.Errorf("delivered after %v, want about retry.max_interval (50ms)", took)
	}
}

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct{ wait, after, max, lo, hi time.Duration }{
		{time.Second, 0, time.Minute, 800 * time.Millisecond, 1200 * time.Millisecond},
		{time.Second, 10 * time.Second, time.Minute, 10 * time.Second, 10 * time.Second},
		{time.Second, time.Duration(math.MaxInt64), 30 * time.Second, 30 * time.Second, 30 * time.Second},
		{time.Minute, 0, 30 * time.Second, 30 * time.Second, 30 * time.Second},
	} {
		if d := retryDelay(tc.wait, tc.after, tc.max); d < tc.lo || d > tc.hi {
			t.Errorf("retryDelay(%v, %v, %v) = %v, want in [%v, %v]", tc.wait, tc.after, tc.max, d, tc.lo, tc.hi)
		}
	}
}

// The endpoint's userinfo shows neither in the target logged at start nor
// in an export error, for either signal.
func TestEndpointUserinfoNeverShown(t *testing.T) {
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol = "http://tenant-7:s3cr3t-token@127.0.0.1:1", ProtocolHTTP
	cfg.Retry.Enabled = false
	tel := pipeline.NewTelemetry()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	le, err := NewLogExporter(LogOptions{Config: cfg, Batch: config.Default().Logs.Batch, Acker: &recordingAcker{}, Telemetry: tel, Logger: logger, Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	defer le.sender.close()
	_, sendErr := le.sender.send(context.Background(), []byte("x"))
	le.export(context.Background(), testRecords())
	me, err := NewMetricsExporter(context.Background(), MetricsOptions{Config: cfg, Interval: time.Hour, Store: pipeline.NewStore(), Telemetry: tel, Logger: logger, Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	defer me.client.Shutdown(context.Background())
	shown := strings.Join([]string{le.Target(), me.Target(), sendErr.Error(), logs.String()}, "\n")
	if sendErr == nil || !strings.Contains(shown, "127.0.0.1:1") {
		t.Fatalf("nothing to check: %s", shown)
	}
	for _, secret := range []string{"s3cr3t-token", "tenant-7"} {
		if strings.Contains(shown, secret) {
			t.Errorf("%q shown:\n%s", secret, shown)
		}
	}
}

// OTEL_EXPORTER_OTLP_INSECURE (and the signal's own) and the insecure key
// choose the scheme of an endpoint given without one; they never turn an
// explicit https:// into plaintext.
func TestInsecureOnlyAppliesToEndpointsWithoutScheme(t *testing.T) {
	for _, tc := range []struct {
		endpoint   string
		cfgInsec   bool
		env        map[string]string
		sig        signal
		protocol   string
		wantInsec  bool
		wantTarget string
	}{
		{"https://col:4317", false, map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true"}, signalLogs, ProtocolGRPC, false, "col:4317"},
		{"https://col:4317", false, map[string]string{"OTEL_EXPORTER_OTLP_METRICS_INSECURE": "true"}, signalMetrics, ProtocolGRPC, false, "col:4317"},
		{"https://col:4317", true, nil, signalLogs, ProtocolGRPC, false, "col:4317"},
		{"https://col:4318", false, map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true"}, signalLogs, ProtocolHTTP, false, "https://col:4318/v1/logs"},
		{"col:4317", false, map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true"}, signalLogs, ProtocolGRPC, true, "col:4317"},
		{"col:4317", false, map[string]string{"OTEL_EXPORTER_OTLP_LOGS_INSECURE": "true"}, signalLogs, ProtocolGRPC, true, "col:4317"},
		{"col:4317", false, map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_LOGS_INSECURE": "false"}, signalLogs, ProtocolGRPC, false, "col:4317"},
		{"col:4317", true, nil, signalMetrics, ProtocolGRPC, true, "col:4317"},
		{"col:4318", false, nil, signalMetrics, ProtocolHTTP, false, "https://col:4318/v1/metrics"},
		{"http://col:4318", false, nil, signalMetrics, ProtocolHTTP, true, "http://col:4318/v1/metrics"},
	} {
		cfg := config.Default().Exporters.OTLP
		cfg.Endpoint, cfg.Protocol, cfg.Insecure = tc.endpoint, tc.protocol, tc.cfgInsec
		tg, err := resolveTarget(cfg, func(k string) string { return tc.env[k] }, tc.sig)
		if err != nil || tg.insecure != tc.wantInsec || tg.endpoint != tc.wantTarget {
			t.Errorf("%s %s insecure=%v env %v: insecure %v, endpoint %q, %v; want %v, %q", tc.sig.name, tc.endpoint, tc.cfgInsec, tc.env,
				tg.insecure, tg.endpoint, err, tc.wantInsec, tc.wantTarget)
		}
	}
}

// A header from the environment that gRPC or HTTP cannot carry stops the
// start, naming the variable but not the value.
func TestEnvHeadersCheckedAtStart(t *testing.T) {
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://col:4318", "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "authorization=Bearer%20s3cr3t%C3%BC"}
	_, err := NewLogExporter(LogOptions{Config: config.Default().Exporters.OTLP, Batch: config.Default().Logs.Batch, Telemetry: pipeline.NewTelemetry(),
		Logger: quietLogger(), Getenv: func(k string) string { return env[k] }})
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_LOGS_HEADERS") || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("NewLogExporter = %v; want an error naming the variable, without the value", err)
	}
}

func TestParseExportResponse(t *testing.T) {
	b, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 7, ErrorMessage: "too old"}})
	if got := parseExportResponse(b); got.rejected != 7 || got.message != "too old" {
		t.Errorf("parsed %+v", got)
	}
	for _, junk := range [][]byte{nil, {0xff}, {0x0a, 0x05, 0x08}, []byte("<html>")} {
		if got := parseExportResponse(junk); got.rejected != 0 {
			t.Errorf("%q parsed as %+v", junk, got)
		}
	}
}

// scriptedSender refuses with the scripted retry delays (0: none asked),
// then accepts, noting when each attempt came.
type scriptedSender struct {
	afters   []time.Duration
	attempts []time.Time
}

func (s *scriptedSender) send(context.Context, []byte) (partialSuccess, error) {
	s.attempts = append(s.attempts, time.Now())
	if n := len(s.attempts); n <= len(s.afters) {
		return partialSuccess{}, &retryableError{err: errors.New("refused"), after: s.afters[n-1]}
	}
	return partialSuccess{}, nil
}
func (s *scriptedSender) describe() string { return "scripted" }
func (s *scriptedSender) close() error     { return nil }

// Waiting as long as the backend asked is not a step of the backoff: the
// first refusal without a delay after several with one retries after the
// initial interval, not after an interval doubled by each of them.
func TestBackendRetryDelayDoesNotAdvanceBackoff(t *testing.T) {
	s := &scriptedSender{afters: []time.Duration{60 * time.Millisecond, 60 * time.Millisecond, 60 * time.Millisecond, 0}}
	retry := config.Default().Exporters.OTLP.Retry
	retry.InitialInterval, retry.MaxInterval = 20*time.Millisecond, time.Second
	d := newDeliverer(s, retry, 0, pipeline.NewTelemetry(), quietLogger(), "log")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out, _, err := d.deliver(ctx, nil); out != delivered {
		t.Fatalf("outcome %v, err %v; want delivered", out, err)
	}
	if len(s.attempts) != 5 {
		t.Fatalf("%d attempts, want 5", len(s.attempts))
	}
	for i := 1; i <= 3; i++ {
		if gap := s.attempts[i].Sub(s.attempts[i-1]); gap < 55*time.Millisecond {
			t.Errorf("attempt %d came %v after the previous; the backend asked for 60ms", i+1, gap)
		}
	}
	// 20 ms ± 20 %; three doublings would have made it 160 ms.
	if gap := s.attempts[4].Sub(s.attempts[3]); gap > 120*time.Millisecond {
		t.Errorf("the first retry without an asked-for delay came after %v, want about the initial 20ms", gap)
	}
}
