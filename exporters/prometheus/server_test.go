package prometheus

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
		// The Go runtime's series (goroutines, memory) change between scrapes.
		var keep []string
		for _, l := range strings.SplitAfter(string(body), "\n") {
			if !strings.Contains(l, "go_") && !strings.Contains(l, "process_") {
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
