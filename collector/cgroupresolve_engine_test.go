package collector

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

// cgroupEngine is a minimal Engine on a unix socket: one running container
// whose main process is pid, events that never come, and a stats endpoint
// that counts the samples asked of it.
type cgroupEngine struct {
	sock       string
	id         string
	mu         sync.Mutex
	pid        int
	statsCalls atomic.Int64
}

var apiPrefix = regexp.MustCompile(`^/v[0-9.]+`)

func newCgroupEngine(t *testing.T, id string, pid int) *cgroupEngine {
	t.Helper()
	e := &cgroupEngine{sock: filepath.Join(t.TempDir(), "docker.sock"), id: id, pid: pid}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", "1.41")
		fmt.Fprint(w, "OK")
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux"}`)
	})
	mux.HandleFunc("/info", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"Name":"host-1","CgroupDriver":"cgroupfs","CgroupVersion":"1","OSType":"linux","SystemTime":"2026-12-07T12:00:00Z"}`)
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("/containers/json", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `[{"Id":%q,"Names":["/web"],"Image":"web:1","State":"running","Status":"Up 1 second"}]`, id)
	})
	mux.HandleFunc("/containers/{id}/json", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		pid := e.pid
		e.mu.Unlock()
		fmt.Fprintf(w, `{"Id":%q,"Name":"/web","Created":"2026-12-07T11:59:00Z","Image":"sha256:1",
"State":{"Status":"running","Running":true,"Pid":%d,"StartedAt":"2026-12-07T11:59:01Z","FinishedAt":"0001-01-01T00:00:00Z"},
"Config":{"Image":"web:1","Labels":{}},"HostConfig":{"NetworkMode":"none","LogConfig":{"Type":"json-file"}}}`, id, pid)
	})
	mux.HandleFunc("/containers/{id}/stats", func(w http.ResponseWriter, r *http.Request) {
		e.statsCalls.Add(1)
		http.Error(w, `{"message":"not in this test"}`, http.StatusInternalServerError)
	})
	ln, err := net.Listen("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = apiPrefix.ReplaceAllString(r.URL.Path, "")
		mux.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return e
}

// TestCollectorSamplesTheResolvedCgroup drives the collector through an
// Engine: the container's id label is the path /proc gives, and its stats
// come from the directories /proc leads to (the memory hierarchy elsewhere
// than the cpu one, as recorded with a relative --cgroup-parent), not from
// the Engine.
func TestCollectorSamplesTheResolvedCgroup(t *testing.T) {
	id := caseID(t, "v1-relative-parent")
	const root = "sys/fs/cgroup"
	mem := root + "/memory/process_api/074881d9df869e04bc1c4412fe847b76/dockscope-rel-parent/" + id
	acct := root + "/cpuacct/dockscope-rel-parent/" + id
	h := layoutCase(t, "v1-relative-parent", root, "", false, []string{root + "/cpu/dockscope-rel-parent/" + id})
	for p, content := range map[string]string{
		acct + "/cpuacct.usage":        "2000000\n",
		acct + "/cpuacct.stat":         "user 1\nsystem 2\n",
		mem + "/memory.usage_in_bytes": "8192\n",
		mem + "/memory.stat":           "total_rss 8192\ntotal_cache 0\ntotal_inactive_file 0\n",
	} {
		writeFile(t, filepath.Join(h.top, p), content)
	}
	e := newCgroupEngine(t, id, 42)

	cfg := config.Default()
	cfg.Docker.Host = "unix://" + e.sock
	cfg.Stats.Source, cfg.Stats.CgroupRoot, cfg.Stats.ProcRoot = "cgroup", h.root, h.proc
	cfg.Stats.Interval = 100 * time.Millisecond
	store, tel := pipeline.NewStore(), pipeline.NewTelemetry()
	var logged syncBuffer
	c, err := New(Options{Config: cfg, Store: store, Telemetry: tel, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	deadline := time.Now().Add(5 * time.Second)
	for tel.StatsFromCgroup.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no samples from cgroup files:\n%s", logged.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	snap, ok := store.Get(id)
	if !ok {
		t.Fatal("container not in the store")
	}
	if want := "/dockscope-rel-parent/" + id; snap.Meta.CgroupPath != want {
		t.Errorf("id label %q, want %q", snap.Meta.CgroupPath, want)
	}
	if snap.Stats == nil || snap.Stats.MemoryUsage != 8192 || snap.Stats.CPUTotal != 2*time.Millisecond {
		t.Errorf("stats %+v", snap.Stats)
	}
	if n := e.statsCalls.Load(); n != 0 || tel.StatsFromAPI.Load() != 0 {
		t.Errorf("%d stats requests to the Engine (%d counted)", n, tel.StatsFromAPI.Load())
	}
}
