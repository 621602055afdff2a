{{/*
The chart name, or nameOverride.
*/}}
{{- define "dockscope.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the objects: fullnameOverride, or the release name followed
by the chart name unless the release name already contains it.
*/}}
{{- define "dockscope.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "dockscope.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the pods. They never change across upgrades (a DaemonSet's
selector is immutable).
*/}}
{{- define "dockscope.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dockscope.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "dockscope.labels" -}}
helm.sh/chart: {{ include "dockscope.chart" . }}
{{ include "dockscope.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: dockscope
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount's name.
*/}}
{{- define "dockscope.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dockscope.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The agent's image reference.
*/}}
{{- define "dockscope.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/*
Where the pod sees things. Fixed: the values choose the node's side.
*/}}
{{- define "dockscope.configDir" -}}/etc/dockscope{{- end }}
{{- define "dockscope.configFile" -}}/etc/dockscope/dockscope.yml{{- end }}
{{- define "dockscope.stateDir" -}}/var/lib/dockscope{{- end }}
{{- define "dockscope.socketPath" -}}/var/run/docker.sock{{- end }}

{{/*
The agent's configuration: .Values.config with the keys the chart owns.
Fails on values that would contradict the pod spec.
*/}}
{{- define "dockscope.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- if not (kindIs "map" $cfg) }}
{{- fail "config must be a map (the agent's configuration file)" }}
{{- end }}
{{- $agent := dict }}
{{- if hasKey $cfg "agent" }}
{{- $agent = get $cfg "agent" | default dict }}
{{- if not (kindIs "map" $agent) }}
{{- fail "config.agent must be a map" }}
{{- end }}
{{- end }}
{{- $stateDir := include "dockscope.stateDir" . }}
{{- if and (hasKey $agent "state_dir") (ne (toString (get $agent "state_dir")) $stateDir) }}
{{- fail (printf "config.agent.state_dir is set by the chart to %s, the mount of the node's stateDir.hostPath: set stateDir.hostPath to choose the directory on the node" $stateDir) }}
{{- end }}
{{- $_ := set $agent "state_dir" $stateDir }}
{{- if and .Values.hostnameFromNodeName (not (get $agent "hostname")) }}
{{- $_ := set $agent "hostname" "${env:NODE_NAME}" }}
{{- end }}
{{- $_ := set $cfg "agent" $agent }}
{{- $stats := get $cfg "stats" | default dict }}
{{- if not (kindIs "map" $stats) }}
{{- fail "config.stats must be a map" }}
{{- end }}
{{- if .Values.cgroupStats.enabled }}
{{- if not (hasKey $stats "source") }}{{ $_ := set $stats "source" "auto" }}{{ end }}
{{- if not (hasKey $stats "cgroup_root") }}{{ $_ := set $stats "cgroup_root" "/host/sys/fs/cgroup" }}{{ end }}
{{- if not (hasKey $stats "proc_root") }}{{ $_ := set $stats "proc_root" "/host/proc" }}{{ end }}
{{- else if not (hasKey $stats "source") }}
{{- /* The pod's own /sys/fs/cgroup is not the node's: auto would find it and fail every read. */}}
{{- $_ := set $stats "source" "api" }}
{{- end }}
{{- $_ := set $cfg "stats" $stats }}
{{- if hasKey $cfg "web" }}
{{- $web := get $cfg "web" | default dict }}
{{- if not (kindIs "map" $web) }}
{{- fail "config.web must be a map" }}
{{- end }}
{{- if get $web "listen_address" }}
{{- fail "config.web.listen_address is set by the chart (--web.listen-address): set containerPort instead" }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The metrics path, from config.web.telemetry_path.
*/}}
{{- define "dockscope.telemetryPath" -}}
{{- $web := (.Values.config | default dict).web | default dict }}
{{- default "/metrics" $web.telemetry_path }}
{{- end }}
