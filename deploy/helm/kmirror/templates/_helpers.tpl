{{/* Chart name, truncated to a DNS label. */}}
{{- define "kmirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name unless the release name holds it. */}}
{{- define "kmirror.fullname" -}}
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

{{- define "kmirror.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kmirror.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kmirror.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kmirror.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The example configuration used while `config` is empty. */}}
{{- define "kmirror.exampleConfig" -}}
clusters:
  - alias: source
    bootstrapServers: source-kafka-bootstrap:9092
  - alias: target
    bootstrapServers: target-kafka-bootstrap:9092
    config:
      offset.storage.replication.factor: 3
mirrors:
  - sourceCluster: source
    targetCluster: target
    topicsPattern: ".*"
    groupsPattern: ".*"
{{- end }}

{{/* The configuration rendered as kmirror.yaml, as YAML text. */}}
{{- define "kmirror.config" -}}
{{- if .Values.config }}
{{- toYaml .Values.config }}
{{- else }}
{{- include "kmirror.exampleConfig" . }}
{{- end }}
{{- end }}

{{- define "kmirror.configMapName" -}}
{{- default (include "kmirror.fullname" .) .Values.existingConfigMap.name }}
{{- end }}

{{- define "kmirror.configKey" -}}
{{- if .Values.existingConfigMap.name }}{{ .Values.existingConfigMap.key }}{{ else }}kmirror.yaml{{ end }}
{{- end }}

{{- define "kmirror.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kmirror.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Every `secretName` in a configuration value, collected into .acc (a dict used as a set):
include "kmirror.collectSecretNames" (dict "v" $config "acc" $acc)
*/}}
{{- define "kmirror.collectSecretNames" -}}
{{- $acc := .acc }}
{{- if kindIs "map" .v }}
{{- range $k, $x := .v }}
{{- if and (eq $k "secretName") (kindIs "string" $x) }}
{{- $_ := set $acc $x true }}
{{- end }}
{{- include "kmirror.collectSecretNames" (dict "v" $x "acc" $acc) }}
{{- end }}
{{- else if kindIs "slice" .v }}
{{- range .v }}
{{- include "kmirror.collectSecretNames" (dict "v" . "acc" $acc) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secrets to mount, sorted, one per line: those `config` names plus `secrets`. */}}
{{- define "kmirror.secretNames" -}}
{{- $acc := dict }}
{{- if not .Values.existingConfigMap.name }}
{{- include "kmirror.collectSecretNames" (dict "v" (include "kmirror.config" . | fromYaml) "acc" $acc) }}
{{- end }}
{{- range .Values.secrets }}
{{- $_ := set $acc . true }}
{{- end }}
{{- keys $acc | sortAlpha | join "\n" }}
{{- end }}

{{/* A volume name for a Secret: DNS label, unique per Secret name. */}}
{{- define "kmirror.secretVolumeName" -}}
{{- printf "secret-%s" (. | replace "." "-" | trunc 40 | trimSuffix "-") }}-{{ sha256sum . | trunc 8 }}
{{- end }}
