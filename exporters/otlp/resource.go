package otlp

import (
	"cmp"
	"slices"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/dockscope/dockscope/pipeline"
)

// containerResource builds the per-container Resource of the semantic
// conventions, shared by logs and metrics. Attributes are sorted by key,
// as the otel-go SDK's attribute sets are.
func containerResource(m *pipeline.ContainerMeta) *resourcepb.Resource {
	attrs := make([]*commonpb.KeyValue, 0, 8+len(m.Labels))
	str := func(k, v string) {
		attrs = append(attrs, &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}})
	}
	str(string(semconv.ContainerIDKey), m.ID)
	str(string(semconv.ContainerNameKey), m.Name)
	str(string(semconv.ContainerImageNameKey), m.ImageName)
	runtime := m.Runtime
	if runtime == "" {
		runtime = "docker"
	}
	str(string(semconv.ContainerRuntimeNameKey), runtime)
	str(string(semconv.HostNameKey), m.Hostname)
	if m.ImageTag != "" {
		tags := &commonpb.ArrayValue{Values: []*commonpb.AnyValue{{Value: &commonpb.AnyValue_StringValue{StringValue: m.ImageTag}}}}
		attrs = append(attrs, &commonpb.KeyValue{Key: string(semconv.ContainerImageTagsKey), Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: tags}}})
	}
	if m.ImageID != "" {
		str(string(semconv.ContainerImageIDKey), m.ImageID)
	}
	for _, o := range []struct{ key, value string }{
		{"docker.compose.project", m.ComposeProject},
		{"docker.compose.service", m.ComposeService},
		{"docker.swarm.stack.namespace", m.SwarmStack},
		{"docker.swarm.service.name", m.SwarmService},
		{"docker.swarm.task.name", m.SwarmTask},
		{"docker.swarm.node.id", m.SwarmNodeID},
		{string(semconv.K8SPodNameKey), m.K8sPod},
		{string(semconv.K8SNamespaceNameKey), m.K8sNamespace},
		{string(semconv.K8SContainerNameKey), m.K8sContainer},
	} {
		if o.value != "" {
			str(o.key, o.value)
		}
	}
	for k, v := range m.Labels {
		str(string(semconv.ContainerLabel(k, v).Key), v)
	}
	slices.SortStableFunc(attrs, func(a, b *commonpb.KeyValue) int { return cmp.Compare(a.Key, b.Key) })
	return &resourcepb.Resource{Attributes: attrs}
}
