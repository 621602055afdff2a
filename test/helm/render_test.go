// Package helm tests the Helm chart in deploy/helm/dockscope by rendering it
// with `helm template` and decoding every document strictly into its
// Kubernetes API type: a field the API does not know, a kind the test does
// not know, or a document that is not valid YAML fails the test.
//
// It needs a helm v3 binary named by the HELM environment variable
// (scripts/helm-check.sh builds one and runs this test); without HELM it is
// skipped. With DOCKSCOPE_AGENT naming an agent binary, the rendered
// configuration files are also checked by the agent itself (--config.check).
package helm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	release   = "dockscope"
	namespace = "monitoring"

	chartDir          = "../../deploy/helm/dockscope"
	allFeaturesValues = "testdata/all-features.yaml"

	// Fixed by the chart: where the pod sees the socket, state and config.
	socketMount = "/var/run/docker.sock"
	stateMount  = "/var/lib/dockscope"
	configDir   = "/etc/dockscope"
	configFile  = "/etc/dockscope/dockscope.yml"
	configKey   = "dockscope.yml"
)

// serviceMonitor holds the fields of a monitoring.coreos.com/v1
// ServiceMonitor that the chart sets; decoding is strict, so a field the
// chart starts to set must be added here too.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []serviceMonitorEndpoint `json:"endpoints"`
	} `json:"spec"`
}

type serviceMonitorEndpoint struct {
	Port              string         `json:"port"`
	Path              string         `json:"path"`
	Scheme            string         `json:"scheme"`
	Interval          string         `json:"interval,omitempty"`
	ScrapeTimeout     string         `json:"scrapeTimeout,omitempty"`
	HonorLabels       bool           `json:"honorLabels"`
	TLSConfig         map[string]any `json:"tlsConfig,omitempty"`
	Relabelings       []relabeling   `json:"relabelings,omitempty"`
	MetricRelabelings []relabeling   `json:"metricRelabelings,omitempty"`
}

// relabeling is the Prometheus Operator's RelabelConfig.
type relabeling struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    *string  `json:"separator,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Modulus      uint64   `json:"modulus,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// manifests is one rendering of the chart, by kind.
type manifests struct {
	serviceAccounts []corev1.ServiceAccount
	configMaps      []corev1.ConfigMap
	services        []corev1.Service
	daemonSets      []appsv1.DaemonSet
	serviceMonitors []serviceMonitor
	// meta of every object, for the checks all of them share.
	objects []metav1.Object
	kinds   []string
}

func helmBinary(t *testing.T) string {
	t.Helper()
	h := os.Getenv("HELM")
	if h == "" {
		t.Skip("HELM is not set: run `bash scripts/helm-check.sh` from the repository root, or set HELM to a helm v3 binary")
	}
	return h
}

// helmTemplate runs `helm template` on the chart with args and returns its
// standard output, or the error with helm's standard error.
func helmTemplate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("helm template %s: %v\n%s", describe(args), err, stderr.String())
	}
	return stdout.String(), nil
}

// render renders the chart and decodes every document strictly.
func render(t *testing.T, args ...string) *manifests {
	t.Helper()
	out, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeAll(out)
	if err != nil {
		t.Fatalf("helm template %s: %v", describe(args), err)
	}
	return m
}

func describe(args []string) string {
	if len(args) == 0 {
		return "(default values)"
	}
	return strings.Join(args, " ")
}

