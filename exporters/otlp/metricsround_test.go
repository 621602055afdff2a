package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// storeOf holds n running containers with a full stats sample and
// realistic metadata: random-looking ids, and values that differ, so that
// compressed sizes are not flattered.
func storeOf(n int) *pipeline.Store {
	store := pipeline.NewStore()
	for i := range n {
		s := testSnapshot()
		s.Meta.ID = fmt.Sprintf("%x", sha256.Sum256([]byte{byte(i), byte(i >> 8)}))
		s.Meta.Name = fmt.Sprintf("shop-svc-%04d-1", i)
		s.Meta.ComposeService = fmt.Sprintf("svc-%04d", i)
		s.Meta.ImageID = fmt.Sprintf("sha256:%x", sha256.Sum256([]byte{byte(i % 7)}))
		st := *s.Stats
		st.CPUUser += time.Duration(i) * 12345678
		st.CPUSystem += time.Duration(i) * 2345678
		st.CPUUsageCores = float64(i%97) / 100
		st.MemoryUsage += uint64(i) * 40960
		st.MemoryWorkingSet += uint64(i) * 36864
		st.MemoryRSS += uint64(i) * 32768
		st.Pids = uint64(1 + i%13)
		st.Networks = []pipeline.NetworkStats{{Interface: "eth0", RxBytes: uint64(i) * 1234567, TxBytes: uint64(i) * 765432}}
		st.Disks = []pipeline.DiskStats{{Device: "8:0", ReadBytes: uint64(i) * 4096, WriteBytes: uint64(i) * 8192}}
		store.Upsert(s.Meta, s.State, s.Spec)
		store.SetStats(s.Meta.ID, st)
	}
	return store
}

// metricsBackend decodes OTLP/HTTP metrics requests and notes which
// containers each round brought.
type metricsBackend struct {
	mu        sync.Mutex
	requests  int
	wire, raw int
	seen      map[string]int
	status    int           // answer, when not 200
	maxBody   int           // 413 above this, when set
	delay     time.Duration // per request
	// cutAfter, when set, makes every request after that many in a round
	// call cut (which ends the round's context) and hang until the client
	// gives up: the round is cut short, at the same place whatever the
	// machine's speed.
	cutAfter int
	cut      func()
}

func (b *metricsBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	time.Sleep(b.delay)
	wire := len(body)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		body, _ = io.ReadAll(zr)
	}
	b.mu.Lock()
	if b.cutAfter > 0 && b.requests >= b.cutAfter {
		cut := b.cut
		b.mu.Unlock()
		cut()
		<-r.Context().Done()
		return
	}
	defer b.mu.Unlock()
	if b.status != 0 {
		w.WriteHeader(b.status)
		return
	}
	if b.maxBody > 0 && len(body) > b.maxBody {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	var req colmetricspb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	b.requests++
	b.wire += wire
	b.raw += len(body)
	for _, rm := range req.ResourceMetrics {
		for _, kv := range rm.Resource.Attributes {
			if kv.Key == "container.name" {
				b.seen[kv.Value.GetStringValue()]++
			}
		}
	}
}

func (b *metricsBackend) round() (requests, wire, raw int, seen map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	requests, wire, raw, seen = b.requests, b.wire, b.raw, b.seen
	b.requests, b.wire, b.raw, b.seen = 0, 0, 0, map[string]int{}
	return
}

func newMetricsExporter(t *testing.T, endpoint, protocol string, store *pipeline.Store, maxRequest int) (*MetricsExporter, *pipeline.Telemetry) {
	t.Helper()
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol = endpoint, protocol
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = 5*time.Millisecond, 5*time.Millisecond
	// These tests are about sizes and rounds, not deadlines: under -race
	// on a loaded machine a request of 4 MiB took longer than the default
	// 10 s, was retried and counted twice by the backend.
	cfg.Timeout = time.Minute
	if protocol == ProtocolGRPC {
		cfg.Insecure = true
	}
	tel := pipeline.NewTelemetry()
	e, err := NewMetricsExporter(context.Background(), MetricsOptions{Config: cfg, Interval: time.Hour, Store: store, Telemetry: tel,
		Logger: quietLogger(), Getenv: noEnv, MaxRequestBytes: maxRequest})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.client.Shutdown(context.Background()) })
	return e, tel
}

