package prometheus

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// benchStore holds n running containers with a full sample each, like the
// overhead benchmark's hosts.
func benchStore(n int) *pipeline.Store { return benchStoreOf(n, false) }

// benchStoreOf is benchStore whose samples carry, when detail is set, what
// the cgroup v1 hosts measured here give of cAdvisor's wider memory family
// (cgroupdetail.go), as a scrape of a real host has them.
func benchStoreOf(n int, detail bool) *pipeline.Store {
	s := pipeline.NewStore()
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("%064x", i)
		s.Upsert(pipeline.ContainerMeta{ID: id, CgroupPath: "/docker/" + id, Name: fmt.Sprintf("bench-%d", i), Image: "dockscope-bench-workload:latest",
			ImageName: "dockscope-bench-workload", ImageTag: "latest", ImageID: "sha256:" + id, Hostname: "vm"},
			pipeline.ContainerState{Status: "running", StartedAt: now}, pipeline.ContainerSpec{CPUShares: 1024})
		// What the cgroup v1 hosts measured here give of cAdvisor's wider
		// memory family (cgroupdetail.go).
		s.SetStats(id, pipeline.Stats{Read: now, CPUTotal: time.Second, MemoryUsage: 1 << 20, Pids: 3,
			Present:  pipeline.MemMaxUsage | pipeline.MemKernel | pipeline.MemFileDetail | pipeline.MemFaults | pipeline.MemRefault | pipeline.MemFailcnt,
			Memory:   pipeline.MemoryDetail{MaxUsage: 4 << 20, Kernel: 1 << 19, InactiveFile: 1 << 20, Pgfault: 1369, TotalPgfault: 1369},
			Networks: []pipeline.NetworkStats{{Interface: "eth0", RxBytes: 100}}})
	}
	return s
}

func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{210, 1000} {
		for _, gzip := range []bool{false, true} {
			b.Run(fmt.Sprintf("containers=%d/gzip=%v", n, gzip), func(b *testing.B) { benchScrape(b, n, gzip) })
		}
	}
}

// benchScrape serves n containers' scrape through the handler, as
// Prometheus asks for it when gzip is set, and reports the body's size.
func benchScrape(b *testing.B, n int, gzip bool) {
	store := benchStoreOf(n, true)
	srv, err := NewServer(ServerOptions{ListenAddress: "127.0.0.1:0", MetricsPath: "/metrics",
		Containers: NewContainerCollector(store), Ready: func() (bool, string) { return true, "" },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.listener.Close()
	h := srv.srv.Handler
	bodyBytes := 0
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if gzip {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
		bodyBytes = w.Body.Len()
	}
	// CPU time (the process's, GC included) is what issue 14's targets are
	// about, and on a shared machine it varies far less than wall time.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(bodyBytes), "body-bytes")
}

// processCPU is the user and system CPU time the test process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
