{{/*
The chart's name, for the app.kubernetes.io/name label.
*/}}
{{- define "coredog.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: the release name, or "<release>-coredog" when the release
name does not already contain the chart's name. Suffixes such as "-webhook" are appended to it,
so it is cut short enough for them.
*/}}
{{- define "coredog.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "coredog.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Names of the objects other objects refer to. */}}
{{- define "coredog.webhookName" -}}{{ include "coredog.fullname" . }}-webhook{{- end }}
{{- define "coredog.watcherName" -}}{{ include "coredog.fullname" . }}-watcher{{- end }}
{{- define "coredog.tlsSecretName" -}}{{ include "coredog.fullname" . }}-webhook-tls{{- end }}
{{- define "coredog.credentialsSecretName" -}}{{ include "coredog.fullname" . }}-storage-credentials{{- end }}

{{/* The Secret that holds the watcher's config.yaml: the user's, or the one this chart renders. */}}
{{- define "coredog.configSecretName" -}}
{{- if .Values.config.existingSecret }}
{{- .Values.config.existingSecret }}
{{- else }}
{{- include "coredog.fullname" . }}-config
{{- end }}
{{- end }}

{{/* The labels every object carries. */}}
{{- define "coredog.labels" -}}
helm.sh/chart: {{ include "coredog.chart" . }}
app.kubernetes.io/name: {{ include "coredog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "coredog.versionLabel" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coredog
{{- end }}

{{/* Labels of the webhook's objects; call with the root context. */}}
{{- define "coredog.webhook.labels" -}}
{{ include "coredog.labels" . }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "coredog.webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coredog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{/* Labels of the watcher's objects; call with the root context. */}}
{{- define "coredog.watcher.labels" -}}
{{ include "coredog.labels" . }}
app.kubernetes.io/component: watcher
{{- end }}

{{- define "coredog.watcher.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coredog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: watcher
{{- end }}

{{/*
The image. Values files of the Go CoreDog chart name its image (coderflyfyf/coredog), which
takes none of this chart's arguments: that image and its tag are replaced by this chart's own.
*/}}
{{- define "coredog.goImage" -}}
{{- regexMatch "(^|/)coderflyfyf/coredog$" .Values.image.repository }}
{{- end }}

{{/*
The image's tag as a label value (at most 63 of [A-Za-z0-9._-], alphanumeric at both ends);
the chart's appVersion when the tag cannot be one, e.g. "1.2.3@sha256:...".
*/}}
{{- define "coredog.versionLabel" -}}
{{- $tag := include "coredog.imageTag" . }}
{{- if regexMatch "^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$" $tag }}
{{- $tag }}
{{- else }}
{{- .Chart.AppVersion }}
{{- end }}
{{- end }}

{{- define "coredog.imageTag" -}}
{{- if eq (include "coredog.goImage" .) "true" }}
{{- .Chart.AppVersion }}
{{- else }}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{- define "coredog.image" -}}
{{- $repository := .Values.image.repository }}
{{- if eq (include "coredog.goImage" .) "true" }}
{{- $repository = "ghcr.io/coredog-io/coredog" }}
{{- end }}
{{- printf "%s:%s" $repository (include "coredog.imageTag" .) }}
{{- end }}

{{/*
The watcher configuration text, checked: it must be YAML mapping keys to values, and storage
credentials belong in a Secret, which is where this text goes.
*/}}
{{- define "coredog.configText" -}}
{{- $text := .Values.config.coredog | default "" }}
{{- $parsed := fromYaml $text }}
{{- if hasKey $parsed "Error" }}
{{- fail (printf "config.coredog is not valid YAML: %s" (get $parsed "Error")) }}
{{- end }}
{{- if hasKey $parsed "CustomHandler" }}
{{- fail "config.coredog: CustomHandler is not supported (CoreDog runs no scripts); remove it, and add a NoticeChannel with chan: webhook to receive every dump's record" }}
{{- end }}
{{- $text }}
{{- end }}

{{/*
The node directory that holds every namespace's dumps, without a trailing '/'. Values files of
the Go CoreDog chart set it as corefileVolume.hostPath.path; hostDir wins when both are set
and differ from the default.
*/}}
{{- define "coredog.hostDir" -}}
{{- $given := .Values.hostDir }}
{{- $legacy := "" }}
{{- with .Values.corefileVolume }}{{ with .hostPath }}{{ $legacy = .path | default "" }}{{ end }}{{ end }}
{{- if and $legacy (eq (trimSuffix "/" $given) "/data/coredog-system/dumps") }}
{{- $given = $legacy }}
{{- end }}
{{- $dir := $given | trimSuffix "/" }}
{{- if or (not (hasPrefix "/" $given)) (eq $dir "") (regexMatch "(^|/)\\.{1,2}(/|$)|//" $dir) }}
{{- fail (printf "hostDir %q must be an absolute path other than /, without //, . or .." $given) }}
{{- end }}
{{- $dir }}
{{- end }}

{{- define "coredog.logFormatArgs" -}}
- --log-format
- {{ .Values.logFormat | quote }}
{{- end }}
