{{- define "drplan.labels" -}}
app: drplan-controller
app.kubernetes.io/name: drplan-controller
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
