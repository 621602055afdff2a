package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Prom is a real Prometheus server started by Prometheus.
type Prom struct {
	URL    string // "http://127.0.0.1:port"
	Config string // path of its prometheus.yml
	Proc   *Process
}

// PromSample is one element of an instant query's result.
type PromSample struct {
	Labels map[string]string // includes __name__ when the result keeps it
	Value  float64
	Time   time.Time
}

// Prometheus starts the prometheus binary from PATH (Debian's package, see
// scripts/setup.sh) on a free port of 127.0.0.1 with a temporary storage
// directory and a configuration that scrapes target every scrapeInterval
// (job "target"; PrometheusJob names it). target is "host:port" (path /metrics) or a URL such as
// "http://127.0.0.1:9817/metrics". It waits until Prometheus is ready; it is
// stopped when the test ends.
func Prometheus(t testing.TB, target string, scrapeInterval time.Duration) *Prom {
	t.Helper()
	return PrometheusOn(t, FreePort(t), target, scrapeInterval)
}

// PrometheusOn is Prometheus listening on the given port of 127.0.0.1 (so
// that, for example, it can be told to scrape itself).
func PrometheusOn(t testing.TB, port int, target string, scrapeInterval time.Duration) *Prom {
	t.Helper()
	return prometheusJob(t, port, "target", target, scrapeInterval)
}

// PrometheusJob is Prometheus with the scrape job named job, for queries
// that select on it (kubernetes-mixin's job="cadvisor").
func PrometheusJob(t testing.TB, job, target string, scrapeInterval time.Duration) *Prom {
	t.Helper()
	return prometheusJob(t, FreePort(t), job, target, scrapeInterval)
}

func prometheusJob(t testing.TB, port int, job, target string, scrapeInterval time.Duration) *Prom {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("harness: prometheus is not installed (not in PATH): run scripts/setup.sh")
	}
	scheme, host, path := "http", target, "/metrics"
	if strings.Contains(target, "://") {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatalf("harness: Prometheus: bad target %q: %v", target, err)
		}
		scheme, host = u.Scheme, u.Host
		if u.Path != "" {
			path = u.Path
		}
	}
	timeout := scrapeInterval
	if timeout > 10*time.Second {
		timeout = 10 * time.Second
	}
	dir := t.TempDir() // before StartProcess: removed after the process stops
	cfg := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
  - job_name: %[6]q
    scrape_interval: %[1]s
    scrape_timeout: %[2]s
    scheme: %[3]s
    metrics_path: %[4]q
    static_configs:
      - targets: [%[5]q]
`, promDuration(scrapeInterval), promDuration(timeout), scheme, path, host, job)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Prom{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Config: cfgPath}
	p.Proc = StartProcess(t, bin, nil,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+fmt.Sprintf("127.0.0.1:%d", port),
		"--log.level=warn",
	)
	WaitFor(t, 60*time.Second, 100*time.Millisecond, func() (bool, string) {
		if code, exited := p.Proc.Exited(); exited {
			t.Fatalf("harness: prometheus exited with code %d:\n%s", code, p.Proc.Output())
		}
		resp, err := http.Get(p.URL + "/-/ready")
		if err != nil {
			return false, "prometheus not ready: " + err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, "prometheus not ready: " + resp.Status
	})
	return p
}

// promDuration formats d in Prometheus' duration syntax (whole milliseconds).
func promDuration(d time.Duration) string {
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// Query runs an instant query and returns the result; a scalar result is
// returned as one sample without labels. It fails the test on any error.
func (p *Prom) Query(t testing.TB, promql string) []PromSample {
	t.Helper()
	r, err := p.TryQuery(promql)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return r
}

// TryQuery is Query returning the error instead of failing the test.
func (p *Prom) TryQuery(promql string) ([]PromSample, error) {
	resp, err := http.PostForm(p.URL+"/api/v1/query", url.Values{"query": {promql}})
	if err != nil {
		return nil, fmt.Errorf("query %q: %v", promql, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("query %q: %v", promql, err)
	}
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("query %q: %s: %v: %.200s", promql, resp.Status, err, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s: %s", promql, r.ErrorType, r.Error)
	}
	switch r.Data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(r.Data.Result, &vec); err != nil {
			return nil, fmt.Errorf("query %q: %v", promql, err)
		}
		out := make([]PromSample, 0, len(vec))
		for _, v := range vec {
			s, err := promPoint(v.Value)
			if err != nil {
				return nil, fmt.Errorf("query %q: %v", promql, err)
			}
			s.Labels = v.Metric
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
			out = append(out, s)
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(r.Data.Result, &v); err != nil {
			return nil, fmt.Errorf("query %q: %v", promql, err)
		}
		s, err := promPoint(v)
		if err != nil {
			return nil, fmt.Errorf("query %q: %v", promql, err)
		}
		s.Labels = map[string]string{}
		return []PromSample{s}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %q, want vector or scalar", promql, r.Data.ResultType)
	}
}

func promPoint(v [2]any) (PromSample, error) {
	ts, ok1 := v[0].(float64)
	vs, ok2 := v[1].(string)
	if !ok1 || !ok2 {
		return PromSample{}, fmt.Errorf("bad sample %v", v)
	}
	f, err := parseValue(vs)
	if err != nil {
		return PromSample{}, err
	}
	sec := int64(ts)
	return PromSample{Value: f, Time: time.Unix(sec, int64((ts-float64(sec))*1e9))}, nil
}

// WaitUp waits up to timeout until Prometheus has scraped the target
// successfully, and fails the test with the target's last scrape error
// otherwise. The first scrape comes about 5 s after start: Prometheus 2.42's
// discovery manager hands new targets to the scrape manager every 5 s.
func (p *Prom) WaitUp(t testing.TB, timeout time.Duration) {
	t.Helper()
	WaitFor(t, timeout, 200*time.Millisecond, func() (bool, string) {
		resp, err := http.Get(p.URL + "/api/v1/targets?state=active")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				ActiveTargets []struct {
					ScrapeURL string `json:"scrapeUrl"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return false, "GET /api/v1/targets: " + err.Error()
		}
		if len(r.Data.ActiveTargets) == 0 {
			return false, "prometheus has no active target yet"
		}
		tg := r.Data.ActiveTargets[0]
		return tg.Health == "up", fmt.Sprintf("target %s health %q, last scrape error: %q", tg.ScrapeURL, tg.Health, tg.LastError)
	})
}

// cadvisorLint is what promtool's lint says of names cAdvisor gave its
// series, which dashboards query as they are: dockscope keeps them.
var cadvisorLint = []string{
	`container_fs_inodes_total non-counter metrics should not have "_total" suffix`,
}

// CheckMetrics runs promtool check metrics on an exposition and fails the
// test for every finding but cAdvisor's own names and those allowed.
func CheckMetrics(t testing.TB, body string, allowed ...string) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	var other []string
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		line = strings.TrimSpace(line)
		known := false
		for _, a := range append(cadvisorLint[:len(cadvisorLint):len(cadvisorLint)], allowed...) {
			known = known || strings.HasPrefix(line, a)
		}
		if !known {
			other = append(other, line)
		}
	}
	if len(other) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, strings.Join(other, "\n"))
	}
}
