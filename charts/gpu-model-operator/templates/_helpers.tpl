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

{{/* What the operator's pod is selected by (the Deployment, the metrics Service, the ServiceMonitor). */}}
{{- define "gpu-model-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpu-model-operator.name" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's own objects: ServiceAccount, Deployment, metrics Service. */}}
{{- define "gpu-model-operator.labels" -}}
{{ include "gpu-model-operator.selectorLabels" . }}
app.kubernetes.io/part-of: gpu-model-operator
{{ include "gpu-model-operator.helmLabels" . }}
{{- end }}

{{/*
Exactly what the operator uses, the same rules in the ClusterRole and in each Role (kustomize's
overlays/cluster-wide/clusterrole.yaml and overlays/namespaced/role.yaml; test_rbac.py explains each).
*/}}
{{- define "gpu-model-operator.rules" -}}
# kopf lists and watches the resources it serves, and patches them: its finalizer and progress annotations.
- apiGroups: ["gpumodel.io"]
  resources: ["gpumodeldeployments"]
  verbs: ["list", "watch", "patch"]
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
