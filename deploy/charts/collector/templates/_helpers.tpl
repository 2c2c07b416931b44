{{/*
The app.kubernetes.io/name label: the chart name, or nameOverride.
*/}}
{{- define "collector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The helm.sh/chart label: <name>-<version>.
*/}}
{{- define "collector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels that select the release's pods (Deployment selector, Service, ServiceMonitor).
*/}}
{{- define "collector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "collector.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/*
The labels of every object and of the pods.
*/}}
{{- define "collector.labels" -}}
helm.sh/chart: {{ include "collector.chart" . | quote }}
{{ include "collector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end }}

{{/*
The image: <repository>/<name>:<tag>, name defaulting to the chart name and tag to its appVersion.
*/}}
{{- define "collector.image" -}}
{{- printf "%s/%s:%s" (regexReplaceAll "/+$" .Values.image.repository "") (default .Chart.Name .Values.image.name) (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Where the config Secret is mounted, and the config file's path.
*/}}
{{- define "collector.configDir" -}}
/etc/collector
{{- end }}
{{- define "collector.configFile" -}}
{{- printf "%s/%s" (include "collector.configDir" .) .Values.configFileName }}
{{- end }}
