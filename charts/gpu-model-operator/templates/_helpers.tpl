{{/*
The chart's names and labels. Objects carry the labels of the kustomize manifests in manifests/ (the same
objects, compared by tests/integration/test_helm_chart.py) plus Helm's conventional ones ("helmLabels"),
which that test ignores.
*/}}

{{- define "gpu-model-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's name, or release-chart where the release name does not already contain the chart's. */}}
{{- define "gpu-model-operator.fullname" -}}
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

{{/* The Lease the replicas elect their leader on: leaderElection.leaseName, else the objects' name. */}}
{{- define "gpu-model-operator.leaseName" -}}
{{- .Values.leaderElection.leaseName | default (include "gpu-model-operator.fullname" .) }}
{{- end }}

{{- define "gpu-model-operator.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/*
What the operator's pod is selected by (the Deployment, the metrics Service, the ServiceMonitor, the disruption
budget, the anti-affinity): the release too, so that two releases in one namespace never select each other's pods.
Chart 0.2.0 added the instance: a Deployment's selector is immutable, so an upgrade from 0.1.x deletes the
Deployment first (README, Install on a cluster).
*/}}
{{- define "gpu-model-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpu-model-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's image: by digest when image.digest is set (it wins over the tag), else by tag. */}}
{{- define "gpu-model-operator.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/* Whether /metrics listens beyond the pod's loopback (metrics.bindAddress), so Prometheus can scrape it. */}}
{{- define "gpu-model-operator.metricsExposed" -}}
{{- if not (has .Values.metrics.bindAddress (list "127.0.0.1" "::1" "localhost")) }}true{{ end }}
{{- end }}

{{/* The operator's own objects: ServiceAccount, Deployment, metrics Service (the instance label once). */}}
{{- define "gpu-model-operator.labels" -}}
{{- $own := include "gpu-model-operator.selectorLabels" . | fromYaml }}
{{- $helm := include "gpu-model-operator.helmLabels" . | fromYaml }}
{{- toYaml (merge $own (dict "app.kubernetes.io/part-of" "gpu-model-operator") $helm) }}
{{- end }}

{{/*
Exactly what the operator uses, the same rules in the ClusterRole and in each Role (kustomize's
overlays/cluster-wide/clusterrole.yaml and overlays/namespaced/role.yaml; test_rbac.py explains each).
*/}}
{{- define "gpu-model-operator.rules" -}}
# kopf lists and watches the resources it serves, and patches them: its finalizer and progress annotations; the
# operator gets one again before creating anything for it (a pass may run on a body older than its deletion).
- apiGroups: ["gpumodel.io"]
  resources: ["gpumodeldeployments"]
  verbs: ["get", "list", "watch", "patch"]
# The status is written through the status subresource.
- apiGroups: ["gpumodel.io"]
  resources: ["gpumodeldeployments/status"]
  verbs: ["patch"]
# The keys Secret's owner reference sets blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
- apiGroups: ["gpumodel.io"]
  resources: ["gpumodeldeployments/finalizers"]
  verbs: ["update"]
# kopf posts Events about each resource.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# The entry script and conda file, read by name.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# The Azure credentials, read by name and never listed; the <name>-scoring-keys Secret it publishes and removes.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}

{{/*
The ConfigMap holding the installation's price table: prices.configMap, else the chart's own of prices.table, else
none (the operator's shipped table).
*/}}
{{- define "gpu-model-operator.pricesConfigMap" -}}
{{- if .Values.prices.configMap }}{{ .Values.prices.configMap }}{{- else if .Values.prices.table }}{{ include "gpu-model-operator.fullname" . }}-prices{{- end }}
{{- end }}
