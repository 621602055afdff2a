package prometheus

import (
	"bufio"
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/dockscope/dockscope/pipeline"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServerEndpoints(t *testing.T) {
	var ready atomic.Bool
	store := testStore(t)
	srv, err := NewServer(ServerOptions{
		ListenAddress: "127.0.0.1:0",
		MetricsPath:   "/metrics",
		Containers:    NewContainerCollector(store),
		Collectors:    []Collector{NewSelfCollector(pipeline.NewTelemetry(), store, BuildInfo{Version: "t"})},
		Ready: func() (bool, string) {
			if ready.Load() {
				return true, ""
			}
			return false, "docker daemon unreachable"
		},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Version: "t",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	base := "http://" + srv.Addr().String()

	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "docker daemon unreachable") {
		t.Errorf("/readyz while not ready = %d %q", code, body)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready = %d", code)
	}
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, `container_memory_working_set_bytes{`) ||
		!strings.Contains(body, "dockscope_build_info") || !strings.Contains(body, "process_resident_memory_bytes") {
		t.Errorf("/metrics = %d, body lacks container, self or process metrics", code)
	}
	if code, body := get(t, base+"/"); code != http.StatusOK || !strings.Contains(body, "/metrics") {
		t.Errorf("landing page = %d", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop")
	}
}

func TestServerReportsPortInUse(t *testing.T) {
	opts := ServerOptions{ListenAddress: "127.0.0.1:0", MetricsPath: "/metrics", Ready: func() (bool, string) { return true, "" },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	first, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer first.listener.Close()
	opts.ListenAddress = first.Addr().String()
	if _, err := NewServer(opts); err == nil || !strings.Contains(err.Error(), "listening on") {
		t.Fatalf("second server on the same port: %v", err)
	}
}

func TestServerRejectsBadWebConfig(t *testing.T) {
	_, err := NewServer(ServerOptions{ListenAddress: "127.0.0.1:0", MetricsPath: "/metrics", WebConfigFile: "/nonexistent/web.yml",
		Ready: func() (bool, string) { return true, "" }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/web.yml") {
		t.Fatalf("bad web config: %v", err)
	}
}

func TestServerBasicAuthFromWebConfig(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(webCfg, []byte("basic_auth_users:\n  prom: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerOptions{ListenAddress: "127.0.0.1:0", MetricsPath: "/metrics", WebConfigFile: webCfg,
		Ready: func() (bool, string) { return true, "" }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	url := "http://" + srv.Addr().String() + "/metrics"
	if code, _ := get(t, url); code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", code)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("prom", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with credentials: %d, want 200", resp.StatusCode)
	}
}

func TestServerPprofOnlyWhenEnabled(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		srv, err := NewServer(ServerOptions{ListenAddress: "127.0.0.1:0", MetricsPath: "/metrics", EnablePprof: enabled,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		srv.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/heap?debug=1", nil))
		srv.listener.Close()
		if got := rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), "heap profile"); got != enabled {
			t.Errorf("pprof enabled=%v: status %d", enabled, rec.Code)
		}
		rec = httptest.NewRecorder()
		srv.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/debug/free-os-memory", nil))
		if got := rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), "released to the system"); got != enabled {
			t.Errorf("pprof enabled=%v: POST /debug/free-os-memory: %d %s", enabled, rec.Code, rec.Body)
		}
		// Without a readiness source the agent is not ready.
		rec = httptest.NewRecorder()
		srv.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("/readyz with no source: %d", rec.Code)
		}
	}
}