// splitDocuments splits a YAML stream at its "---" lines, dropping documents
// that hold nothing but comments and blank lines.
func splitDocuments(stream string) []string {
	var docs []string
	var cur []string
	flush := func() {
		doc := strings.Join(cur, "\n")
		cur = nil
		for _, line := range strings.Split(doc, "\n") {
			l := strings.TrimSpace(line)
			if l != "" && !strings.HasPrefix(l, "#") {
				docs = append(docs, doc)
				return
			}
		}
	}
	for _, line := range strings.Split(stream, "\n") {
		if strings.TrimRight(line, " \t") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}

// strictDecode converts one YAML document to JSON (rejecting duplicate keys)
// and decodes it into v the way the API server's strict field validation
// does (sigs.k8s.io/json): a field v does not have, a key whose case differs
// from the field's ("mountpath"), or a duplicate field is an error.
// encoding/json's DisallowUnknownFields would accept the wrong case.
func strictDecode(doc string, v any) error {
	js, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		return fmt.Errorf("invalid YAML: %w", err)
	}
	strictErrs, err := kjson.UnmarshalStrict(js, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func decodeAll(stream string) (*manifests, error) {
	m := &manifests{}
	seen := map[string]bool{}
	for i, doc := range splitDocuments(stream) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: invalid YAML: %v\n%s", i, err, doc)
		}
		gvk := tm.APIVersion + "/" + tm.Kind
		var (
			obj metav1.Object
			err error
		)
		switch gvk {
		case "v1/ServiceAccount":
			var o corev1.ServiceAccount
			err = strictDecode(doc, &o)
			m.serviceAccounts = append(m.serviceAccounts, o)
			obj = &o
		case "v1/ConfigMap":
			var o corev1.ConfigMap
			err = strictDecode(doc, &o)
			m.configMaps = append(m.configMaps, o)
			obj = &o
		case "v1/Service":
			var o corev1.Service
			err = strictDecode(doc, &o)
			m.services = append(m.services, o)
			obj = &o
		case "apps/v1/DaemonSet":
			var o appsv1.DaemonSet
			err = strictDecode(doc, &o)
			m.daemonSets = append(m.daemonSets, o)
			obj = &o
		case "monitoring.coreos.com/v1/ServiceMonitor":
			var o serviceMonitor
			err = strictDecode(doc, &o)
			m.serviceMonitors = append(m.serviceMonitors, o)
			obj = &o
		default:
			return nil, fmt.Errorf("document %d: unknown kind %q (apiVersion %q): add it to the test\n%s", i, tm.Kind, tm.APIVersion, doc)
		}
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %v\n%s", i, tm.Kind, err, doc)
		}
		key := gvk + "/" + obj.GetName()
		if seen[key] {
			return nil, fmt.Errorf("document %d: %s %q rendered twice", i, tm.Kind, obj.GetName())
		}
		seen[key] = true
		m.objects = append(m.objects, obj)
		m.kinds = append(m.kinds, tm.Kind)
	}
	return m, nil
}

func one[T any](t *testing.T, kind string, list []T) *T {
	t.Helper()
	if len(list) != 1 {
		t.Fatalf("want exactly one %s, got %d", kind, len(list))
	}
	return &list[0]
}

func (m *manifests) daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	return one(t, "DaemonSet", m.daemonSets)
}

func (m *manifests) agentContainer(t *testing.T) *corev1.Container {
	t.Helper()
	ds := m.daemonSet(t)
	for i := range ds.Spec.Template.Spec.Containers {
		if c := &ds.Spec.Template.Spec.Containers[i]; c.Name == "dockscope" {
			return c
		}
	}
	t.Fatalf("DaemonSet has no container named dockscope")
	return nil
}

// config returns the ConfigMap's configuration file, parsed.
func (m *manifests) config(t *testing.T) map[string]any {
	t.Helper()
	cm := one(t, "ConfigMap", m.configMaps)
	text, ok := cm.Data[configKey]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s; keys: %v", cm.Name, configKey, mapKeys(cm.Data))
	}
	js, err := yaml.YAMLToJSONStrict([]byte(text))
	if err != nil {
		t.Fatalf("ConfigMap %s: %s is not valid YAML: %v\n%s", cm.Name, configKey, err, text)
	}
	var cfg map[string]any
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatalf("ConfigMap %s: %s is not a YAML mapping: %v\n%s", cm.Name, configKey, err, text)
	}
	return cfg
}

func mapKeys[V any](m map[string]V) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// chartMeta reads Chart.yaml.
func chartMeta(t *testing.T) (version, appVersion string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	return c.Version, c.AppVersion
}

// want holds what differs between the renderings the tests check.
type want struct {
	image          string
	dockerGroupID  int64
	socketHostPath string
	stateHostPath  string
	requests       corev1.ResourceList
	limits         corev1.ResourceList
	serviceMonitor bool
	serviceAccount string
}

func defaultWant(t *testing.T) want {
	_, appVersion := chartMeta(t)
	return want{
		image:          "dockscope/dockscope:" + appVersion,
		dockerGroupID:  999,
		socketHostPath: "/var/run/docker.sock",
		stateHostPath:  "/var/lib/dockscope",
		requests:       corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("48Mi")},
		limits:         corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		serviceAccount: "dockscope",
	}
}

func TestDefaults(t *testing.T) {
	m := render(t)
	checkManifests(t, m, defaultWant(t))

	cfg := m.config(t)
	wantCfg := map[string]any{
		"agent": map[string]any{"hostname": "${env:NODE_NAME}", "state_dir": stateMount},
		"stats": map[string]any{"source": "auto", "cgroup_root": "/host/sys/fs/cgroup", "proc_root": "/host/proc"},
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("default configuration = %v, want %v", cfg, wantCfg)
	}
}

