{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "kubewhisper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object-name prefix: fullnameOverride, else "<release>-<chart>" (or "<release>" if it contains the chart name). */}}
{{- define "kubewhisper.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubewhisper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubewhisper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubewhisper.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kubewhisper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubewhisper
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kubewhisper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubewhisper.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "repo@digest" when a digest is set, else "repo:tag" (tag defaults to the chart's appVersion). */}}
{{- define "kubewhisper.image" -}}
{{- $img := index . 0 -}}{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "kubewhisper.operatorImage" -}}
{{- include "kubewhisper.image" (list .Values.operator.image .) -}}
{{- end -}}

{{- define "kubewhisper.inferenceImage" -}}
{{- include "kubewhisper.image" (list .Values.inference.image .) -}}
{{- end -}}

{{/* The CPU inference image: like the others, but an empty tag is "<appVersion>-cpu". */}}
{{- define "kubewhisper.cpuInferenceImage" -}}
{{- $img := .Values.inference.cpuImage -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default (printf "%s-cpu" .Chart.AppVersion) $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The webhook's TLS Secret: the user's, else the one the chart generates. */}}
{{- define "kubewhisper.webhookSecretName" -}}
{{- .Values.webhook.tlsSecretName | default (printf "%s-webhook-tls" (include "kubewhisper.fullname" .)) -}}
{{- end -}}

{{/* The Lease name the operator elects its leader with (one per release). */}}
{{- define "kubewhisper.leaseName" -}}
{{- printf "%s-operator" (include "kubewhisper.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* kopf's namespace arguments: --all-namespaces, or one --namespace per watched namespace. */}}
{{- define "kubewhisper.namespaceArgs" -}}
{{- if .Values.operator.watchNamespaces -}}
{{- range .Values.operator.watchNamespaces }}
- --namespace={{ . }}
{{- end -}}
{{- else }}
- --all-namespaces
{{- end -}}
{{- end -}}

{{/* The webhook Service's host name (the webhook certificate must be valid for it). */}}
{{- define "kubewhisper.webhookHost" -}}
{{- printf "%s-webhook.%s.svc" (include "kubewhisper.fullname" .) .Release.Namespace -}}
{{- end -}}
