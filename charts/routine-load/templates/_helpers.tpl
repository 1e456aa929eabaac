{{/* Chart name. */}}
{{- define "routine-load.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name, the prefix of every object name (and of the cluster-scoped RBAC names, so two releases
don't collide): the release name if it contains the chart name, else "<release>-<chart>".
Truncated so that "<fullname>-operator" and the worker pod names stay within 63 characters.
*/}}
{{- define "routine-load.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "routine-load.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "routine-load.labels" -}}
helm.sh/chart: {{ include "routine-load.chart" . }}
{{ include "routine-load.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: routine-load
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "routine-load.selectorLabels" -}}
app.kubernetes.io/name: {{ include "routine-load.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per component: (dict "ctx" $ "component" "operator"). */}}
{{- define "routine-load.componentLabels" -}}
{{ include "routine-load.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "routine-load.componentSelectorLabels" -}}
{{ include "routine-load.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "routine-load.operator.fullname" -}}
{{- printf "%s-operator" (include "routine-load.fullname" .) }}
{{- end }}

{{- define "routine-load.worker.fullname" -}}
{{- printf "%s-worker" (include "routine-load.fullname" .) }}
{{- end }}

{{/* The workers' headless Service: gives each worker pod a stable DNS name. */}}
{{- define "routine-load.worker.headless" -}}
{{- printf "%s-worker-headless" (include "routine-load.fullname" .) }}
{{- end }}

{{- define "routine-load.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "routine-load.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "routine-load.worker.serviceAccountName" -}}
{{- if .Values.worker.serviceAccount.create }}
{{- default (include "routine-load.worker.fullname" .) .Values.worker.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.worker.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "routine-load.leaderLeaseName" -}}
{{- default (include "routine-load.operator.fullname" .) .Values.operator.leaderLeaseName }}
{{- end }}

{{/* "" (all namespaces) or the one watched namespace. */}}
{{- define "routine-load.watchNamespace" -}}
{{- if gt (len .Values.watchNamespaces) 1 }}
{{- fail "watchNamespaces: the operator and workers watch one namespace or all namespaces; list at most one" }}
{{- end }}
{{- join "," .Values.watchNamespaces }}
{{- end }}

{{- define "routine-load.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The table volume (file:// tables), in both components. */}}
{{- define "routine-load.tableVolume" -}}
{{- if .Values.tableVolume.enabled }}
{{- if not .Values.tableVolume.volume }}
{{- fail "tableVolume.enabled: set tableVolume.volume (e.g. persistentVolumeClaim: {claimName: ...})" }}
{{- end }}
- name: tables
  {{- toYaml .Values.tableVolume.volume | nindent 2 }}
{{- end }}
{{- end }}

{{- define "routine-load.tableVolumeMount" -}}
{{- if .Values.tableVolume.enabled }}
- name: tables
  mountPath: {{ .Values.tableVolume.mountPath }}
{{- end }}
{{- end }}

{{- define "routine-load.metricsAnnotations" -}}
{{- if .ctx.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}