func TestAllFeatures(t *testing.T) {
	m := render(t, "-f", allFeaturesValues)
	w := defaultWant(t)
	w.image = "registry.example.com/dockscope:0.1.0-test"
	w.dockerGroupID = 998
	w.socketHostPath = "/run/docker.sock"
	w.stateHostPath = "/var/lib/dockscope-test"
	w.requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("96Mi")}
	w.limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
	w.serviceMonitor = true
	w.serviceAccount = "dockscope-agent"
	checkManifests(t, m, w)

	// The configuration is the values file's config, plus the keys the
	// chart sets.
	values := readValues(t, allFeaturesValues)
	wantCfg, _ := values["config"].(map[string]any)
	if wantCfg == nil {
		t.Fatalf("%s has no config map", allFeaturesValues)
	}
	agent, _ := wantCfg["agent"].(map[string]any)
	agent["hostname"] = "${env:NODE_NAME}"
	agent["state_dir"] = stateMount
	// cgroupStats is on: the stats section gets the mounts' paths.
	stats, _ := wantCfg["stats"].(map[string]any)
	stats["source"], stats["cgroup_root"], stats["proc_root"] = "auto", "/host/sys/fs/cgroup", "/host/proc"
	if got := m.config(t); !reflect.DeepEqual(got, wantCfg) {
		gj, _ := json.MarshalIndent(got, "", "  ")
		wj, _ := json.MarshalIndent(wantCfg, "", "  ")
		t.Errorf("configuration:\n%s\nwant:\n%s", gj, wj)
	}

	// A token from a Secret, referenced by the configuration as
	// ${env:OTLP_TOKEN}; the rest of the environment from a Secret.
	c := m.agentContainer(t)
	token := findEnv(c, "OTLP_TOKEN")
	if token == nil || token.ValueFrom == nil || token.ValueFrom.SecretKeyRef == nil ||
		token.ValueFrom.SecretKeyRef.Name != "dockscope-otlp" || token.ValueFrom.SecretKeyRef.Key != "token" {
		t.Errorf("OTLP_TOKEN env = %+v, want a secretKeyRef to dockscope-otlp/token", token)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "dockscope-extra-env" {
		t.Errorf("envFrom = %+v, want the secret dockscope-extra-env", c.EnvFrom)
	}
	if !slices.Contains(c.Args, "--log.level=debug") {
		t.Errorf("args %v lack the extra --log.level=debug", c.Args)
	}
	if mnt := findMount(c, "otlp-ca"); mnt == nil || mnt.MountPath != "/etc/dockscope-tls" {
		t.Errorf("extra volume mount otlp-ca = %+v", mnt)
	}
	ds := m.daemonSet(t)
	if v := findVolume(ds, "otlp-ca"); v == nil || v.Secret == nil || v.Secret.SecretName != "otel-collector-ca" {
		t.Errorf("extra volume otlp-ca = %+v", v)
	}
	pod := ds.Spec.Template.Spec
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName = %q", pod.PriorityClassName)
	}
	if pod.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("nodeSelector = %v", pod.NodeSelector)
	}
	if pod.Affinity == nil || pod.Affinity.NodeAffinity == nil {
		t.Errorf("affinity not rendered: %+v", pod.Affinity)
	}
	if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("imagePullSecrets = %v", pod.ImagePullSecrets)
	}
	if ds.Spec.Template.Annotations["prometheus.io/scrape"] != "true" || ds.Spec.Template.Labels["tier"] != "node-agent" {
		t.Errorf("pod annotations %v / labels %v lack the values' podAnnotations/podLabels", ds.Spec.Template.Annotations, ds.Spec.Template.Labels)
	}
	for _, o := range m.objects {
		if o.GetLabels()["team"] != "observability" {
			t.Errorf("%s lacks the commonLabels", o.GetName())
		}
	}
	svc := one(t, "Service", m.services)
	if svc.Annotations["prometheus.io/scrape"] != "true" || svc.Labels["scrape"] != "yes" {
		t.Errorf("Service annotations %v / labels %v lack the values'", svc.Annotations, svc.Labels)
	}

	sm := one(t, "ServiceMonitor", m.serviceMonitors)
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v lack release=kube-prometheus-stack", sm.Labels)
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Interval != "15s" || ep.ScrapeTimeout != "10s" || !ep.HonorLabels {
		t.Errorf("ServiceMonitor endpoint = %+v, want interval 15s, scrapeTimeout 10s, honorLabels", ep)
	}
	if len(ep.Relabelings) != 1 || ep.Relabelings[0].TargetLabel != "node" || len(ep.MetricRelabelings) != 1 || ep.MetricRelabelings[0].Action != "drop" {
		t.Errorf("ServiceMonitor relabelings = %+v / %+v", ep.Relabelings, ep.MetricRelabelings)
	}
}

