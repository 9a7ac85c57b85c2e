{{/* Names and labels. */}}
{{- define "prescale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "prescale.fullname" -}}
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

{{- define "prescale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prescale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "prescale.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "prescale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "prescale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prescale.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "prescale.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Checks what the schema cannot say. Included by the Deployment, so every render runs it.
*/}}
{{- define "prescale.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount is %d, but more than one replica needs leaderElection.enabled=true (only the leader may scale); use replicaCount: 1" (int .Values.replicaCount)) }}
{{- end }}
{{- range $opt := list "floorMode" "drainAware" "learnedLeadTime" }}
{{- $o := get $.Values $opt }}
{{- range ($o.namespaces | default list) }}
{{- if and $.Values.watchNamespaces (not (has . $.Values.watchNamespaces)) }}
{{- fail (printf "%s.namespaces lists %q, which watchNamespaces does not: the operator never reconciles there; add it to watchNamespaces or remove it" $opt .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (include "prescale.admissionPolicy" .) (not (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version)) }}
{{- fail (printf "floorMode and drainAware let the operator patch HorizontalPodAutoscalers, ScaledObjects and pods it does not own, and only the chart's ValidatingAdmissionPolicy limits those patches to the floor and the pod-deletion-cost annotation; Kubernetes %s has no admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (1.30 and later): upgrade the cluster, or set rbac.admissionPolicy.enabled=false to accept unrestricted patches (docs/security.md)" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- $names := list }}
{{- range (include "prescale.sourceList" . | fromYamlArray) }}
{{- if has .name $names }}
{{- fail (printf "the source %q is defined twice (prometheus.url defines \"default\"; sources[].name must be unique)" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- if and .bearerTokenSecret .bearerTokenFile }}
{{- fail (printf "source %q: bearerTokenSecret and bearerTokenFile: give one" .name) }}
{{- end }}
{{- if and (or .bearerTokenSecret .bearerTokenFile) .basicAuth }}
{{- fail (printf "source %q: a bearer token and basicAuth: give one" .name) }}
{{- end }}
{{- if and .tls .tls.caSecret .tls.caConfigMap }}
{{- fail (printf "source %q: tls.caSecret and tls.caConfigMap: give one" .name) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Every source as a YAML list: `prometheus` as the source named "default" (when its url is set),
then `sources`. Consumers read it back with fromYamlArray.
*/}}
{{- define "prescale.sourceList" -}}
{{- $all := list }}
{{- if .Values.prometheus.url }}
{{- $all = append $all (merge (dict "name" "default") (deepCopy .Values.prometheus)) }}
{{- end }}
{{- range .Values.sources }}
{{- $all = append $all . }}
{{- end }}
{{- toYaml $all }}
{{- end }}

{{/* Where a Secret's key is mounted, and a ConfigMap's. */}}
{{- define "prescale.secretPath" -}}
{{- printf "/etc/prescale/secrets/%s/%s" .name .key }}
{{- end }}
{{- define "prescale.configMapPath" -}}
{{- printf "/etc/prescale/configmaps/%s/%s" .name .key }}
{{- end }}

{{/*
The sources file prescale reads (--sources-file): URLs, names and file paths only. Secret
values are never in it; they are files in read-only Secret volumes.
*/}}
{{- define "prescale.sourcesFile" -}}
{{- $out := list }}
{{- range (include "prescale.sourceList" . | fromYamlArray) }}
{{- $s := dict "name" .name "url" .url }}
{{- if .timeout }}{{ $_ := set $s "timeout" .timeout }}{{ end }}
{{- if .bearerTokenSecret }}
{{- $_ := set $s "bearerTokenFile" (include "prescale.secretPath" .bearerTokenSecret) }}
{{- else if .bearerTokenFile }}
{{- $_ := set $s "bearerTokenFile" .bearerTokenFile }}
{{- end }}
{{- if .basicAuth }}
{{- $_ := set $s "basicAuth" (dict "username" .basicAuth.username "passwordFile" (include "prescale.secretPath" .basicAuth.passwordSecret)) }}
{{- end }}
{{- if .tls }}
{{- $tls := dict }}
{{- if .tls.caSecret }}{{ $_ := set $tls "caFile" (include "prescale.secretPath" .tls.caSecret) }}{{ end }}
{{- if .tls.caConfigMap }}{{ $_ := set $tls "caFile" (include "prescale.configMapPath" .tls.caConfigMap) }}{{ end }}
{{- with .tls.clientCertSecret }}
{{- $_ := set $tls "certFile" (include "prescale.secretPath" (dict "name" .name "key" (default "tls.crt" .certKey))) }}
{{- $_ := set $tls "keyFile" (include "prescale.secretPath" (dict "name" .name "key" (default "tls.key" .keyKey))) }}
{{- end }}
{{- if .tls.insecureSkipVerify }}{{ $_ := set $tls "insecureSkipVerify" true }}{{ end }}
{{- if $tls }}{{ $_ := set $s "tls" $tls }}{{ end }}
{{- end }}
{{- if .headers }}{{ $_ := set $s "headers" .headers }}{{ end }}
{{- if .allowedNamespaces }}{{ $_ := set $s "allowedNamespaces" .allowedNamespaces }}{{ end }}
{{- if .allowedNamespaceSelector }}{{ $_ := set $s "allowedNamespaceSelector" .allowedNamespaceSelector }}{{ end }}
{{- if .enforceNamespaceLabel }}{{ $_ := set $s "enforceNamespaceLabel" .enforceNamespaceLabel }}{{ end }}
{{- if .maxConcurrentQueries }}{{ $_ := set $s "maxConcurrentQueries" .maxConcurrentQueries }}{{ end }}
{{- $out = append $out $s }}
{{- end }}
{{- toYaml (dict "sources" $out) }}
{{- end }}

{{/*
The Secrets and ConfigMaps the sources reference, as {"secrets": {name: [keys]}, "configMaps":
{name: [keys]}} in YAML: each is mounted once, with only the keys referenced.
*/}}
{{- define "prescale.sourceMounts" -}}
{{- $secrets := dict }}
{{- $configMaps := dict }}
{{- range (include "prescale.sourceList" . | fromYamlArray) }}
{{- $refs := list }}
{{- with .bearerTokenSecret }}{{ $refs = append $refs . }}{{ end }}
{{- if .basicAuth }}{{ $refs = append $refs .basicAuth.passwordSecret }}{{ end }}
{{- if .tls }}
{{- with .tls.caSecret }}{{ $refs = append $refs . }}{{ end }}
{{- with .tls.clientCertSecret }}
{{- $refs = append $refs (dict "name" .name "key" (default "tls.crt" .certKey)) }}
{{- $refs = append $refs (dict "name" .name "key" (default "tls.key" .keyKey)) }}
{{- end }}
{{- with .tls.caConfigMap }}
{{- $_ := set $configMaps .name (append (get $configMaps .name | default list) .key | uniq) }}
{{- end }}
{{- end }}
{{- range $refs }}
{{- $_ := set $secrets .name (append (get $secrets .name | default list) .key | uniq) }}
{{- end }}
{{- end }}
{{- toYaml (dict "secrets" $secrets "configMaps" $configMaps) }}
{{- end }}

{{/*
Whether an option's rules (floorMode, drainAware, learnedLeadTime: .opt) go into a role:
.ns "" is the ClusterRole (options without a namespaces list); with .watched a watched namespace's
Role (options without a list, or listing it); else a Role of the option's own namespaces list.
Renders "true" or nothing.
*/}}
{{- define "prescale.optionHere" -}}
{{- if .opt.enabled }}
{{- $list := .opt.namespaces | default list }}
{{- if not .ns }}
{{- if not $list }}true{{ end }}
{{- else if has .ns $list }}true
{{- else if and .watched (not $list) }}true
{{- end }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs in one role: .root (the chart), .ns ("" for the ClusterRole), .core
(the rules every scaler needs; a Role of an option's namespaces list has only the option's) and
.watched (a watched namespace's Role). See prescale.optionHere.
*/}}
{{- define "prescale.rules" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $here := dict }}
{{- range $opt := list "floorMode" "drainAware" "learnedLeadTime" }}
{{- $_ := set $here $opt (include "prescale.optionHere" (dict "opt" (get $v $opt) "ns" $.ns "watched" $.watched)) }}
{{- end }}
{{- if .core }}
# read the PredictiveScalers; the controller lists and watches them
- apiGroups: [prescale.dev]
  resources: [predictivescalers]
  verbs: [get, list, watch]
# write their status (a merge patch of the status subresource)
- apiGroups: [prescale.dev]
  resources: [predictivescalers/status]
  verbs: [patch]
# the targets' /scale subresource only: prescale never writes a target itself (it reads one
# only with learnedLeadTime.enabled, below)
{{- range $v.rbac.scaleTargets }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources:
  {{- range .resources }}
    - {{ printf "%s/scale" . }}
  {{- end }}
  verbs: [get, patch]
{{- end }}
{{- end }}
{{- if $here.learnedLeadTime }}
# scaleUp.leadTime: Auto reads the targets themselves (get only), for status.readyReplicas
{{- range $v.rbac.scaleTargets }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources:
  {{- range .resources }}
    - {{ . }}
  {{- end }}
  verbs: [get]
{{- end }}
{{- end }}
{{- if $here.drainAware }}
# scaleDown.drainAware: the target's pods (by its selector), and their pod-deletion-cost
# annotation (a merge patch) before a scale-down; the admission policy refuses any other change
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, patch]
{{- end }}
{{- if .core }}
# events (events.k8s.io/v1, as kube-runtime's Recorder writes them; patch for repeated events)
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# HorizontalPodAutoscalers, read only: one on a scaler's target is reported as AmbiguousTarget
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch]
{{- end }}
{{- if $here.floorMode }}
# floor mode: a scaler on an HPA or a KEDA ScaledObject sets its floor (a server-side apply of
# spec.minReplicas / spec.minReplicaCount and the prescale.dev/original-min-replicas annotation;
# a restore is a merge patch of both), and its own finalizer; the admission policy refuses any
# other change
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [patch]
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, patch]
- apiGroups: [prescale.dev]
  resources: [predictivescalers]
  verbs: [patch]
{{- end }}
{{- if .core }}
{{- $selectors := false }}
{{- range (include "prescale.sourceList" $root | fromYamlArray) }}
{{- if .allowedNamespaceSelector }}{{ $selectors = true }}{{ end }}
{{- end }}
{{- if $selectors }}
# a scaler's namespace labels, for a source's allowedNamespaceSelector (only when one is set)
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
{{- end }}
{{- end }}
{{- end }}

{{/* The namespaces named by an enabled option's namespaces list, sorted, as a YAML list. */}}
{{- define "prescale.optionNamespaces" -}}
{{- $all := list }}
{{- range $opt := list "floorMode" "drainAware" "learnedLeadTime" }}
{{- $o := get $.Values $opt }}
{{- if $o.enabled }}
{{- $all = concat $all ($o.namespaces | default list) }}
{{- end }}
{{- end }}
{{- toYaml ($all | uniq | sortAlpha) }}
{{- end }}

{{/*
"true" when the chart renders its ValidatingAdmissionPolicy: rbac.admissionPolicy.enabled and an
option that writes objects prescale does not own (floorMode: HPAs, ScaledObjects; drainAware: pods).
*/}}
{{- define "prescale.admissionPolicy" -}}
{{- if and .Values.rbac.admissionPolicy.enabled (or .Values.floorMode.enabled .Values.drainAware.enabled) }}true{{ end }}
{{- end }}

{{/* The policy's (and its binding's) name: cluster-scoped, so one per release namespace. */}}
{{- define "prescale.admissionPolicyName" -}}
{{- printf "%s-%s" (include "prescale.fullname" .) .Release.Namespace }}
{{- end }}
