package collector

import (
	"testing"

	"github.com/moby/moby/api/types/swarm"

	"github.com/dockscope/dockscope/pipeline"
)

func TestServiceReplicasByMode(t *testing.T) {
	three := uint64(3)
	for _, tc := range []struct {
		svc  swarm.Service
		want pipeline.ServiceReplicas
	}{
		{swarm.Service{ID: "a", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "shop_api", Labels: map[string]string{"com.docker.stack.namespace": "shop"}},
			Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &three}}},
			ServiceStatus: &swarm.ServiceStatus{DesiredTasks: 3, RunningTasks: 1}},
			pipeline.ServiceReplicas{ID: "a", Name: "shop_api", Stack: "shop", Mode: "replicated", Desired: 3, Running: 1}},
		{swarm.Service{ID: "b", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "agent"}, Mode: swarm.ServiceMode{Global: &swarm.GlobalService{}}},
			ServiceStatus: &swarm.ServiceStatus{DesiredTasks: 5, RunningTasks: 5}},
			pipeline.ServiceReplicas{ID: "b", Name: "agent", Mode: "global", Desired: 5, Running: 5}},
		{swarm.Service{ID: "c", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "migrate"}, Mode: swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{}}}},
			pipeline.ServiceReplicas{ID: "c", Name: "migrate", Mode: "replicated-job"}},
		// No status from the Engine: the spec's replicas are still desired.
		{swarm.Service{ID: "d", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "old"}, Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &three}}}},
			pipeline.ServiceReplicas{ID: "d", Name: "old", Mode: "replicated", Desired: 3}},
	} {
		if got := serviceReplicas(tc.svc); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.svc.ID, got, tc.want)
		}
	}
}