// checkManifests checks everything every rendering must satisfy.
func checkManifests(t *testing.T, m *manifests, w want) {
	t.Helper()
	wantKinds := []string{"ConfigMap", "DaemonSet", "Service", "ServiceAccount"}
	if w.serviceMonitor {
		wantKinds = append(wantKinds, "ServiceMonitor")
	}
	slices.Sort(wantKinds)
	kinds := slices.Clone(m.kinds)
	slices.Sort(kinds)
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("rendered kinds %v, want %v", kinds, wantKinds)
	}

	chartVersion, appVersion := chartMeta(t)
	for i, o := range m.objects {
		if o.GetNamespace() != namespace {
			t.Errorf("%s %s: namespace %q, want %q", m.kinds[i], o.GetName(), o.GetNamespace(), namespace)
		}
		l := o.GetLabels()
		for k, v := range map[string]string{
			"app.kubernetes.io/name":       "dockscope",
			"app.kubernetes.io/instance":   release,
			"app.kubernetes.io/version":    appVersion,
			"app.kubernetes.io/managed-by": "Helm",
			"helm.sh/chart":                "dockscope-" + chartVersion,
		} {
			if l[k] != v {
				t.Errorf("%s %s: label %s=%q, want %q", m.kinds[i], o.GetName(), k, l[k], v)
			}
		}
	}

	sa := one(t, "ServiceAccount", m.serviceAccounts)
	if sa.Name != w.serviceAccount {
		t.Errorf("ServiceAccount name %q, want %q", sa.Name, w.serviceAccount)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount automountServiceAccountToken = %v, want false", sa.AutomountServiceAccountToken)
	}

	ds := m.daemonSet(t)
	checkDaemonSet(t, m, ds, w)
	checkService(t, m, ds)

	if w.serviceMonitor {
		sm := one(t, "ServiceMonitor", m.serviceMonitors)
		svc := one(t, "Service", m.services)
		if len(sm.Spec.Selector.MatchLabels) == 0 {
			t.Errorf("ServiceMonitor selects nothing")
		}
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor selector %s=%s does not match the Service's labels %v", k, v, svc.Labels)
			}
		}
		if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
			t.Errorf("ServiceMonitor namespaceSelector %v", sm.Spec.NamespaceSelector.MatchNames)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.Endpoints[0].Scheme != "http" {
			t.Errorf("ServiceMonitor endpoints = %+v, want port metrics, path /metrics, scheme http", sm.Spec.Endpoints)
		}
	} else if len(m.serviceMonitors) != 0 {
		t.Errorf("ServiceMonitor rendered although serviceMonitor.enabled is false")
	}
}

