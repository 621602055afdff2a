//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/dockscope/dockscope/internal/procfs"
	"github.com/dockscope/dockscope/test/integration/harness"
)

// TestSharedNetnsExportsNetworkOnce runs a container and a second one in its
// network namespace (`docker run --network container:X`, what Compose's
// network_mode: service: and every Kubernetes pod member do): the Engine,
// and /proc/<pid>/net/dev, report the same interfaces for both. Only the
// namespace's owner has network series, on the Prometheus endpoint (for both
// stats sources) and in OTLP, so sums over containers count its traffic
// once, as with cAdvisor.
func TestSharedNetnsExportsNetworkOnce(t *testing.T) {
	t.Parallel()
	col := harness.Otelcol(t)
	scope := "netns"
	owner, member := uniq(t, "netns-owner"), uniq(t, "netns-member")
	api := startAgent(t, agentOpts{scope: scope, stats: "  source: api\n"})
	cg := startAgent(t, agentOpts{scope: scope, stats: "  source: cgroup\n",
		extra: fmt.Sprintf("exporters:\n  otlp:\n    endpoint: %s\n    protocol: http/protobuf\n    compression: none\n    interval: 1s\n", col.HTTPEndpoint)})
	ownerID := harness.RunContainer(t, append(scopeArgs(scope, owner), harness.WorkloadImage(t), "sleep")...)
	harness.RunContainer(t, append(scopeArgs(scope, member), "--network", "container:"+ownerID, harness.WorkloadImage(t), "sleep")...)
	if mode := harness.Docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", member); mode != "container:"+ownerID {
		t.Fatalf("member's NetworkMode = %q", mode)
	}

	for _, a := range []struct {
		name string
		*agent
	}{{"api", api}, {"cgroup", cg}} {
		// Both sampled: the member's stats are there, without interfaces.
		a.waitValue(t, 20*time.Second, "container_network_receive_bytes_total", owner, map[string]string{"interface": "eth0"}, func(float64) bool { return true })
		a.waitValue(t, 20*time.Second, "container_memory_working_set_bytes", member, nil, func(v float64) bool { return v > 0 })
		m := a.scrape(t)
		for _, name := range m.Names() {
			if !strings.HasPrefix(name, "container_network_") {
				continue
			}
			if got := m.FindAll(name, map[string]string{"name": member}); len(got) > 0 {
				t.Errorf("%s source: the namespace member has %s: %v", a.name, name, got)
			}
			if got := m.FindAll(name, map[string]string{"name": owner}); len(got) == 0 {
				t.Errorf("%s source: the namespace owner lacks %s", a.name, name)
			}
		}
	}

	// OTLP: container.network.io for the owner only.
	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		var ownerHas, memberSampled bool
		for _, rm := range col.ResourceMetrics(t) {
			_, hasNet := rm.Metric("container.network.io")
			_, sampled := rm.Metric("container.memory.working_set")
			switch rm.Resource.Str("container.name") {
			case owner:
				ownerHas = ownerHas || hasNet
			case member:
				if hasNet {
					t.Fatalf("OTLP: the namespace member has container.network.io")
				}
				memberSampled = memberSampled || sampled
			}
		}
		return ownerHas && memberSampled, fmt.Sprintf("OTLP: owner has container.network.io %v, member sampled %v", ownerHas, memberSampled)
	})
}

