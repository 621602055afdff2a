//go:build integration

package integration

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// readOnlyProxy serves the Engine API on a unix socket of its own and passes
// on only GET and HEAD requests, answering 403 to every other method, the
// way a socket proxy (e.g. tecnativa/docker-socket-proxy) protects the
// daemon. It records what it saw.
type readOnlyProxy struct {
	srv *http.Server

	mu      sync.Mutex
	seen    map[string]int // "METHOD /path-with-ids-replaced"
	refused []string
}

// apiPath normalises a request path for counting: API version prefix and
// container ids removed.
var (
	versionPrefix = regexp.MustCompile(`^/v[0-9.]+`)
	hexID         = regexp.MustCompile(`/[0-9a-f]{64}`)
)

func startReadOnlyProxy(t *testing.T, sock, target string) *readOnlyProxy {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listening on %s: %v", sock, err)
	}
	rp := engineReverseProxy(target)
	p := &readOnlyProxy{seen: map[string]int{}}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + hexID.ReplaceAllString(versionPrefix.ReplaceAllString(r.URL.Path, ""), "/{id}")
		p.mu.Lock()
		p.seen[key]++
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			p.refused = append(p.refused, key)
			p.mu.Unlock()
			http.Error(w, `{"message":"read-only proxy: method not allowed"}`, http.StatusForbidden)
			return
		}
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
		p.srv.Close()
	})
	return p
}

func (p *readOnlyProxy) report() (seen map[string]int, refused []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen = make(map[string]int, len(p.seen))
	for k, v := range p.seen {
		seen[k] = v
	}
	return seen, slices.Clone(p.refused)
}

// engineReverseProxy passes HTTP requests on to the Engine API on the unix
// socket target, streaming events and logs as they come.
func engineReverseProxy(target string) *httputil.ReverseProxy {
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: "docker"})
	rp.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", target)
	}}
	rp.FlushInterval = -1
	return rp
}

// TestAgentIsReadOnly runs the agent with every feature that talks to the
// Engine (discovery, events, stats, health, logs of running and exited
// containers, events as records, Swarm services) through a proxy that
// refuses anything but GET and HEAD, and checks nothing was refused.
func TestAgentIsReadOnly(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	proxy := startReadOnlyProxy(t, sock, harness.DockerSocket(t))

	// The proxy does refuse writes: a POST through it fails.
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	res, err := c.Post("http://docker/v1.41/containers/create", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("the proxy let a POST through: %s", res.Status)
	}
	if _, refused := proxy.report(); len(refused) != 1 {
		t.Fatalf("refused = %v after one POST", refused)
	}

	col := harness.Otelcol(t)
	scope := "readonly"
	a := startAgent(t, agentOpts{
		scope: scope,
		env:   []string{"DOCKER_HOST=unix://" + sock},
		// The API source, so that stats requests go through the proxy too
		// (the default, auto, reads this host's cgroup files instead).
		stats: "  source: api\n",
		extra: logsConfig(col, 64) + "swarm:\n  services: true\n",
	})

	logger := uniq(t, "ro-log")
	harness.RunContainer(t, append(scopeArgs(scope, logger), harness.WorkloadImage(t), "log", "-lines", "200", "-rate", "100", "-stderr-every", "3", "-then", "sleep")...)
	exited := uniq(t, "ro-exit")
	harness.RunContainer(t, append(scopeArgs(scope, exited), harness.WorkloadImage(t), "log", "-lines", "50", "-then", "exit")...)
	health := uniq(t, "ro-health")
	harness.RunContainer(t, append(scopeArgs(scope, health), harness.WorkloadHealthImage(t))...)

	checkNumbered(t, logger, waitShipped(t, col, logger, 200, 60*time.Second), 200, 3, 0)
	checkNumbered(t, exited, waitShipped(t, col, exited, 50, 60*time.Second), 50, 0, 0)
	series, labels := sampledSeries()
	a.waitValue(t, 30*time.Second, series, logger, labels, func(float64) bool { return true })
	a.waitValue(t, 30*time.Second, "container_health_status", health, map[string]string{"status": "unhealthy"}, func(v float64) bool { return v == 1 })
	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		evs := shippedEvents(t, col, exited)
		_, ok := evs["container.die"]
		return ok, fmt.Sprintf("events of %s: %v", exited, slices.Sorted(maps.Keys(evs)))
	})

	seen, refused := proxy.report()
	if len(refused) != 1 { // the test's own POST
		t.Errorf("the agent made requests other than GET/HEAD: %v", refused[1:])
	}
	// The agent did use every endpoint through the proxy.
	for _, want := range []string{
		"GET /containers/json", "GET /events", "GET /containers/{id}/json",
		"GET /containers/{id}/stats", "GET /containers/{id}/logs", "GET /info", "GET /services",
	} {
		if seen[want] == 0 {
			t.Errorf("the agent never sent %s through the proxy; it sent %v", want, seen)
		}
	}
	t.Logf("requests through the read-only proxy: %v", seen)
}