func checkDaemonSet(t *testing.T, m *manifests, ds *appsv1.DaemonSet, w want) {
	t.Helper()
	spec := ds.Spec
	if spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		t.Errorf("updateStrategy %q, want RollingUpdate", spec.UpdateStrategy.Type)
	}
	if spec.Selector == nil || len(spec.Selector.MatchLabels) == 0 {
		t.Fatalf("DaemonSet has no selector")
	}
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Labels[k] != v {
			t.Errorf("pod template labels %v do not match the selector %s=%s", spec.Template.Labels, k, v)
		}
	}
	if spec.Template.Annotations["checksum/config"] == "" {
		t.Errorf("pod template has no checksum/config annotation")
	}

	pod := spec.Template.Spec
	if pod.ServiceAccountName != w.serviceAccount {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, w.serviceAccount)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("pod automountServiceAccountToken = %v, want false", pod.AutomountServiceAccountToken)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != 30 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 30", pod.TerminationGracePeriodSeconds)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Errorf("tolerations %+v lack {operator: Exists} (run on every node)", pod.Tolerations)
	}

	// Pod security.
	psc := pod.SecurityContext
	if psc == nil {
		t.Fatalf("pod has no securityContext")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod runAsNonRoot = %v, want true", psc.RunAsNonRoot)
	}
	if psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("pod runAsUser = %v, want 65532", psc.RunAsUser)
	}
	if psc.RunAsGroup == nil || *psc.RunAsGroup != 65532 {
		t.Errorf("pod runAsGroup = %v, want 65532", psc.RunAsGroup)
	}
	if !slices.Contains(psc.SupplementalGroups, w.dockerGroupID) {
		t.Errorf("pod supplementalGroups %v lack the docker group %d", psc.SupplementalGroups, w.dockerGroupID)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile = %+v, want RuntimeDefault", psc.SeccompProfile)
	}

	// The agent container.
	c := m.agentContainer(t)
	if c.Image != w.image {
		t.Errorf("image %q, want %q", c.Image, w.image)
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Fatalf("agent container has no securityContext")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("readOnlyRootFilesystem = %v, want true", sc.ReadOnlyRootFilesystem)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("allowPrivilegeEscalation = %v, want false", sc.AllowPrivilegeEscalation)
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Errorf("privileged = %v, want false", sc.Privileged)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("capabilities = %+v, want drop [ALL] and add none", sc.Capabilities)
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 || sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
		t.Errorf("agent container overrides the pod's non-root user: %+v", sc)
	}

	for _, want := range []string{"--config.file=" + configFile, "--web.listen-address=:9817"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != 9817 || c.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("ports = %+v, want metrics 9817/TCP", c.Ports)
	}
	checkProbe(t, "liveness", c.LivenessProbe, "/healthz")
	checkProbe(t, "readiness", c.ReadinessProbe, "/readyz")

	if e := findEnv(c, "NODE_NAME"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME env = %+v, want the downward API's spec.nodeName", e)
	}

	for name, q := range w.requests {
		if got := c.Resources.Requests[name]; got.Cmp(q) != 0 {
			t.Errorf("requests.%s = %s, want %s", name, got.String(), q.String())
		}
	}
	for name, q := range w.limits {
		if got := c.Resources.Limits[name]; got.Cmp(q) != 0 {
			t.Errorf("limits.%s = %s, want %s", name, got.String(), q.String())
		}
	}

	// Volumes and mounts.
	sock := findVolume(ds, "docker-socket")
	if sock == nil || sock.HostPath == nil || sock.HostPath.Path != w.socketHostPath ||
		sock.HostPath.Type == nil || *sock.HostPath.Type != corev1.HostPathSocket {
		t.Errorf("docker-socket volume = %+v, want hostPath %s of type Socket", sock, w.socketHostPath)
	}
	if mnt := findMount(c, "docker-socket"); mnt == nil || mnt.MountPath != socketMount {
		t.Errorf("docker-socket mount = %+v, want at %s", mnt, socketMount)
	}
	state := findVolume(ds, "state")
	if state == nil || state.HostPath == nil || state.HostPath.Path != w.stateHostPath ||
		state.HostPath.Type == nil || *state.HostPath.Type != corev1.HostPathDirectoryOrCreate {
		t.Errorf("state volume = %+v, want hostPath %s of type DirectoryOrCreate", state, w.stateHostPath)
	}
	if mnt := findMount(c, "state"); mnt == nil || mnt.MountPath != stateMount || mnt.ReadOnly {
		t.Errorf("state mount = %+v, want writable at %s", mnt, stateMount)
	}
	cm := one(t, "ConfigMap", m.configMaps)
	cfgVol := findVolume(ds, "config")
	if cfgVol == nil || cfgVol.ConfigMap == nil || cfgVol.ConfigMap.Name != cm.Name {
		t.Errorf("config volume = %+v, want the ConfigMap %s", cfgVol, cm.Name)
	}
	if mnt := findMount(c, "config"); mnt == nil || mnt.MountPath != configDir || !mnt.ReadOnly {
		t.Errorf("config mount = %+v, want read-only at %s", mnt, configDir)
	}
	if _, ok := cm.Data[filepath.Base(configFile)]; !ok {
		t.Errorf("ConfigMap lacks %s, the file --config.file names", filepath.Base(configFile))
	}
	// The configuration names the state directory the pod mounts.
	agent, _ := m.config(t)["agent"].(map[string]any)
	if agent["state_dir"] != stateMount {
		t.Errorf("config agent.state_dir = %v, want %s", agent["state_dir"], stateMount)
	}

	// The init container that gives the state directory to the agent.
	if len(pod.InitContainers) != 1 {
		t.Fatalf("want one init container (stateDir.initOwnership), got %d", len(pod.InitContainers))
	}
	checkInitContainer(t, &pod.InitContainers[0])
}

