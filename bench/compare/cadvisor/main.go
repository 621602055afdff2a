// Program cadvisor-lib runs cAdvisor's own collection (its manager, docker
// and raw container handlers, in-memory cache) and its own Prometheus
// collectors behind /metrics, for `bench/overhead -compare-cadvisor` to
// measure beside dockscope over the same containers:
//
//	cd bench/compare/cadvisor && CGO_ENABLED=0 go build -o /tmp/cadvisor .
//	/tmp/cadvisor -docker_only -housekeeping_interval 10s -port 8089
//
// Why this wiring instead of cAdvisor's cmd binary: from v0.60 on, cAdvisor
// moved its manager, metrics and cmd into the separate module
// github.com/google/cadvisor/cmd, which the Go module proxy does not serve
// (404 for every version), and a main package cannot be imported. v0.57.0
// is the newest release whose library module still holds manager/ and
// metrics/, so this main calls those packages the way cAdvisor's command
// does: same flags (all registered by the imported packages, plus the few
// below), the same default -disable_metrics, the same collectors on
// /metrics (container, machine, Go runtime, process). Left out: the web
// UI, the REST API and non-Docker runtimes, none of which a scrape of
// /metrics touches.
//
// A module of its own, so that the agent's go.mod stays clean.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/cadvisor/cache/memory"
	"github.com/google/cadvisor/container"
	_ "github.com/google/cadvisor/container/docker/install"
	v2 "github.com/google/cadvisor/info/v2"
	"github.com/google/cadvisor/manager"
	"github.com/google/cadvisor/metrics"
	"github.com/google/cadvisor/utils/sysfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// cmdDefaultDisabled is the -disable_metrics default of cAdvisor's command
// (unchanged from v0.49 to v0.61), so that the series set matches what a
// stock cAdvisor exports.
var cmdDefaultDisabled = []container.MetricKind{
	container.MemoryNumaMetrics, container.NetworkTcpUsageMetrics, container.NetworkUdpUsageMetrics,
	container.NetworkAdvancedTcpUsageMetrics, container.ProcessSchedulerMetrics, container.ProcessMetrics,
	container.HugetlbUsageMetrics, container.ReferencedMemoryMetrics, container.CPUTopologyMetrics,
	container.ResctrlMetrics, container.CPUSetMetrics,
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cadvisor:", err)
		os.Exit(1)
	}
}

func run() error {
	disabled := container.MetricSet{}
	for _, k := range cmdDefaultDisabled {
		disabled[k] = struct{}{}
	}
	flag.Var(&disabled, "disable_metrics", "comma-separated metric kinds to disable (default: cAdvisor command's)")
	listenIP := flag.String("listen_ip", "", "IP to listen on")
	port := flag.Int("port", 8080, "port to listen on")
	storageDuration := flag.Duration("storage_duration", 2*time.Minute, "how long stats are kept in memory")
	klog.InitFlags(nil)
	flag.Parse()

	included := container.AllMetrics.Difference(disabled)
	// What the command passes for its empty whitelist flags (a split of
	// ""); the raw factory indexes the first element.
	noPrefixes := []string{""}
	mgr, err := manager.New(memory.New(*storageDuration, nil), sysfs.NewRealSysFs(), manager.HousekeepingConfigFlags,
		included, http.DefaultClient, noPrefixes, noPrefixes, "", 0)
	if err != nil {
		return fmt.Errorf("creating the container manager: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics.NewPrometheusCollector(mgr, metrics.DefaultContainerLabels, included, clock.RealClock{},
			v2.RequestOptions{IdType: v2.TypeName, Count: 1, Recursive: true}),
		metrics.NewPrometheusMachineCollector(mgr, included),
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	if err := mgr.Start(); err != nil {
		return fmt.Errorf("starting the container manager: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv := &http.Server{Addr: net.JoinHostPort(*listenIP, fmt.Sprint(*port)), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = srv.Shutdown(shutCtx)
	}
	if stopErr := mgr.Stop(); stopErr != nil {
		err = errors.Join(err, fmt.Errorf("stopping the container manager: %w", stopErr))
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
