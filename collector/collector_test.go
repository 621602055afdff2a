package collector

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestUnreachableDaemon runs the collector against a socket nobody listens
// on: it must keep retrying, say why in Ready, and stop cleanly.
func TestUnreachableDaemon(t *testing.T) {
	cfg := config.Default()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	cfg.Docker.Host = "unix://" + sock
	cfg.Docker.MaxBackoff = time.Second
	tel := pipeline.NewTelemetry()
	var logged syncBuffer
	c, err := New(Options{Config: cfg, Store: pipeline.NewStore(), Telemetry: tel, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if ok, reason := c.Ready(); ok || reason == "" {
		t.Fatalf("Ready before Run = %v, %q", ok, reason)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()

	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, reason := c.Ready()
		if ok {
			t.Fatal("ready without a daemon")
		}
		if strings.Contains(reason, sock) && strings.Contains(reason, "next attempt in") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reason never named the socket and the retry: %q", reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tel.EngineUp() {
		t.Error("telemetry says the engine is up")
	}
	// Several attempts fail the same way: logged once, not once per attempt.
	time.Sleep(1500 * time.Millisecond)
	if n := strings.Count(logged.String(), "docker daemon not available"); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, logged.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestNotADockerEngine puts a plain web server on the socket: the collector
// must say that it is not a Docker Engine, not fail later on odd JSON.
func TestNotADockerEngine(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"404 everywhere", http.NotFound, "not a Docker Engine (GET /_ping: Error response from daemon: 404 page not found)"},
		{"200 with HTML", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "<html>hi</html>") },
			"not a Docker Engine (GET /_ping: its answer has no API-Version header)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "web.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: tc.handler}
			go srv.Serve(ln)
			defer srv.Close()

			cfg := config.Default()
			cfg.Docker.Host = "unix://" + sock
			c, err := New(Options{Config: cfg, Store: pipeline.NewStore(), Telemetry: pipeline.NewTelemetry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer c.docker.Close()
			err = c.connect(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("connect = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
