package prometheus

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestContainerInfoOnlyLabelsWithValues: container_info names only the
// labels a container has a value for, and is otherwise the same series as
// before: its labels are the non-empty ones of the container's other
// series (so `on (id)` joins and label matchers see what they saw) plus
// its own identity labels.
func TestContainerInfoOnlyLabelsWithValues(t *testing.T) {
	var buf bytes.Buffer
	if err := NewContainerCollector(testStore(t)).WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatal(err)
	}
	labelsByID := func(family string) map[string]map[string]string {
		out := map[string]map[string]string{}
		for _, m := range mfs[family].GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			out[l["id"]] = l
		}
		return out
	}
	infos := labelsByID("container_info")
	want := map[string][]string{
		// A plain container: one allow-listed label, no orchestrator, no image id.
		"/docker/bbb": {"container_label_team", "host", "id", "image", "image_tag", "name"},
		"/docker/aaa": {"compose_project", "compose_service", "container_label_com_acme_tier", "container_label_team",
			"host", "id", "image", "image_id", "image_tag", "name"},
		"/docker/ccc": {"container_label_com_docker_stack_namespace", "container_label_com_docker_swarm_node_id",
			"container_label_com_docker_swarm_service_name", "container_label_com_docker_swarm_task_name",
			"host", "id", "image", "image_tag", "name", "swarm_node_id", "swarm_service", "swarm_stack", "swarm_task"},
		"/kubepods/ddd": {"container", "host", "id", "image", "image_tag", "k8s_container", "k8s_namespace", "k8s_pod", "name", "namespace", "pod"},
	}
	if len(infos) != len(want) {
		t.Fatalf("container_info for %v, want one per container of %v", slices.Sorted(maps.Keys(infos)), slices.Sorted(maps.Keys(want)))
	}
	restarts := labelsByID("container_restarts_total") // a family with no labels of its own
	for id, names := range want {
		info := infos[id]
		if got := slices.Sorted(maps.Keys(info)); !slices.Equal(got, names) {
			t.Errorf("container_info{id=%q} labels %v, want %v", id, got, names)
		}
		for name, value := range info {
			if value == "" {
				t.Errorf("container_info{id=%q} has %s=\"\"", id, name)
			}
		}
		for name, value := range restarts[id] {
			if value != "" && info[name] != value {
				t.Errorf("container_info{id=%q}: %s=%q, the container's other series have %q", id, name, info[name], value)
			}
		}
	}
}