func checkInitContainer(t *testing.T, ic *corev1.Container) {
	t.Helper()
	if ic.Image != "busybox:1.37" {
		t.Errorf("init container image %q, want busybox:1.37", ic.Image)
	}
	sc := ic.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("init container has no capabilities set")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"CHOWN"}) {
		t.Errorf("init container capabilities = %+v, want drop [ALL], add [CHOWN]", sc.Capabilities)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged == nil || *sc.Privileged {
		t.Errorf("init container may escalate privileges: %+v", sc)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("init container readOnlyRootFilesystem = %v, want true", sc.ReadOnlyRootFilesystem)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsNonRoot == nil || *sc.RunAsNonRoot {
		t.Errorf("init container must run as root to chown: %+v", sc)
	}
	if mnt := findMount(ic, "state"); mnt == nil || mnt.MountPath != stateMount {
		t.Errorf("init container state mount = %+v, want at %s", mnt, stateMount)
	}
	if e := findEnv(ic, "OWNER"); e == nil || e.Value != "65532:65532" {
		t.Errorf("init container OWNER = %+v, want 65532:65532", e)
	}
	if !strings.Contains(strings.Join(ic.Command, " "), `chown "$OWNER" "$STATE_DIR"`) {
		t.Errorf("init container command does not chown: %q", ic.Command)
	}
}

func checkProbe(t *testing.T, name string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe = %+v, want httpGet %s", name, p, path)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "metrics" || p.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("%s probe httpGet = %+v, want HTTP %s on port metrics", name, p.HTTPGet, path)
	}
}

func checkService(t *testing.T, m *manifests, ds *appsv1.DaemonSet) {
	t.Helper()
	svc := one(t, "Service", m.services)
	if svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service type %q, want ClusterIP", svc.Spec.Type)
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service ports = %+v, want one", svc.Spec.Ports)
	}
	p := svc.Spec.Ports[0]
	if p.Name != "metrics" || p.Port != 9817 || p.TargetPort.String() != "metrics" {
		t.Errorf("Service port = %+v, want metrics 9817 -> metrics", p)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, ds.Spec.Selector.MatchLabels) {
		t.Errorf("Service selector %v, want the DaemonSet's %v", svc.Spec.Selector, ds.Spec.Selector.MatchLabels)
	}
}

