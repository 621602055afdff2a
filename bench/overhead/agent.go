package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
)

// agentProc is the agent under test, running as its own process group so
// that a Ctrl-C in the terminal reaches the benchmark only, and the
// benchmark stops the agent (and anything `sh -c` started) itself.
type agentProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

// startAgent starts argv with stdout and stderr going to logPath.
func startAgent(argv []string, logPath string) (*agentProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the agent log: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	a := &agentProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		a.waitErr = cmd.Wait()
		logf.Close()
		close(a.done)
	}()
	return a, nil
}

func (a *agentProc) pid() int { return a.cmd.Process.Pid }

// exitErr reports whether the agent has exited, and how.
func (a *agentProc) exitErr() error {
	select {
	case <-a.done:
		return fmt.Errorf("the agent exited early (%v); its log is %s:\n%s", a.waitErr, a.logPath, benchenv.Tail(a.logPath, 20))
	default:
		return nil
	}
}

// stop sends SIGTERM to the agent's process group and waits; after grace it
// sends SIGKILL. Calling it again is harmless.
func (a *agentProc) stop(grace time.Duration) error {
	pgid := a.pid() // Setpgid made the agent the leader of its group
	select {
	case <-a.done:
		return nil
	default:
	}
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending SIGTERM to the agent: %w", err)
	}
	select {
	case <-a.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-a.done
	return fmt.Errorf("the agent did not exit within %s of SIGTERM and was killed", grace)
}

// logProblems counts the warning and error lines of a logfmt, JSON or klog
// (cAdvisor) agent log and returns the first, so that a misbehaving agent shows in the report
// even after its log is deleted.
func logProblems(path string) (n int, first string) {
	f, err := os.Open(path)
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		l := strings.ToLower(sc.Text())
		if isKlogProblem(sc.Text()) || strings.Contains(l, "level=warn") || strings.Contains(l, "level=error") ||
			strings.Contains(l, `"level":"warn`) || strings.Contains(l, `"level":"error`) {
			if n == 0 {
				first = sc.Text()
			}
			n++
		}
	}
	return n, first
}

// isKlogProblem tells a klog warning, error or fatal line: "W1207 16:00:56…".
func isKlogProblem(line string) bool {
	if len(line) < 6 || !strings.ContainsRune("WEF", rune(line[0])) || line[5] != ' ' {
		return false
	}
	for _, c := range line[1:5] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// writeAgentConfig writes dockscope's YAML configuration for one run.
// Discovery is limited to this run's containers unless followAll is set:
// other work on the host (integration tests) must not change what the agent
// is measured on.
func writeAgentConfig(path, stateDir, runID string, interval time.Duration, source string, followAll bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "agent:\n  state_dir: %q\n", stateDir)
	fmt.Fprintf(&b, "stats:\n  interval: %s\n  source: %s\n", interval, source)
	if !followAll {
		fmt.Fprintf(&b, "discovery:\n  include:\n    labels: [%q]\n", runLabel+"="+runID)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing the agent configuration: %w", err)
	}
	return nil
}

// scraper fetches a metrics endpoint the way Prometheus does: text format,
// gzip (Go's transport asks for it and decompresses transparently).
type scraper struct {
	url    string
	client *http.Client
}

func newScraper(url string) *scraper {
	return &scraper{url: url, client: &http.Client{Timeout: 30 * time.Second}}
}

// scrape returns the body and how long the whole exchange took, body
// included: that is what Prometheus records as scrape duration.
func (s *scraper) scrape(ctx context.Context) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("scraping %s: %w", s.url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("scraping %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the scrape of %s: %w", s.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("scraping %s: %s: %.200s", s.url, resp.Status, body)
	}
	return body, took, nil
}

// countSeries counts the sample lines of a text exposition.
func countSeries(body []byte) int {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) > 0 && line[0] != '#' {
			n++
		}
	}
	return n
}

// gaugeValue finds an unlabelled sample's value in a text exposition.
func gaugeValue(body []byte, name string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// waitReady polls url until it answers 200, the agent exits, or timeout.
func waitReady(ctx context.Context, a *agentProc, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: 5 * time.Second}
	last := "no answer yet"
	for {
		if err := a.exitErr(); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", url, err)
		}
		if resp, err := hc.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (last: %s): %w", url, last, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitContainers polls the agent's dockscope_containers until it reaches
// want (exactly, when the agent follows only the benchmark's containers).
func waitContainers(ctx context.Context, a *agentProc, s *scraper, want int, exact bool, timeout time.Duration) error {
	return pollScrape(ctx, a, s, timeout, fmt.Sprintf("dockscope_containers to reach %d", want), func(body []byte) (bool, string, error) {
		v, ok := gaugeValue(body, "dockscope_containers")
		switch {
		case !ok:
			return false, "no dockscope_containers sample in the scrape", nil
		case int(v) == want || (!exact && int(v) >= want):
			return true, "", nil
		case exact && int(v) > want:
			return false, "", fmt.Errorf("dockscope_containers is %v, more than the %d containers it should follow", v, want)
		}
		return false, fmt.Sprintf("dockscope_containers %v", v), nil
	})
}

// pollScrape scrapes once a second until check says done or fails, the
// agent exits, or timeout; what and check's last word name what it waited
// for in the error.
func pollScrape(ctx context.Context, a *agentProc, s *scraper, timeout time.Duration, what string, check func(body []byte) (done bool, last string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no scrape yet"
	for {
		if err := a.exitErr(); err != nil {
			return err
		}
		body, _, err := s.scrape(ctx)
		if err == nil {
			done, l, cerr := check(body)
			if cerr != nil {
				return cerr
			}
			if done {
				return nil
			}
			last = l
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (last: %s): %w", what, last, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// cadvisorContainers counts the Docker containers a cAdvisor scrape has
// samples for: the distinct name labels of container_last_seen (cAdvisor
// gives a name only to containers of a runtime, not to raw cgroups).
func cadvisorContainers(body []byte) int {
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		labels, ok := strings.CutPrefix(line, "container_last_seen{")
		if !ok {
			continue
		}
		if _, rest, ok := strings.Cut(labels, `,name="`); ok {
			if name, _, ok := strings.Cut(rest, `"`); ok && name != "" {
				names[name] = true
			}
		} else if rest, ok := strings.CutPrefix(labels, `name="`); ok {
			if name, _, ok := strings.Cut(rest, `"`); ok && name != "" {
				names[name] = true
			}
		}
	}
	return len(names)
}

// waitCadvisorContainers polls cAdvisor until its scrape covers at least
// want containers (it follows every container on the host, not only the
// benchmark's), the process exits, or timeout.
func waitCadvisorContainers(ctx context.Context, a *agentProc, s *scraper, want int, timeout time.Duration) error {
	return pollScrape(ctx, a, s, timeout, fmt.Sprintf("cAdvisor to report %d containers", want), func(body []byte) (bool, string, error) {
		n := cadvisorContainers(body)
		return n >= want, fmt.Sprintf("%d containers", n), nil
	})
}