// TestScrapeGzipMatchesPlain checks the compressed scrape, through pooled
// writers reused across scrapes, against the plain one.
func TestScrapeGzipMatchesPlain(t *testing.T) {
	srv, err := NewServer(ServerOptions{ListenAddress: "127.0.0.1:0", MetricsPath: "/metrics",
		Containers: NewContainerCollector(testStore(t)), Ready: func() (bool, string) { return true, "" },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.listener.Close()
	scrape := func(gz bool) string {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		w := httptest.NewRecorder()
		srv.srv.Handler.ServeHTTP(w, req)
		body := w.Body.Bytes()
		if gz {
			if w.Header().Get("Content-Encoding") != "gzip" {
				t.Fatal("no Content-Encoding: gzip")
			}
			zr, err := stdgzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		// The Go runtime's series (goroutines, memory) change between
		// scrapes, and container_last_seen is the scrape's time.
		var keep []string
		for _, l := range strings.SplitAfter(string(body), "\n") {
			if !strings.Contains(l, "go_") && !strings.Contains(l, "process_") && !strings.Contains(l, "container_last_seen") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "")
	}
	plain := scrape(false)
	for range 3 {
		if got := scrape(true); got != plain {
			t.Fatalf("gzip scrape differs from the plain one (%d vs %d bytes)", len(got), len(plain))
		}
	}
}

// startServer serves n containers until the test ends; adjust may change
// the http.Server's timeouts before it starts.
func startServer(t *testing.T, containers int, adjust func(*http.Server)) *Server {
	t.Helper()
	srv, err := NewServer(ServerOptions{ListenAddress: "127.0.0.1:0", MetricsPath: "/metrics",
		Containers: NewContainerCollector(benchStore(containers)), Ready: func() (bool, string) { return true, "" },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(srv.srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv
}

// stallClient asks for a scrape, uncompressed, with a tiny receive buffer,
// and never reads the answer: the server's write blocks at once.
// stallContainers makes a response of several MB, far beyond what the
// socket buffers of a client that never reads can take, while rendering
// stays quick enough under -race on a busy machine (with 2,000 the stalled
// clients' renders held the real scrape past renderWait).
const stallContainers = 600

func stallClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	return c
}

// scrapeStatus scrapes once, the way Prometheus does (gzip), and times it;
// a failed request reads as status 0.
func scrapeStatus(t *testing.T, addr string) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Logf("scrape: %v", err)
		return 0, time.Since(start)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, time.Since(start)
}

// TestScrapesAnswerWhileClientsStall: clients that never read their
// response, and keep-alive connections left idle, neither deny real scrapes
// nor hold their connections for ever.
func TestScrapesAnswerWhileClientsStall(t *testing.T) {
	srv := startServer(t, stallContainers, func(s *http.Server) { s.IdleTimeout = 500 * time.Millisecond })
	addr := srv.Addr().String()
	for range 4 {
		stallClient(t, addr)
	}
	// Keep-alive connections that made one request, then went quiet.
	var idle []net.Conn
	var readers []*bufio.Reader
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		idle = append(idle, c)
		readers = append(readers, br)
	}
	time.Sleep(time.Second) // the stalled writes are blocked by now
	for i := range 5 {
		if code, took := scrapeStatus(t, addr); code != http.StatusOK {
			t.Fatalf("scrape %d with 4 stalled clients: %d after %s, want 200", i, code, took)
		}
	}
	for i, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := readers[i].ReadByte(); err != io.EOF {
			t.Errorf("idle keep-alive connection %d: read %v, want EOF (closed by the server after its idle timeout)", i, err)
		}
	}
}

// TestStalledScrapesAreBoundedAndTimedOut: more stalled clients than
// writer slots make a scrape fail fast with 503 (no queueing behind them),
// and the write timeout frees the slots.
func TestStalledScrapesAreBoundedAndTimedOut(t *testing.T) {
	// Long enough for a real scrape of 2,000 containers under -race on a
	// busy machine: the timeout counts from the request, rendering included.
	const writeTimeout = 5 * time.Second
	srv := startServer(t, stallContainers, func(s *http.Server) { s.WriteTimeout = writeTimeout })
	addr := srv.Addr().String()
	for range maxScrapeWriters {
		stallClient(t, addr)
	}
	time.Sleep(500 * time.Millisecond)
	code, took := scrapeStatus(t, addr)
	if code != http.StatusServiceUnavailable || took > time.Second {
		t.Errorf("scrape with every writer slot stalled: %d after %s, want 503 at once", code, took)
	}
	time.Sleep(writeTimeout)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, took := scrapeStatus(t, addr)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrapes still refused after the stalled clients' write timeout: %d after %s", code, took)
		}
	}
}

// TestOversizedHeadersRefused: headers beyond maxHeaderBytes get 431, not
// a megabyte of buffer per connection.
func TestOversizedHeadersRefused(t *testing.T) {
	srv := startServer(t, 1, nil)
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.Addr().String()+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 2*maxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("%d-byte header: %d, want 431", 2*maxHeaderBytes, resp.StatusCode)
	}
}

// TestServerRefusesUnroutablePathWithoutPanic: a telemetry path that
// http.ServeMux cannot take is an error from NewServer and CheckServer,
// never a panic that ends the agent.
func TestServerRefusesUnroutablePathWithoutPanic(t *testing.T) {
	for _, p := range []string{"/metrics/{node", "/{path...}", "/healthz"} {
		opts := ServerOptions{ListenAddress: "127.0.0.1:0", MetricsPath: p, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if err := CheckServer(opts); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("CheckServer(%q) = %v, want an error naming the path", p, err)
		}
		if srv, err := NewServer(opts); err == nil {
			srv.Close()
			t.Errorf("NewServer(%q) succeeded", p)
		}
	}
}

// TestSharedListenerTakesOverWithoutRefusing: a server built on
// ShareListener serves while the first one stops, and after.
func TestSharedListenerTakesOverWithoutRefusing(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	first, err := NewServer(ServerOptions{ListenAddress: "127.0.0.1:0", MetricsPath: "/metrics", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx1, stop1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- first.Run(ctx1) }()
	addr := first.Addr().String()

	l, err := first.ShareListener()
	if err != nil {
		t.Fatal(err)
	}
	second, err := NewServer(ServerOptions{ListenAddress: addr, MetricsPath: "/other", Logger: logger, Listener: l})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, stop2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- second.Run(ctx2) }()
	defer func() { stop2(); <-done2 }()

	scraping, failed := make(chan struct{}), make(chan string, 1)
	go func() {
		defer close(failed)
		for {
			select {
			case <-scraping:
				return
			default:
			}
			resp, err := http.Get("http://" + addr + "/healthz")
			if err != nil {
				failed <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed <- resp.Status
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	stop1()
	if err := <-done1; err != nil {
		t.Fatalf("first server: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	close(scraping)
	if msg, ok := <-failed; ok {
		t.Fatalf("a request failed during the take-over: %s", msg)
	}
	if code, _ := get(t, "http://"+addr+"/other"); code != http.StatusOK {
		t.Errorf("the second server's route: %d", code)
	}
}