// TestContainerLastSeenAlert runs cAdvisor's ContainerKilled alert
// expression, time() - container_last_seen > 60, on a real Prometheus that
// scrapes the agent: it must pick out the removed container a minute after
// it went, and never the running or the stopped one, although the stopped
// one hears nothing from the Engine for longer than that (the resync
// interval is longer than the alert's 60 s).
func TestContainerLastSeenAlert(t *testing.T) {
	t.Parallel()
	scope := "lastseen"
	running, stopped, gone := uniq(t, "ls-running"), uniq(t, "ls-stopped"), uniq(t, "ls-gone")
	a := startAgent(t, agentOpts{scope: scope, resync: "5m"})
	for _, n := range []string{running, stopped, gone} {
		harness.RunContainer(t, append(scopeArgs(scope, n), harness.WorkloadImage(t), "sleep")...)
	}
	p := harness.Prometheus(t, strings.TrimPrefix(a.url, "http://"), time.Second)
	names := fmt.Sprintf("%s|%s|%s", running, stopped, gone)
	harness.WaitFor(t, 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		q := fmt.Sprintf(`container_memory_usage_bytes{name=~%q}`, names)
		res, err := p.TryQuery(q)
		return err == nil && len(res) == 3, fmt.Sprintf("%s: %v %v", q, res, err)
	})

	harness.Docker(t, "stop", "-t", "0", stopped)
	harness.Docker(t, "rm", "-f", gone)
	wentAt := time.Now()

	alert := fmt.Sprintf(`time() - container_last_seen{name=~%q} > 60`, names)
	age := fmt.Sprintf(`time() - container_last_seen{name=~%q}`, names)
	checkedGoneStaysVisible := false
	for {
		res, err := p.TryQuery(age)
		if err != nil {
			t.Fatal(err)
		}
		ages := map[string]float64{}
		for _, s := range res {
			ages[s.Labels["name"]] = s.Value
		}
		since := time.Since(wentAt)
		// The running and the stopped container are seen at every scrape.
		for _, n := range []string{running, stopped} {
			if v, ok := ages[n]; !ok || v > 5 {
				t.Fatalf("%s after the removal: %s has time() - container_last_seen = %v (present %v), want at most a few seconds", since.Round(time.Second), n, v, ok)
			}
		}
		if since > 10*time.Second && !checkedGoneStaysVisible {
			// Its other series went stale at once; this one, stamped, stays.
			if r, _ := p.TryQuery(fmt.Sprintf(`container_memory_usage_bytes{name=%q}`, gone)); len(r) != 0 {
				t.Errorf("the removed container's memory series is still there: %v", r)
			}
			if v, ok := ages[gone]; !ok || v < 5 {
				t.Fatalf("%s after the removal, the removed container's container_last_seen is %v (present %v): a stale series cannot fire the alert", since.Round(time.Second), v, ok)
			}
			checkedGoneStaysVisible = true
		}
		if since > 65*time.Second {
			break
		}
		time.Sleep(2 * time.Second)
	}
	res, err := p.TryQuery(alert)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Labels["name"] != gone {
		t.Fatalf("%s = %v, want the removed container %s only", alert, res, gone)
	}
	t.Logf("%s fires for %s, %.0f s after its last sample", alert, gone, res[0].Value)
}

