package prometheus

import "github.com/dockscope/dockscope/pipeline"

// info writes the container's container_info series with only the labels
// that have a value: a plain container has no swarm_*, k8s_* or compose_*
// label, and no container_label_* column it lacks. Prometheus treats a
// label with an empty value as absent, so the series (its identity in
// storage, its matchers, `on (id)` joins) is the same as when the empty
// labels were written out; leaving them out only spares a reader of
// /metrics a line of empty labels. The other families keep their empty
// columns, as cAdvisor writes them.
func (e *emitter) info(m *pipeline.ContainerMeta) {
	fb := &e.families[famInfo.idx]
	b := append(fb.lines, famInfo.name...)
	b = append(b, '{')
	first := true
	label := func(name, value string) {
		if value == "" {
			return
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendLabel(b, name, value)
	}
	// The order and names are those of every other series, then famInfo's
	// own labels.
	label("id", m.CgroupPath)
	label("name", m.Name)
	label("image", m.Image)
	for _, l := range identityLabels {
		label(l.name, l.value(m))
	}
	for j, k := range e.cols.keys {
		label(e.cols.names[j], m.Labels[k])
	}
	for i, v := range []string{m.ImageID, m.ImageTag, m.Hostname, m.ComposeProject, m.ComposeService,
		m.SwarmStack, m.SwarmService, m.SwarmTask, m.SwarmNodeID, m.K8sPod, m.K8sNamespace, m.K8sContainer} {
		label(famInfo.extra[i], v)
	}
	b = append(b, '}', ' ', '1', '\n')
	fb.lines = b
}