func findEnv(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func findMount(c *corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func findVolume(ds *appsv1.DaemonSet, name string) *corev1.Volume {
	vs := ds.Spec.Template.Spec.Volumes
	for i := range vs {
		if vs[i].Name == name {
			return &vs[i]
		}
	}
	return nil
}

func readValues(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func TestDockerGroupIDSet(t *testing.T) {
	def := render(t).daemonSet(t).Spec.Template.Spec.SecurityContext.SupplementalGroups
	got := render(t, "--set", "docker.groupID=4242").daemonSet(t).Spec.Template.Spec.SecurityContext.SupplementalGroups
	if !slices.Equal(def, []int64{999}) {
		t.Errorf("default supplementalGroups %v, want [999]", def)
	}
	if !slices.Equal(got, []int64{4242}) {
		t.Errorf("with --set docker.groupID=4242, supplementalGroups %v, want [4242]", got)
	}
}

func TestServiceMonitorOnlyWhenEnabled(t *testing.T) {
	if n := len(render(t).serviceMonitors); n != 0 {
		t.Errorf("defaults rendered %d ServiceMonitors, want 0", n)
	}
	m := render(t, "--set", "serviceMonitor.enabled=true")
	sm := one(t, "ServiceMonitor", m.serviceMonitors)
	if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Kind != "ServiceMonitor" {
		t.Errorf("ServiceMonitor apiVersion/kind = %s/%s", sm.APIVersion, sm.Kind)
	}
	if sm.Spec.Endpoints[0].Interval != "30s" {
		t.Errorf("default interval %q, want 30s", sm.Spec.Endpoints[0].Interval)
	}
	m = render(t, "--set", "serviceMonitor.enabled=true", "--set", "config.web.telemetry_path=/container-metrics")
	if p := one(t, "ServiceMonitor", m.serviceMonitors).Spec.Endpoints[0].Path; p != "/container-metrics" {
		t.Errorf("ServiceMonitor path %q, want config.web.telemetry_path /container-metrics", p)
	}
}

func TestConfigChangeRollsPods(t *testing.T) {
	sum := func(args ...string) string {
		return render(t, args...).daemonSet(t).Spec.Template.Annotations["checksum/config"]
	}
	a, b := sum(), sum()
	if a != b {
		t.Errorf("checksum/config differs between two identical renderings: %s, %s", a, b)
	}
	if c := sum("--set", "config.stats.interval=30s"); c == a {
		t.Errorf("checksum/config did not change with the configuration")
	}
}

func TestInitOwnershipDisabled(t *testing.T) {
	m := render(t, "--set", "stateDir.initOwnership.enabled=false")
	if n := len(m.daemonSet(t).Spec.Template.Spec.InitContainers); n != 0 {
		t.Errorf("stateDir.initOwnership.enabled=false still renders %d init containers", n)
	}
	m = render(t, "--set", "securityContext.runAsUser=1000", "--set", "securityContext.runAsGroup=1001")
	ic := m.daemonSet(t).Spec.Template.Spec.InitContainers[0]
	if e := findEnv(&ic, "OWNER"); e == nil || e.Value != "1000:1001" {
		t.Errorf("init container OWNER = %+v, want the agent's 1000:1001", e)
	}
}

func TestHostname(t *testing.T) {
	agent := func(args ...string) map[string]any {
		a, _ := render(t, args...).config(t)["agent"].(map[string]any)
		return a
	}
	if a := agent("--set", "hostnameFromNodeName=false"); a["hostname"] != nil {
		t.Errorf("hostnameFromNodeName=false: agent.hostname = %v, want unset", a["hostname"])
	}
	if a := agent("--set", "config.agent.hostname=edge-1"); a["hostname"] != "edge-1" {
		t.Errorf("config.agent.hostname=edge-1: agent.hostname = %v", a["hostname"])
	}
}

// The chart refuses values that would contradict its pod spec, with a
// message that says what to set instead, and values its schema does not know.
func TestRejectsContradictions(t *testing.T) {
	for _, tc := range []struct{ set, msg string }{
		{"config.agent.state_dir=/data", "stateDir.hostPath"},
		{"config.web.listen_address=:9100", "containerPort"},
		{"securityContext.runAsUser=0", "non-root"},
		// values.schema.json: a misspelt key or a wrong type is an error.
		{"serviceMonitor.enable=true", "'enable' not allowed"},
		{"docker.groupID=docker", "want integer"},
	} {
		_, err := helmTemplate(t, "--set", tc.set)
		if err == nil {
			t.Errorf("--set %s rendered; want an error", tc.set)
		} else if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("--set %s: error does not mention %s: %v", tc.set, tc.msg, err)
		}
	}
	// The state directory the chart sets itself is accepted.
	if _, err := helmTemplate(t, "--set", "config.agent.state_dir="+stateMount); err != nil {
		t.Errorf("config.agent.state_dir=%s: %v", stateMount, err)
	}
}

func TestSplitDocuments(t *testing.T) {
	docs := splitDocuments("---\n# Source: a\nkind: A\n---\n# only a comment\n\n---\nkind: B\n")
	if len(docs) != 2 || !strings.Contains(docs[0], "kind: A") || !strings.Contains(docs[1], "kind: B") {
		t.Errorf("splitDocuments = %q", docs)
	}
	if _, err := decodeAll("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"); err == nil || !strings.Contains(err.Error(), "unknown kind") {
		t.Errorf("an unknown kind decoded without error: %v", err)
	}
	if _, err := decodeAll("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\nbogus: 1\n"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("an unknown field decoded without error: %v", err)
	}
	if _, err := decodeAll("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          securityContext: {readOnlyRootFs: true}\n"); err == nil {
		t.Errorf("a misspelt nested field decoded without error")
	}
	// encoding/json matches keys case-insensitively; the API server does not.
	if _, err := decodeAll("apiVersion: v1\nkind: ConfigMap\nmetadata: {Name: x}\n"); err == nil {
		t.Errorf("a field in the wrong case decoded without error")
	}
}

// With DOCKSCOPE_AGENT set to an agent binary, every configuration the
// chart renders must pass the agent's own validation.
func TestAgentAcceptsRenderedConfig(t *testing.T) {
	helmBinary(t)
	agent := os.Getenv("DOCKSCOPE_AGENT")
	if agent == "" {
		t.Skip("DOCKSCOPE_AGENT is not set: scripts/helm-check.sh builds the agent and sets it")
	}
	for name, args := range map[string][]string{
		"defaults":     nil,
		"all-features": {"-f", allFeaturesValues},
	} {
		t.Run(name, func(t *testing.T) {
			cm := one(t, "ConfigMap", render(t, args...).configMaps)
			dir := t.TempDir()
			f := filepath.Join(dir, configKey)
			if err := os.WriteFile(f, []byte(mountFilesUnder(t, dir, cm.Data[configKey])), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(agent, "--config.file="+f, "--config.check")
			cmd.Env = append(os.Environ(), "NODE_NAME=node-1", "OTLP_TOKEN=secret")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s --config.check: %v\n%s\n%s", agent, err, out, cm.Data[configKey])
			}
		})
	}
}

// fileKey is a configuration key naming a file the agent reads (TLS
// material, the web configuration).
var fileKey = regexp.MustCompile(`(?m)^(\s*\w+_file:\s*)(/\S+)\s*$`)

// mountFilesUnder stands in for the pod's mounts: --config.check reads
// every file the configuration names and builds the TLS setup from it, as a
// start would, so each absolute path is rewritten to a file of that name
// under root holding a throwaway self-signed certificate (or its key).
func mountFilesUnder(t *testing.T, root, config string) string {
	t.Helper()
	certPEM, keyPEM := selfSigned(t)
	return fileKey.ReplaceAllStringFunc(config, func(line string) string {
		m := fileKey.FindStringSubmatch(line)
		path := filepath.Join(root, "mounts", m[2])
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		content := certPEM
		if strings.Contains(m[1], "key_file") {
			content = keyPEM
		}
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return m[1] + path
	})
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dockscope-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// NOTES.txt is rendered only by install and upgrade, never by `helm
// template`: render it through a copy of the chart in which a ConfigMap
// template includes it, so that an error in it fails here rather than at
// the end of a user's install.
func TestNotes(t *testing.T) {
	helmBinary(t)
	dir := filepath.Join(t.TempDir(), "dockscope")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"_notes_test.tpl": `{{- define "notes-test" -}}` + "\n" + string(notes) + "\n{{- end }}",
		"notes-test.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include \"notes-test\" . | quote }}\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, "templates", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, tc := range map[string]struct {
		args []string
		want []string
	}{
		"defaults":     {nil, []string{"kubectl -n monitoring get daemonset dockscope", "docker.groupID (999)", "serviceMonitor.enabled=true", "OTLP export"}},
		"all-features": {[]string{"-f", allFeaturesValues}, []string{"docker.groupID (998)", "/run/docker.sock", "ServiceMonitor monitoring/dockscope", "interval 15s"}},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(helmBinary(t), append([]string{"template", release, dir, "--namespace", namespace, "--show-only", "templates/notes-test.yaml"}, tc.args...)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("rendering NOTES.txt: %v\n%s", err, out)
			}
			var cm corev1.ConfigMap
			if err := strictDecode(string(out), &cm); err != nil {
				t.Fatal(err)
			}
			text := cm.Data["notes"]
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("NOTES lack %q:\n%s", w, text)
				}
			}
			if strings.Contains(text, "<no value>") {
				t.Errorf("NOTES contain <no value>:\n%s", text)
			}
		})
	}
}

