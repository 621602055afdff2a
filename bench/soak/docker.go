package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// soakLabel marks everything a soak creates; runLabel tells this run's
// containers from another run's, so that cleanup only ever removes what
// this run created. The benches' dockscope.bench label is not used: a soak
// may run beside a benchmark.
const (
	soakLabel = "dockscope.soak"
	runLabel  = "dockscope.soak.run"
)

// engine is the soak's handle on the Docker Engine.
type engine struct {
	cli   *client.Client
	runID string
	image string
}

func newEngine(runID string) (*engine, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("creating the Docker client: %w", err)
	}
	return &engine{cli: cli, runID: runID, image: "dockscope-soak-workload:" + runID}, nil
}

// start creates and starts a container of the workload image running args.
func (e *engine) start(ctx context.Context, name string, args []string) (string, error) {
	created, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:  e.image,
			Cmd:    args,
			Labels: map[string]string{soakLabel: "1", runLabel: e.runID},
		},
		HostConfig: &container.HostConfig{
			NetworkMode: "none",
			// Pinned so that every container is read the same way whatever
			// the daemon's default; large enough that a steady container's
			// log never rotates within a run (rotation would lose lines the
			// agent had no chance to read while the backend was down).
			LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "100m", "max-file": "2"}},
		},
	})
	if err != nil {
		return "", fmt.Errorf("creating container %s: %w", name, err)
	}
	if _, err := e.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return created.ID, fmt.Errorf("starting container %s: %w", name, err)
	}
	return created.ID, nil
}

// wait waits until the container is not running and returns its exit code.
func (e *engine) wait(ctx context.Context, id string) (int64, error) {
	res := e.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-res.Result:
		if r.Error != nil && r.Error.Message != "" {
			return r.StatusCode, fmt.Errorf("waiting for container %s: %s", id[:12], r.Error.Message)
		}
		return r.StatusCode, nil
	case err := <-res.Error:
		return 0, fmt.Errorf("waiting for container %s: %w", id[:12], err)
	}
}

// stop stops a container (SIGTERM; the workload exits at once).
func (e *engine) stop(ctx context.Context, id string) error {
	timeout := 10
	if _, err := e.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		return fmt.Errorf("stopping container %s: %w", id[:12], err)
	}
	return nil
}

func (e *engine) remove(ctx context.Context, id string) error {
	if _, err := e.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
		return fmt.Errorf("removing container %s: %w", id[:12], err)
	}
	return nil
}

// removeOwn force-removes every container of this run, running or not,
// a few at a time.
func (e *engine) removeOwn(ctx context.Context) (int, error) {
	res, err := e.cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", runLabel+"="+e.runID),
	})
	if err != nil {
		return 0, fmt.Errorf("listing the soak's containers: %w", err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 8)
	)
	for _, c := range res.Items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := e.remove(ctx, c.ID); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return len(res.Items), errors.Join(errs...)
}

func (e *engine) removeImage(ctx context.Context) error {
	if _, err := e.cli.ImageRemove(ctx, e.image, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
		return fmt.Errorf("removing the image %s: %w", e.image, err)
	}
	return nil
}

// loggedLines reads a container's whole log from Docker and returns how
// many lines it holds and the highest line number among them: what the
// container wrote, as far as Docker knows.
func (e *engine) loggedLines(ctx context.Context, id string) (lines, last int, err error) {
	rc, err := e.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return 0, 0, fmt.Errorf("reading the log of container %s: %w", id[:12], err)
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	// The demuxer's owner is this call: it ends when the log is read, and
	// closing pr below unblocks it if the scan stops early.
	done := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		pw.CloseWithError(err)
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines++
		if n, ok := lineNumber(sc.Text()); ok {
			last = max(last, n)
		}
	}
	scanErr := sc.Err()
	pr.Close()
	if err := errors.Join(<-done, scanErr); err != nil {
		return lines, last, fmt.Errorf("reading the log of container %s: %w", id[:12], err)
	}
	return lines, last, nil
}

// lineNumber parses the workload's "line <n>[ padding]".
func lineNumber(s string) (int, bool) {
	rest, ok := strings.CutPrefix(s, "line ")
	if !ok {
		return 0, false
	}
	if i := strings.IndexByte(rest, ' '); i >= 0 {
		rest = rest[:i]
	}
	n := 0
	for _, c := range []byte(rest) {
		if c < '0' || c > '9' || n > 1e9 {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, rest != ""
}
