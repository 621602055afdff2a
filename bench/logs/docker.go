package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dockscope/dockscope/internal/procfs"
)

const (
	imageTag    = "dockscope-bench-workload:logs"
	benchLabel  = "dockscope.bench"
	logsLabel   = "dockscope.bench.logs"
	runIDLabel  = "dockscope.bench.run"
	dockerSock  = "/var/run/docker.sock"
	apiVersion  = "v1.41"
	stopTimeout = 10 * time.Second
)

// docker runs the docker CLI and returns its stdout.
func docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// buildImage builds the workload image FROM scratch with the legacy builder
// (nothing to pull) from dir, which holds the static workload binary.
func buildImage(ctx context.Context, dir string) error {
	df := "FROM scratch\nCOPY workload /workload\nENTRYPOINT [\"/workload\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "docker", "build", "-q", "--label", benchLabel+"=1", "-t", imageTag, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker build: %w\n%s", err, out)
	}
	return nil
}

func removeImage(ctx context.Context) {
	// Fails harmlessly while containers (kept by another run) still use it.
	if _, err := docker(ctx, "image", "rm", imageTag); err != nil {
		progress("cleanup: %v", err)
	}
}

// containerState is the part of `docker inspect` the benchmark needs.
type containerState struct {
	ID    string
	State struct {
		Status     string
		ExitCode   int
		StartedAt  time.Time
		FinishedAt time.Time
	}
}

func inspect(ctx context.Context, ids []string) ([]containerState, error) {
	out, err := docker(ctx, append([]string{"inspect"}, ids...)...)
	if err != nil {
		return nil, err
	}
	var cs []containerState
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		return nil, fmt.Errorf("parsing docker inspect: %w", err)
	}
	return cs, nil
}

func listScenario(ctx context.Context, key string) ([]string, error) {
	out, err := docker(ctx, "ps", "-aq", "--no-trunc", "--filter", "label="+logsLabel+"="+key)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// removeScenario force-removes every container labelled with key — only
// this benchmark's containers carry that label.
func removeScenario(ctx context.Context, key string) error {
	ids, err := listScenario(ctx, key)
	if err != nil || len(ids) == 0 {
		return err
	}
	progress("removing %d containers (%s=%s)", len(ids), logsLabel, key)
	_, err = docker(ctx, append([]string{"rm", "-f", "-v"}, ids...)...)
	return err
}

// workload describes a scenario's containers.
type workload struct {
	key       string
	n         int
	lines     int
	lineBytes int
	mode      string
	runID     string
}

func (w workload) name(i int) string { return fmt.Sprintf("dockscope-bench-%s-%d", w.key, i) }

// logMaxSize keeps Docker from rotating the log while the containers write
// it: the daemon here defaults to max-size=10m, max-file=3, which would
// throw most of the lines away. Each json-file entry is the line plus about
// 80 bytes of JSON and timestamp; double that for slack.
func (w workload) logMaxSize() string {
	mib := (int64(w.lines)*int64(w.lineBytes+100)*2)>>20 + 16
	return strconv.FormatInt(mib, 10) + "m"
}

// prepare makes sure the scenario's containers exist and every line is in
// their logs: it reuses kept containers of an earlier run when they are
// complete, and otherwise creates them, starts them all at once and waits.
// It returns the container ids and the earliest start time.
func prepare(ctx context.Context, w workload) ([]string, time.Time, error) {
	ids, err := listScenario(ctx, w.key)
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(ids) == w.n {
		if ok, started := complete(ctx, w, ids); ok {
			progress("reusing %d kept containers (%s=%s)", len(ids), logsLabel, w.key)
			return ids, started, nil
		}
	}
	if len(ids) > 0 {
		if err := removeScenario(ctx, w.key); err != nil {
			return nil, time.Time{}, err
		}
	}

	then := "exit"
	if w.mode == "running" {
		then = "sleep"
	}
	ids = make([]string, w.n)
	for i := range w.n {
		out, err := docker(ctx, "create", "--name", w.name(i),
			"--label", benchLabel+"=1", "--label", logsLabel+"="+w.key, "--label", runIDLabel+"="+w.runID,
			"--network", "none",
			"--log-driver", "json-file", "--log-opt", "max-size="+w.logMaxSize(), "--log-opt", "max-file=1",
			imageTag, "log", "-lines", strconv.Itoa(w.lines), "-line-bytes", strconv.Itoa(w.lineBytes), "-then", then)
		if err != nil {
			return nil, time.Time{}, err
		}
		ids[i] = strings.TrimSpace(out)
	}
	progress("starting %d containers, %d lines of %d bytes each", w.n, w.lines, w.lineBytes)
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, w.n)
	for i, id := range ids {
		wg.Go(func() { _, errs[i] = docker(ctx, "start", id) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, time.Time{}, err
		}
	}
	if w.mode == "exited" {
		out, err := docker(ctx, append([]string{"wait"}, ids...)...)
		if err != nil {
			return nil, time.Time{}, err
		}
		for _, c := range strings.Fields(out) {
			if c != "0" {
				return nil, time.Time{}, fmt.Errorf("a workload container exited with code %s", c)
			}
		}
	} else {
		if err := waitLastLine(ctx, w, ids); err != nil {
			return nil, time.Time{}, err
		}
	}
	took := time.Since(t0)
	progress("all %d lines written in %.1f s (%.0f lines/s through the json-file driver)",
		w.n*w.lines, took.Seconds(), float64(w.n*w.lines)/took.Seconds())
	ok, started := complete(ctx, w, ids)
	if !ok {
		return nil, time.Time{}, fmt.Errorf("containers of %s not in the expected state after writing", w.key)
	}
	return ids, started, nil
}

// complete reports whether every container has written all its lines and
// is in the mode's end state, and the earliest start time.
func complete(ctx context.Context, w workload, ids []string) (bool, time.Time) {
	cs, err := inspect(ctx, ids)
	if err != nil || len(cs) != len(ids) {
		return false, time.Time{}
	}
	var first time.Time
	for _, c := range cs {
		switch w.mode {
		case "exited":
			if c.State.Status != "exited" || c.State.ExitCode != 0 {
				return false, time.Time{}
			}
		case "running":
			if c.State.Status != "running" || !hasLastLine(ctx, w, c.ID) {
				return false, time.Time{}
			}
		}
		if first.IsZero() || c.State.StartedAt.Before(first) {
			first = c.State.StartedAt
		}
	}
	return true, first
}

func hasLastLine(ctx context.Context, w workload, id string) bool {
	out, err := docker(ctx, "logs", "--tail", "1", id)
	return err == nil && strings.HasPrefix(out, fmt.Sprintf("line %d ", w.lines))
}

// waitLastLine waits until every (running) container's log ends with its
// last line.
func waitLastLine(ctx context.Context, w workload, ids []string) error {
	pending := append([]string(nil), ids...)
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		var still []string
		for _, id := range pending {
			if !hasLastLine(ctx, w, id) {
				still = append(still, id)
			}
		}
		pending = still
	}
	return nil
}

// dockerdPID finds the daemon, whose CPU the benchmark reports.
func dockerdPID() (int, error) {
	if b, err := os.ReadFile("/var/run/docker.pid"); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if _, err := procfs.CPUSeconds(pid); err == nil {
				return pid, nil
			}
		}
	}
	out, err := exec.Command("pidof", "dockerd").Output()
	if err != nil {
		return 0, fmt.Errorf("finding dockerd: %w", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 1 {
		return 0, fmt.Errorf("finding dockerd: pidof says %q", out)
	}
	return strconv.Atoi(f[0])
}
