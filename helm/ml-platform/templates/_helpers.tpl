{{- define "ml-platform.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Pods of the official dagster chart's release: its selector labels. */}}
{{- define "ml-platform.dagsterSelector" -}}
app.kubernetes.io/name: dagster
app.kubernetes.io/instance: {{ .Values.dagsterRelease }}
{{- end -}}