// Every container every round, in one or a few requests: 1,000 containers
// go out in at most two requests of at most 4 MiB. Prints the figures.
func TestMetricsRoundOf1000ContainersFigures(t *testing.T) {
	backend := &metricsBackend{seen: map[string]int{}}
	srv := httptest.NewServer(backend)
	defer srv.Close()
	e, tel := newMetricsExporter(t, srv.URL, ProtocolHTTP, storeOf(1000), 0)
	start := time.Now()
	e.exportRound(context.Background())
	took := time.Since(start)
	requests, wire, raw, seen := backend.round()
	t.Logf("1,000 containers, one round over OTLP/HTTP: %d request(s), %d bytes encoded, %d bytes on the wire (gzip), %.1f KiB per container; round took %v",
		requests, raw, wire, float64(raw)/1000/1024, took.Round(time.Millisecond))
	if len(seen) != 1000 || requests > 2 || raw > 2*defaultMaxRequestBytes {
		t.Errorf("%d containers in %d requests (%d bytes), want 1,000 in at most 2", len(seen), requests, raw)
	}
	if st := tel.Stage(pipeline.StageOTLPMetrics); st.Out.Load() != 1000 || st.Dropped.Load() != 0 {
		t.Errorf("out %d, dropped %d", st.Out.Load(), st.Dropped.Load())
	}
}

type countingMetricsServer struct {
	colmetricspb.UnimplementedMetricsServiceServer
	mu         sync.Mutex
	requests   int
	containers int
}

func (s *countingMetricsServer) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.containers += len(req.ResourceMetrics)
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

// Over gRPC, against the default 4 MiB receive limit, with requests
// bounded at the limit: everything is taken at the first attempt.
func TestMetricsRoundFitsGRPCLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	backend := &countingMetricsServer{}
	colmetricspb.RegisterMetricsServiceServer(srv, backend)
	go srv.Serve(ln)
	defer srv.Stop()
	e, tel := newMetricsExporter(t, ln.Addr().String(), ProtocolGRPC, storeOf(2000), 0)
	e.exportRound(context.Background())
	backend.mu.Lock()
	defer backend.mu.Unlock()
	if backend.containers != 2000 || tel.ExportFailures.Load() != 0 || backend.requests < 2 {
		t.Errorf("%d containers in %d requests, %d failures; want 2,000 in several requests, none refused", backend.containers, backend.requests, tel.ExportFailures.Load())
	}
}

// A request the backend refuses for its size is split until it fits.
func TestMetricsSplitWhatTheBackendRefusesForItsSize(t *testing.T) {
	backend := &metricsBackend{seen: map[string]int{}, maxBody: 64 << 10}
	srv := httptest.NewServer(backend)
	defer srv.Close()
	e, tel := newMetricsExporter(t, srv.URL, ProtocolHTTP, storeOf(300), 0)
	e.exportRound(context.Background())
	requests, _, _, seen := backend.round()
	if len(seen) != 300 || tel.Stage(pipeline.StageOTLPMetrics).Dropped.Load() != 0 || e.maxRequest > 64<<10 {
		t.Errorf("%d containers in %d requests, dropped %d, max request %d", len(seen), requests, tel.Stage(pipeline.StageOTLPMetrics).Dropped.Load(), e.maxRequest)
	}
}