func TestCgroupStats(t *testing.T) {
	// On by default: the node's cgroups and /proc read-only, and the agent
	// told to read stats from them.
	m := render(t)
	ds := m.daemonSet(t)
	c := &ds.Spec.Template.Spec.Containers[0]
	for name, host := range map[string]string{"host-cgroup": "/sys/fs/cgroup", "host-proc": "/proc"} {
		v := findVolume(ds, name)
		if v == nil || v.HostPath == nil || v.HostPath.Path != host || v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectory {
			t.Errorf("%s volume = %+v, want hostPath %s of type Directory", name, v, host)
		}
		if mnt := findMount(c, name); mnt == nil || !mnt.ReadOnly || mnt.MountPath != "/host"+host {
			t.Errorf("%s mount = %+v, want read-only at /host%s", name, mnt, host)
		}
	}
	stats, _ := m.config(t)["stats"].(map[string]any)
	if stats["source"] != "auto" || stats["cgroup_root"] != "/host/sys/fs/cgroup" || stats["proc_root"] != "/host/proc" {
		t.Errorf("config stats = %v", stats)
	}

	// Off: no host mounts, and stats from the API (the pod's own cgroup
	// filesystem would fool the agent's default, auto).
	m = render(t, "--set", "cgroupStats.enabled=false")
	ds = m.daemonSet(t)
	if findVolume(ds, "host-proc") != nil || findVolume(ds, "host-cgroup") != nil {
		t.Error("cgroupStats.enabled=false still mounts the node's /proc or cgroups")
	}
	if stats, _ := m.config(t)["stats"].(map[string]any); len(stats) != 1 || stats["source"] != "api" {
		t.Errorf("cgroupStats.enabled=false: config stats = %v, want source api alone", stats)
	}
	// The user's own stats settings are kept, the mounts' paths added.
	m = render(t, "--set", "config.stats.interval=30s", "--set", "config.stats.source=cgroup")
	if stats, _ := m.config(t)["stats"].(map[string]any); stats["interval"] != "30s" || stats["source"] != "cgroup" || stats["cgroup_root"] != "/host/sys/fs/cgroup" {
		t.Errorf("the user's stats section: %v", stats)
	}
	m = render(t, "--set", "cgroupStats.enabled=false", "--set", "config.stats.source=auto")
	if stats, _ := m.config(t)["stats"].(map[string]any); stats["source"] != "auto" {
		t.Errorf("the user's stats.source was changed: %v", stats)
	}
}
