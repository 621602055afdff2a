package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/pipeline"
)

// statsSampler takes one one-shot sample of every running container per
// interval, a bounded number at a time. One-shot costs the daemon ~4 ms of
// CPU per call; a long-lived stream per container costs far more
// (moby#21837), and the non-one-shot form blocks 1–2 s per call.
//
// The samples are taken by a fixed set of workers rather than a goroutine
// per sample: decoding a stats document grows a goroutine's stack, and a
// fresh goroutine per sample paid for that growth every time.
type statsSampler struct {
	c        *Collector
	work     chan statsJob
	triggers chan string
	wg       sync.WaitGroup
}

// statsJob is one container to sample; done (if set) is told when it is.
type statsJob struct {
	id   string
	done *sync.WaitGroup
}

func newStatsSampler(c *Collector) *statsSampler {
	return &statsSampler{
		c:        c,
		work:     make(chan statsJob),
		triggers: make(chan string, 64),
	}
}

// trigger asks for an immediate sample of a container that just started, so
// that it does not wait a whole interval. When many start at once the
// excess waits for the next round instead.
func (s *statsSampler) trigger(id string) {
	select {
	case s.triggers <- id:
	default:
	}
}

// run samples until ctx is cancelled, then waits for its workers to end.
func (s *statsSampler) run(ctx context.Context) {
	for range s.c.cfg.Stats.Concurrency {
		s.wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case job := <-s.work:
					s.sampleOne(ctx, job.id)
					if job.done != nil {
						job.done.Done()
					}
				}
			}
		})
	}
	defer s.wg.Wait()
	tick := time.NewTicker(s.c.cfg.Stats.Interval)
	defer tick.Stop()
	s.round(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.round(ctx)
		case id := <-s.triggers:
			select {
			case s.work <- statsJob{id: id}:
			default:
				// All workers busy with a round that may predate this
				// container: queue behind it rather than wait an interval.
				s.wg.Go(func() {
					select {
					case s.work <- statsJob{id: id}:
					case <-ctx.Done():
					}
				})
			}
		}
	}
}

// round samples every running container and waits for all of them.
func (s *statsSampler) round(ctx context.Context) {
	start := time.Now()
	var done sync.WaitGroup
	for _, snap := range s.c.store.Snapshot() {
		if !snap.State.Running() || snap.State.Status == "restarting" {
			continue
		}
		done.Add(1)
		select {
		case s.work <- statsJob{id: snap.Meta.ID, done: &done}:
		case <-ctx.Done():
			done.Done()
			return
		}
	}
	done.Wait()
	s.c.tel.SetStatsRound(time.Since(start))
}

func (s *statsSampler) sampleOne(ctx context.Context, id string) {
	counters := s.c.tel.Stage(pipeline.StageStats)
	counters.In.Add(1)
	st, err := s.c.fetchStats(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		counters.Dropped.Add(1)
		if cerrdefs.IsNotFound(err) {
			s.c.forget(id)
			return
		}
		s.c.log.Debug("stats sample failed", "container", shortID(id), "err", err)
		return
	}
	if s.c.store.SetStats(id, st) {
		counters.Out.Add(1)
	}
}

// fetchStats takes one sample through the Engine API.
func (c *Collector) fetchStats(ctx context.Context, id string) (pipeline.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Docker.Timeout)
	defer cancel()
	res, err := c.docker.ContainerStats(ctx, id, client.ContainerStatsOptions{})
	if err != nil {
		return pipeline.Stats{}, fmt.Errorf("reading stats of %s: %w", shortID(id), err)
	}
	defer res.Body.Close()
	var raw engineStats
	if err := json.NewDecoder(res.Body).Decode(&raw); err != nil {
		return pipeline.Stats{}, fmt.Errorf("decoding stats of %s: %w", shortID(id), err)
	}
	st, err := statsFromResponse(raw)
	if err != nil {
		return pipeline.Stats{}, fmt.Errorf("stats of %s: %w", shortID(id), err)
	}
	return st, nil
}