// A round the backend cannot take in time resumes, next round, with the
// containers it left out: as long as a round gets at least half of them
// through, no container misses two rounds in a row (before, the round
// always started at the same, alphabetically first, container).
func TestMetricsRoundCutShortResumesWhereItStopped(t *testing.T) {
	backend := &metricsBackend{seen: map[string]int{}, cutAfter: 10}
	srv := httptest.NewServer(backend)
	defer srv.Close()
	const n = 200
	// ~12 containers per request, ~16 requests a round; the backend takes
	// 10 a round.
	e, tel := newMetricsExporter(t, srv.URL, ProtocolHTTP, storeOf(n), 56<<10)
	var previous map[string]int
	for round := range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		backend.mu.Lock()
		backend.cut = cancel
		backend.mu.Unlock()
		e.exportRound(ctx)
		cancel()
		_, _, _, seen := backend.round()
		if len(seen) == 0 || len(seen) == n {
			t.Fatalf("round %d sent %d of %d containers: not a partial round, nothing tested", round, len(seen), n)
		}
		if previous != nil {
			for i := range n {
				name := fmt.Sprintf("shop-svc-%04d-1", i)
				if previous[name] == 0 && seen[name] == 0 {
					t.Fatalf("round %d: %s left out twice in a row", round, name)
				}
			}
		}
		previous = seen
	}
	if st := tel.Stage(pipeline.StageOTLPMetrics); st.Dropped.Load() == 0 {
		t.Error("the containers left out are not counted as dropped")
	}
}

// A stop or reload while the metrics backend is down ends Run without an
// error, within the configured timeout.
func TestMetricsRunEndsCleanlyWhenBackendDown(t *testing.T) {
	backend := &metricsBackend{seen: map[string]int{}, status: http.StatusServiceUnavailable}
	srv := httptest.NewServer(backend)
	defer srv.Close()
	cfg := config.Default().Exporters.OTLP
	cfg.Endpoint, cfg.Protocol, cfg.Timeout = srv.URL, ProtocolHTTP, 300*time.Millisecond
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = 20*time.Millisecond, 20*time.Millisecond
	e, err := NewMetricsExporter(context.Background(), MetricsOptions{Config: cfg, Interval: time.Hour, Store: storeOf(3),
		Telemetry: pipeline.NewTelemetry(), Logger: quietLogger(), Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := e.Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Run took %v to stop, want about exporters.otlp.timeout (300ms)", took)
	}
}

// Any run of consecutive containers is a valid request holding exactly
// their ResourceMetrics, however the round is cut.
func TestMetricsRequestIsConcatenatedResourceMetrics(t *testing.T) {
	store := storeOf(5)
	now := time.Now()
	var enc metricEncoder
	var cm containerMetrics
	want := &colmetricspb.ExportMetricsServiceRequest{}
	for _, s := range store.Snapshot() {
		buildMetrics(&cm, &s, now)
		enc.add(&s.Meta, marshalScope("1"), &cm)
		want.ResourceMetrics = append(want.ResourceMetrics, encodeSnapshot(t, &s, now))
	}
	for _, limit := range []int{1, 10 << 10, 1 << 30} {
		var got colmetricspb.ExportMetricsServiceRequest
		for first := 0; first < 5; {
			req, n := enc.request(first, limit)
			var part colmetricspb.ExportMetricsServiceRequest
			if err := proto.Unmarshal(req, &part); err != nil || len(part.ResourceMetrics) != n {
				t.Fatalf("limit %d: request from %d: %d resources, %v; want %d", limit, first, len(part.ResourceMetrics), err, n)
			}
			if n > 1 && len(req) > limit {
				t.Fatalf("limit %d: %d containers in %d bytes", limit, n, len(req))
			}
			got.ResourceMetrics = append(got.ResourceMetrics, part.ResourceMetrics...)
			first += n
		}
		for _, rm := range got.ResourceMetrics {
			rm.ScopeMetrics[0].Scope = nil // encodeSnapshot's scope has another version
		}
		for _, rm := range want.ResourceMetrics {
			rm.ScopeMetrics[0].Scope = nil
		}
		if !proto.Equal(&got, want) {
			t.Errorf("limit %d: requests differ from the containers' own messages", limit)
		}
	}
}

// One op is one round's encoding of 1,000 containers (snapshot, build,
// marshal); the request's size is reported as bytes/round.
func BenchmarkMetricsRoundEncode1000(b *testing.B) {
	store := storeOf(1000)
	var enc metricEncoder
	var cm containerMetrics
	scope := marshalScope("1")
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		enc.reset()
		for _, s := range store.Snapshot() {
			buildMetrics(&cm, &s, now)
			enc.add(&s.Meta, scope, &cm)
		}
	}
	b.ReportMetric(float64(len(enc.buf)), "bytes/round")
}
