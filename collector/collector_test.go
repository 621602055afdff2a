package collector

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
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
	c, err := New(Options{Config: cfg, Store: pipeline.NewStore(), Telemetry: tel, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
		if strings.Contains(reason, sock) && strings.Contains(reason, "retrying in") {
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
