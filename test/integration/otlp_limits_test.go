//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/exporters/otlp"
	"github.com/dockscope/dockscope/pipeline"
	"github.com/dockscope/dockscope/test/integration/harness"
)

// limitsContainers is the host size the OTLP size limits are tested at.
const limitsContainers = 1000

// limitsMeta is a container with the metadata a Compose host gives it.
func limitsMeta(c int) *pipeline.ContainerMeta {
	id := fmt.Sprintf("%064x", 0xd0c5c0de0000+c)
	return &pipeline.ContainerMeta{ID: id, Name: fmt.Sprintf("shop-svc-%04d-1", c), Image: "registry.example.com/team/app:1.2.3",
		ImageName: "registry.example.com/team/app", ImageTag: "1.2.3", ImageID: "sha256:" + id, Hostname: "node-17.example.com",
		ComposeProject: "shop", ComposeService: fmt.Sprintf("svc-%04d", c), Labels: map[string]string{"team": "checkout"}}
}

type countingAcker struct{ n atomic.Int64 }

func (a *countingAcker) Ack(rs []pipeline.LogRecord) error { a.n.Add(int64(len(rs))); return nil }

// TestOTLPLimitsThousandContainersOverGRPC: logs and metrics of 1,000
// containers reach the real OTel Collector over gRPC, whose receiver keeps
// gRPC's default 4 MiB message limit, with the default batch settings —
// before, a log batch drawn from that many containers encoded past 4 MiB
// (each container's Resource repeated) and was refused and retried for
// ever, and metrics went out as 1,000 requests a round.
//
// Starting 1,000 real containers on the test machine's Engine 20.10 takes
// far longer than this test's 3-minute budget, so the test drives the real
// exporters (the agent's code from the queue to the wire) with records and
// snapshots of 1,000 distinct containers carrying the metadata the
// collector would give them (id, name, image, Compose identity, a label);
// what the limit depends on — the number of distinct Resources per
// request and their size — is the same.
func TestOTLPLimitsThousandContainersOverGRPC(t *testing.T) {
	col := harness.Otelcol(t)
	def := config.Default()
	cfg := def.Exporters.OTLP
	cfg.Endpoint, cfg.Protocol = "http://"+col.GRPCEndpoint, otlp.ProtocolGRPC
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = 100*time.Millisecond, time.Second
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	getenv := func(string) string { return "" }

	t.Run("logs", func(t *testing.T) {
		const perContainer = 5 // 5,000 lines of 1 KiB: more than one default batch
		tel := pipeline.NewTelemetry()
		q := pipeline.NewLogQueue(def.Logs.BufferBytes, pipeline.Block, tel.Stage(pipeline.StageLogs))
		acker := &countingAcker{}
		e, err := otlp.NewLogExporter(otlp.LogOptions{Config: cfg, Batch: def.Logs.Batch, Queue: q, Acker: acker, Telemetry: tel, Logger: logger, Getenv: getenv})
		if err != nil {
			t.Fatal(err)
		}
		pad := strings.Repeat("x", 1000)
		now := time.Now()
		for i := range perContainer {
			for c := range limitsContainers {
				m := limitsMeta(c)
				q.Push(context.Background(), pipeline.LogRecord{ContainerID: m.ID, Container: m, Time: now.Add(time.Duration(i)), Observed: now,
					Stream: pipeline.Stdout, Body: fmt.Appendf(nil, "c%04d-l%d %s", c, i, pad)})
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { e.Run(ctx, 10*time.Second); close(done) }()
		const total = limitsContainers * perContainer
		harness.WaitFor(t, 60*time.Second, 100*time.Millisecond, func() (bool, string) {
			return acker.n.Load() >= total, fmt.Sprintf("%d of %d records acknowledged, %d export failures", acker.n.Load(), total, tel.ExportFailures.Load())
		})
		cancel()
		<-done

		tail := col.Tail()
		seen := map[string]int{}
		containers := map[string]bool{}
		harness.WaitFor(t, 30*time.Second, 200*time.Millisecond, func() (bool, string) {
			for _, r := range tail.Next(t) {
				body := r.BodyString()
				if i := strings.IndexByte(body, ' '); i > 0 && strings.HasPrefix(body, "c") {
					seen[body[:i]]++
					containers[r.Resource.Str("container.id")] = true
				}
			}
			return len(seen) >= total, fmt.Sprintf("the collector wrote %d of %d lines", len(seen), total)
		})
		for line, n := range seen {
			if n != 1 {
				t.Errorf("%s delivered %d times", line, n)
			}
		}
		st := tel.Stage(pipeline.StageLogs)
		if len(containers) != limitsContainers || st.Dropped.Load() != 0 || tel.ExportFailures.Load() != 0 {
			t.Errorf("%d containers' lines, %d dropped, %d export failures; want %d containers, nothing dropped or refused",
				len(containers), st.Dropped.Load(), tel.ExportFailures.Load(), limitsContainers)
		}
		t.Logf("%d lines of %d containers delivered over OTLP/gRPC with batch max_bytes %d: %d export failures",
			total, limitsContainers, def.Logs.Batch.MaxBytes, tel.ExportFailures.Load())
	})

	t.Run("metrics", func(t *testing.T) {
		store := pipeline.NewStore()
		started := time.Now().Add(-time.Hour)
		for c := range limitsContainers {
			m := limitsMeta(c)
			store.Upsert(*m, pipeline.ContainerState{Status: "running", StartedAt: started}, pipeline.ContainerSpec{MemoryLimit: 1 << 30})
			store.SetStats(m.ID, pipeline.Stats{Read: time.Now(), CPUUser: time.Second, CPUSystem: time.Second, CPUUsageCores: 0.1, HasCPUUsage: true,
				MemoryUsage: 1 << 20, MemoryWorkingSet: 1 << 19, MemoryRSS: 1 << 18, Pids: 3,
				Networks: []pipeline.NetworkStats{{Interface: "eth0", RxBytes: 1, TxBytes: 2}}})
		}
		tel := pipeline.NewTelemetry()
		e, err := otlp.NewMetricsExporter(context.Background(), otlp.MetricsOptions{Config: cfg, Interval: 5 * time.Second, Store: store,
			Telemetry: tel, Logger: logger, Getenv: getenv})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		var rounds int
		harness.WaitFor(t, 60*time.Second, 200*time.Millisecond, func() (bool, string) {
			rounds = int(tel.Stage(pipeline.StageOTLPMetrics).Out.Load()) / limitsContainers
			return rounds >= 2, fmt.Sprintf("%d containers' metrics sent, %d export failures", tel.Stage(pipeline.StageOTLPMetrics).Out.Load(), tel.ExportFailures.Load())
		})
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		seen := map[string]int{}
		harness.WaitFor(t, 30*time.Second, 200*time.Millisecond, func() (bool, string) {
			clear(seen)
			for _, rm := range col.ResourceMetrics(t) {
				if _, ok := rm.Metric("container.cpu.time"); ok {
					seen[rm.Resource.Str("container.id")]++
				}
			}
			return len(seen) == limitsContainers, fmt.Sprintf("the collector has metrics of %d of %d containers", len(seen), limitsContainers)
		})
		for id, n := range seen {
			if n < 2 {
				t.Errorf("container %s in %d rounds, want every round", id, n)
			}
		}
		// What the collector decoded is what the conventions say, for any
		// one of the containers.
		found := false
		for _, rm := range col.ResourceMetrics(t) {
			if rm.Resource.Str("container.name") != "shop-svc-0777-1" {
				continue
			}
			found = true
			if rm.Resource.Str("docker.compose.service") != "svc-0777" || rm.Resource.Str("container.label.team") != "checkout" || rm.SchemaURL == "" {
				t.Errorf("resource = %v (schema %q)", rm.Resource, rm.SchemaURL)
			}
			cpu, _ := rm.Metric("container.cpu.time")
			user, ok := cpu.Point(map[string]string{"cpu.mode": "user"})
			if cpu.Type != "sum" || !cpu.Monotonic || cpu.Temporality != "cumulative" || cpu.Unit != "s" || len(cpu.Points) != 2 ||
				!ok || user.Value != 1 || !user.StartTime.Equal(started) || cpu.Scope != "github.com/dockscope/dockscope" {
				t.Errorf("container.cpu.time = %+v", cpu)
			}
			mem, _ := rm.Metric("container.memory.usage")
			state, _ := rm.Metric("container.state")
			running, _ := state.Point(map[string]string{"container.state": "running"})
			if mem.Type != "sum" || mem.Monotonic || len(mem.Points) != 1 || mem.Points[0].Value != 1<<20 || state.Type != "gauge" || running.Value != 1 {
				t.Errorf("container.memory.usage = %+v, container.state = %+v", mem, state)
			}
			break
		}
		if !found {
			t.Error("no metrics of shop-svc-0777-1")
		}
		st := tel.Stage(pipeline.StageOTLPMetrics)
		if st.Dropped.Load() != 0 || tel.ExportFailures.Load() != 0 {
			t.Errorf("%d containers' metrics dropped, %d export failures; want none", st.Dropped.Load(), tel.ExportFailures.Load())
		}
		// The file exporter writes one line per export request.
		out, err := os.ReadFile(col.OutputPath)
		if err != nil {
			t.Fatal(err)
		}
		requests := 0
		for _, line := range bytes.Split(out, []byte("\n")) {
			if bytes.Contains(line, []byte(`"resourceMetrics"`)) {
				requests++
			}
		}
		t.Logf("%d containers' metrics over OTLP/gRPC: %d rounds in %d export requests", limitsContainers, rounds, requests)
		if requests > 2*rounds+2 {
			t.Errorf("%d requests for %d rounds, want one or two a round", requests, rounds)
		}
	})
}
