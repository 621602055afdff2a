package collector

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/pipeline"
)

// pollServices reads the Swarm services' replica counts every interval
// until ctx ends (swarm.services). One GET /services?status=true gives
// every service's desired and running tasks; only a manager answers it.
func (c *Collector) pollServices(ctx context.Context, interval time.Duration) {
	lastErr := ""
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		services, err := c.listServices(ctx)
		if ctx.Err() != nil {
			return
		}
		// Logged once per change of state, not every interval.
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		switch {
		case err != nil && msg != lastErr:
			c.log.Warn("cannot read Swarm services; swarm_service_replicas_* are not exported (swarm.services needs a manager node)", "err", err)
		case err == nil && lastErr != "":
			c.log.Info("reading Swarm services again", "services", len(services))
		}
		lastErr = msg
		c.store.SetServices(services) // nil on error: no stale replica counts
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (c *Collector) listServices(ctx context.Context) ([]pipeline.ServiceReplicas, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Docker.Timeout)
	defer cancel()
	res, err := c.docker.ServiceList(ctx, client.ServiceListOptions{Status: true})
	if err != nil {
		return nil, fmt.Errorf("listing swarm services: %w", err)
	}
	out := make([]pipeline.ServiceReplicas, 0, len(res.Items))
	for _, s := range res.Items {
		out = append(out, serviceReplicas(s))
	}
	slices.SortFunc(out, func(a, b pipeline.ServiceReplicas) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// serviceReplicas converts one service of the list.
func serviceReplicas(s swarm.Service) pipeline.ServiceReplicas {
	r := pipeline.ServiceReplicas{
		ID:    s.ID,
		Name:  s.Spec.Name,
		Stack: s.Spec.Labels[labelSwarmStack],
	}
	switch m := s.Spec.Mode; {
	case m.Global != nil:
		r.Mode = "global"
	case m.ReplicatedJob != nil:
		r.Mode = "replicated-job"
	case m.GlobalJob != nil:
		r.Mode = "global-job"
	default:
		r.Mode = "replicated"
	}
	if st := s.ServiceStatus; st != nil {
		r.Desired, r.Running = st.DesiredTasks, st.RunningTasks
	} else if m := s.Spec.Mode.Replicated; m != nil && m.Replicas != nil {
		// An Engine that does not report status: the spec still says
		// what is desired; running stays unknown (0).
		r.Desired = *m.Replicas
	}
	return r
}