// TestRateOverShortWindows scrapes a CPU-burning container with two real
// Prometheus servers, every 5 s and every 15 s, while the agent samples on
// the default 10 s interval: rate(container_cpu_usage_seconds_total) over
// [30s] and [1m] must match, within 5 %, the kernel's account of the
// process between the samples the window holds (rate() is their slope).
// Samples taken every 10 s and served as fresh at every scrape read 0.80 of
// the truth at a 5 s scrape; the agent now reads the counters at scrape
// time. The busy loop gets less than a core when other work shares this
// machine, hence the comparison with the kernel rather than with 1.
func TestRateOverShortWindows(t *testing.T) {
	t.Parallel()
	scope, name := "rate", uniq(t, "rate")
	a := startAgent(t, agentOpts{scope: scope, interval: "10s"})
	harness.RunContainer(t, append(scopeArgs(scope, name), harness.WorkloadImage(t), "burn", "-cores", "1")...)
	pid, err := strconv.Atoi(strings.TrimSpace(harness.Docker(t, "inspect", "-f", "{{.State.Pid}}", name)))
	if err != nil {
		t.Fatalf("the container's pid: %v", err)
	}
	a.waitValue(t, 20*time.Second, "container_cpu_usage_seconds_total", name, map[string]string{"cpu": "total"}, func(v float64) bool { return v > 0 })

	// The kernel's account, every 100 ms, from before the first scrape.
	type point struct {
		at  time.Time
		cpu float64
	}
	var (
		mu    sync.Mutex
		truth []point
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if s, err := procfs.CPUSeconds(pid); err == nil {
				mu.Lock()
				truth = append(truth, point{time.Now(), s})
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); <-done }()
	cpuAt := func(at time.Time) float64 { // linear between the points around at
		mu.Lock()
		defer mu.Unlock()
		i := sort.Search(len(truth), func(i int) bool { return !truth[i].at.Before(at) })
		if i == 0 || i == len(truth) {
			t.Fatalf("no kernel reading around %s", at)
		}
		p, q := truth[i-1], truth[i]
		return p.cpu + (q.cpu-p.cpu)*float64(at.Sub(p.at))/float64(q.at.Sub(p.at))
	}

	target := strings.TrimPrefix(a.url, "http://")
	proms := map[time.Duration]*harness.Prom{5 * time.Second: harness.Prometheus(t, target, 5*time.Second), 15 * time.Second: harness.Prometheus(t, target, 15*time.Second)}
	time.Sleep(95 * time.Second) // a [1m] window of both, and then some
	series := fmt.Sprintf(`container_cpu_usage_seconds_total{name=%q,cpu="total"}`, name)
	now := time.Now().Add(-2 * time.Second)
	for _, scrape := range []time.Duration{5 * time.Second, 15 * time.Second} {
		for _, window := range []time.Duration{30 * time.Second, time.Minute} {
			for _, at := range []time.Time{now, now.Add(-7 * time.Second), now.Add(-13 * time.Second)} {
				w := model.Duration(window).String()
				rate, err := promQueryAt(proms[scrape].URL, fmt.Sprintf("rate(%s[%s])", series, w), at)
				if err != nil {
					t.Fatalf("scrape every %s: %v", scrape, err)
				}
				samples, err := promSamplesAt(proms[scrape].URL, fmt.Sprintf("%s[%s]", series, w), at)
				if err != nil {
					t.Fatalf("scrape every %s: %v", scrape, err)
				}
				if len(samples) < 2 {
					t.Fatalf("scrape every %s: %d samples in [%s] at %s", scrape, len(samples), w, at)
				}
				first, last := samples[0], samples[len(samples)-1]
				span := last.at.Sub(first.at).Seconds()
				want := (cpuAt(last.at) - cpuAt(first.at)) / span
				t.Logf("scrape every %s, rate([%s]) at %s: %.3f cores; the kernel, over its %d samples' %.0f s: %.3f",
					scrape, w, at.Format("15:04:05"), rate, len(samples), span, want)
				if r := rate / want; r < 0.95 || r > 1.05 {
					t.Errorf("scrape every %s: rate([%s]) at %s = %.3f cores, the kernel's %.3f (ratio %.3f, want 0.95–1.05)", scrape, w, at.Format("15:04:05"), rate, want, r)
				}
			}
		}
	}
}

// promQueryAt runs an instant query evaluated at a given time and returns
// its single value.
func promQueryAt(base, q string, at time.Time) (float64, error) {
	var r struct {
		Value [2]any `json:"value"`
	}
	if err := promAPI(base, q, at, &r); err != nil {
		return 0, err
	}
	s, _ := r.Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

type promPoint struct {
	at    time.Time
	value float64
}

// promSamplesAt returns the raw samples of a range vector selector's single
// series, evaluated at a given time.
func promSamplesAt(base, q string, at time.Time) ([]promPoint, error) {
	var r struct {
		Values [][2]any `json:"values"`
	}
	if err := promAPI(base, q, at, &r); err != nil {
		return nil, err
	}
	var out []promPoint
	for _, v := range r.Values {
		ts, _ := v[0].(float64)
		s, _ := v[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", q, v[1], err)
		}
		out = append(out, promPoint{time.UnixMilli(int64(ts * 1000)), f})
	}
	return out, nil
}

// promAPI runs an instant query at a given time and decodes its single
// result into result.
func promAPI(base, q string, at time.Time, result any) error {
	resp, err := http.PostForm(base+"/api/v1/query", url.Values{"query": {q}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)}})
	if err != nil {
		return fmt.Errorf("query %q: %w", q, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("query %q: decoding: %w", q, err)
	}
	if r.Status != "success" || len(r.Data.Result) != 1 {
		return fmt.Errorf("query %q at %s: %s %s, %d results", q, at.Format(time.RFC3339), r.Status, r.Error, len(r.Data.Result))
	}
	return json.Unmarshal(r.Data.Result[0], result)
}
