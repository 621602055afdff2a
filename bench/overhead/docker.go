package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
)

// Every object the benchmark creates carries benchLabel; runLabel tells this
// run's containers from those of another run, so that cleanup never touches
// anything it did not create.
const (
	benchLabel = "dockscope.bench"
	runLabel   = "dockscope.bench.run"
	imageTag   = "dockscope-bench-workload:latest"
)

// engine is the benchmark's handle on the Docker Engine.
type engine struct {
	cli        *client.Client
	runID      string
	log        *slog.Logger
	builtImage bool // removeImage has something to remove
}

func newEngine(runID string, log *slog.Logger) (*engine, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("creating the Docker client: %w", err)
	}
	return &engine{cli: cli, runID: runID, log: log}, nil
}

// buildImage makes the workload image FROM scratch.
func (e *engine) buildImage(ctx context.Context, workloadBin string) error {
	if err := benchenv.BuildWorkloadImage(ctx, e.cli, imageTag, benchLabel, workloadBin); err != nil {
		return err
	}
	e.builtImage = true
	return nil
}

// removeImage removes the workload image. Containers of other runs may
// still use it; then it stays, which is harmless.
func (e *engine) removeImage(ctx context.Context) {
	if !e.builtImage {
		return
	}
	if _, err := e.cli.ImageRemove(ctx, imageTag, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
		e.log.Warn("removing the workload image", "image", imageTag, "err", err)
	}
}

// containerSpec is one container to start.
type containerSpec struct {
	name string
	cmd  []string
}

// benchSpecs lists n idle and m chatty containers. The chatty ones log 20
// 70-byte lines a second for as long as the benchmark could run.
func benchSpecs(runID string, n, m int) []containerSpec {
	specs := make([]containerSpec, 0, n+m)
	for i := range n {
		specs = append(specs, containerSpec{
			name: fmt.Sprintf("dockscope-bench-%s-idle-%03d", runID, i),
			cmd:  []string{"sleep"},
		})
	}
	for i := range m {
		specs = append(specs, containerSpec{
			name: fmt.Sprintf("dockscope-bench-%s-chatty-%03d", runID, i),
			cmd:  []string{"log", "-lines", "100000000", "-rate", "20", "-line-bytes", "70", "-then", "sleep"},
		})
	}
	return specs
}

// startContainers creates and starts every spec, at most parallel at a time
// (the daemon serialises much of container start; more only queues). A
// container that fails to be created or started is tried again twice: at
// several hundred containers a start occasionally times out in the daemon,
// and one failure must not cost the whole row.
func (e *engine) startContainers(ctx context.Context, specs []containerSpec, parallel int) error {
	// The log driver is pinned so the chatty containers are read the same
	// way whatever the daemon's default, and bounded so a forgotten run
	// cannot fill the disk.
	hostCfg := &container.HostConfig{
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "2"}},
	}
	labels := map[string]string{benchLabel: "1", runLabel: e.runID}
	var started atomic.Int64
	start := time.Now()
	return forEachLimited(ctx, len(specs), parallel, func(ctx context.Context, i int) error {
		s := specs[i]
		var id string
		var err error
		for attempt := 1; ; attempt++ {
			if id == "" {
				id, err = e.create(ctx, s, labels, hostCfg)
			}
			if id != "" {
				// Starting a running container is a no-op, so a start that
				// succeeded but whose answer was lost is harmless to repeat.
				if _, err = e.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err == nil {
					break
				}
				err = fmt.Errorf("starting container %s: %w", s.name, err)
			}
			if attempt == startAttempts || ctx.Err() != nil {
				return err
			}
			e.log.Warn("trying again", "container", s.name, "attempt", attempt, "err", err)
			if err := benchenv.Sleep(ctx, time.Duration(attempt)*2*time.Second); err != nil {
				return err
			}
		}
		if n := started.Add(1); n%100 == 0 {
			e.log.Info("containers started", "started", n, "of", len(specs), "took", sinceSeconds(start))
		}
		return nil
	})
}

const startAttempts = 3

// create creates one container. If its name is taken, an earlier attempt
// did create it (the daemon answered too late): that container is used.
func (e *engine) create(ctx context.Context, s containerSpec, labels map[string]string, hostCfg *container.HostConfig) (string, error) {
	created, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       s.name,
		Config:     &container.Config{Image: imageTag, Cmd: s.cmd, Labels: labels},
		HostConfig: hostCfg,
	})
	if err == nil {
		return created.ID, nil
	}
	if cerrdefs.IsConflict(err) {
		if got, ierr := e.cli.ContainerInspect(ctx, s.name, client.ContainerInspectOptions{}); ierr == nil && got.Container.Config != nil &&
			got.Container.Config.Labels[runLabel] == e.runID {
			return got.Container.ID, nil
		}
	}
	return "", fmt.Errorf("creating container %s: %w", s.name, err)
}

// listOwn lists this run's containers, running or not.
func (e *engine) listOwn(ctx context.Context) ([]container.Summary, error) {
	res, err := e.cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", runLabel+"="+e.runID),
	})
	if err != nil {
		return nil, fmt.Errorf("listing the benchmark's containers: %w", err)
	}
	return res.Items, nil
}

// waitRunning waits until want of this run's containers are running. A
// container that exited is an error at once: it will not come back.
func (e *engine) waitRunning(ctx context.Context, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		items, err := e.listOwn(ctx)
		if err != nil {
			return err
		}
		running := 0
		for _, c := range items {
			switch c.State {
			case container.StateRunning:
				running++
			case container.StateExited, container.StateDead:
				return fmt.Errorf("container %s is %s (%s)", strings.Join(c.Names, ","), c.State, c.Status)
			}
		}
		if running >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d running containers (%d running): %w", want, running, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// removeOwn force-removes this run's containers.
func (e *engine) removeOwn(ctx context.Context, parallel int) error {
	items, err := e.listOwn(ctx)
	if err != nil {
		return err
	}
	return forEachLimited(ctx, len(items), parallel, func(ctx context.Context, i int) error {
		_, err := e.cli.ContainerRemove(ctx, items[i].ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil {
			return fmt.Errorf("removing container %s: %w", strings.Join(items[i].Names, ","), err)
		}
		return nil
	})
}

// foreignRunning counts running containers that are not this run's: other
// work on the host that loads the daemon and skews the daemon figures.
func (e *engine) foreignRunning(ctx context.Context) (int, error) {
	res, err := e.cli.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return 0, fmt.Errorf("listing running containers: %w", err)
	}
	n := 0
	for _, c := range res.Items {
		if c.Labels[runLabel] != e.runID {
			n++
		}
	}
	return n, nil
}

// forEachLimited runs fn(0..n-1) with at most limit in flight. It does not
// stop at the first error (so a cleanup removes all it can) and returns all
// errors joined.
func forEachLimited(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, max(limit, 1))
	)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return errors.Join(append(errs, ctx.Err())...)
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
