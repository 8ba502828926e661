{{/* Labels on every object; the release name tells two installs of this chart apart. */}}
{{- define "weft-demo.labels" -}}
{{ include "weft-demo.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* What the Deployment and the Service select: stable across upgrades, so never the chart version. */}}
{{- define "weft-demo.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
