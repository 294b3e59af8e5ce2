{{- define "ocelot.labels" -}}
app.kubernetes.io/part-of: ocelot
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "ocelot.operator.name" -}}{{ .Release.Name }}-operator{{- end -}}
{{- define "ocelot.agent.name" -}}{{ .Release.Name }}-agent{{- end -}}

{{- define "ocelot.operator.selector" -}}
app.kubernetes.io/name: ocelot-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "ocelot.agent.selector" -}}
app.kubernetes.io/name: ocelot-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ocelot.image" -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}

{{- define "ocelot.apiServerEnv" -}}
{{- with .Values.kubernetesServiceEndpoint.host }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ . | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ $.Values.kubernetesServiceEndpoint.port | default "443" | quote }}
{{- end }}
{{- end -}}
