{{/* The chart name, overridable with nameOverride. */}}
{{- define "merge-job.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full resource name: fullnameOverride, else <release>-<name> unless the release name already contains it. CronJob names are limited to 52 characters (the controller appends an 11-character suffix to Job names). */}}
{{- define "merge-job.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The namespace of every resource. */}}
{{- define "merge-job.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "merge-job.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels on every resource. */}}
{{- define "merge-job.labels" -}}
helm.sh/chart: {{ include "merge-job.chart" . }}
{{ include "merge-job.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: forcemerge
{{- end }}

{{/* Minimal labels that identify this release's pods. */}}
{{- define "merge-job.selectorLabels" -}}
app.kubernetes.io/name: {{ include "merge-job.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the pod runs as. */}}
{{- define "merge-job.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "merge-job.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest when a digest is set, else repository:tag (tag defaults to appVersion). */}}
{{- define "merge-job.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* One env entry, only when the value is set: empty strings and lists leave the variable unset so the job's default applies. Lists are joined with commas. */}}
{{- define "merge-job.envVar" -}}
{{- $value := index . 1 }}
{{- if kindIs "slice" $value }}
{{- $value = join "," $value }}
{{- end }}
{{- if or (kindIs "bool" $value) (kindIs "float64" $value) (kindIs "int64" $value) (kindIs "int" $value) (ne (toString $value) "") }}
- name: {{ index . 0 }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}

{{/* The OpenSearch endpoint. Rendering stops without one: a CronJob without an endpoint would install cleanly and then fail (exit 2) every night. */}}
{{- define "merge-job.endpoint" -}}
{{- required "config.endpoint is required: the OpenSearch endpoint to merge (ES_DOMAIN_ENDPOINT), as https://host[:port], http://host[:port] or a bare host meaning https; e.g. --set config.endpoint=https://search-<domain>.<region>.es.amazonaws.com" .Values.config.endpoint }}
{{- end }}

{{/* The ConfigMap holding the rules file (.Values.rules). */}}
{{- define "merge-job.rulesConfigMap" -}}
{{- printf "%s-rules" (include "merge-job.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The container environment rendered from .Values.config (names from docs/contract.md). */}}
{{- define "merge-job.env" -}}
{{- $c := .Values.config }}
{{- include "merge-job.envVar" (list "ES_DOMAIN_ENDPOINT" (include "merge-job.endpoint" .)) }}
{{- include "merge-job.envVar" (list "MERGE_INDEX_PATTERNS" $c.indexPatterns) }}
{{- include "merge-job.envVar" (list "MERGE_EXCLUDE_PATTERNS" $c.excludePatterns) }}
{{- include "merge-job.envVar" (list "MERGE_MIN_AGE" $c.minAge) }}
{{- include "merge-job.envVar" (list "MERGE_NAME_DATE_FORMAT" $c.nameDateFormat) }}
{{- include "merge-job.envVar" (list "MERGE_MAX_NUM_SEGMENTS" $c.maxNumSegments) }}
{{- include "merge-job.envVar" (list "MERGE_ONLY_EXPUNGE_DELETES" $c.onlyExpungeDeletes) }}
{{- include "merge-job.envVar" (list "MERGE_MIN_DELETED_RATIO" $c.minDeletedRatio) }}
{{- include "merge-job.envVar" (list "MERGE_DEADLINE" $c.deadline) }}
{{- include "merge-job.envVar" (list "MERGE_INDEX_TIMEOUT" $c.indexTimeout) }}
{{- include "merge-job.envVar" (list "MERGE_REQUIRE_HEALTH" $c.requireHealth) }}
{{- include "merge-job.envVar" (list "MERGE_DRY_RUN" $c.dryRun) }}
{{- include "merge-job.envVar" (list "MERGE_CONCURRENCY" $c.concurrency) }}
{{- include "merge-job.envVar" (list "MERGE_MAX_HEAP_PERCENT" $c.maxHeapPercent) }}
{{- include "merge-job.envVar" (list "MERGE_MAX_CPU_PERCENT" $c.maxCpuPercent) }}
{{- include "merge-job.envVar" (list "MERGE_ORDER" $c.mergeOrder) }}
{{- include "merge-job.envVar" (list "MERGE_INCLUDE_ISM_MANAGED" $c.includeIsmManaged) }}
{{- include "merge-job.envVar" (list "MERGE_SMALL_INDEX_SIZE" $c.smallIndexSize) }}
{{- include "merge-job.envVar" (list "MERGE_DISK_HEADROOM" $c.diskHeadroom) }}
{{- include "merge-job.envVar" (list "MERGE_AUTH" $c.auth) }}
{{- include "merge-job.envVar" (list "AWS_REGION" $c.region) }}
{{- include "merge-job.envVar" (list "MERGE_BASIC_AUTH_USER" $c.basicAuth.user) }}
{{- if $c.basicAuth.existingSecret }}
- name: MERGE_BASIC_AUTH_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $c.basicAuth.existingSecret }}
      key: {{ $c.basicAuth.passwordKey }}
{{- end }}
{{- include "merge-job.envVar" (list "MERGE_CA_BUNDLE" $c.caBundle) }}
{{- include "merge-job.envVar" (list "MERGE_VERIFY_TLS" $c.verifyTls) }}
{{- include "merge-job.envVar" (list "MERGE_REQUEST_TIMEOUT" $c.requestTimeout) }}
{{- include "merge-job.envVar" (list "MERGE_PUSHGATEWAY_URL" .Values.metrics.pushgateway.url) }}
{{- include "merge-job.envVar" (list "MERGE_METRICS_CLUSTER" .Values.metrics.pushgateway.cluster) }}
{{- include "merge-job.envVar" (list "LOG_FORMAT" $c.logFormat) }}
{{- include "merge-job.envVar" (list "LOG_LEVEL" $c.logLevel) }}
{{- if .Values.rules }}
- name: MERGE_RULES_FILE
  value: /etc/merge-job/rules.yaml
{{- end }}
{{- end }}

{{/* Seconds without a successful run after which the MergeJobNoRecentSuccess alert fires. */}}
{{- define "merge-job.noSuccessFor" -}}
{{- with .Values.metrics.prometheusRule.noSuccessForSeconds }}{{ int . }}{{- else -}}
{{- add 86400 (.Values.startingDeadlineSeconds | default 0) (.Values.activeDeadlineSeconds | default 0) }}
{{- end }}
{{- end }}

{{/* IRSA without the EKS pod identity webhook: the environment the webhook injects (names and values as github.com/aws/amazon-eks-pod-identity-webhook sets them). AWS_REGION itself comes from config.region in merge-job.env. */}}
{{- define "merge-job.webIdentityEnv" -}}
{{- if .Values.serviceAccount.injectWebIdentity }}
- name: AWS_STS_REGIONAL_ENDPOINTS
  value: regional
{{- with .Values.config.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
- name: AWS_ROLE_ARN
  value: {{ required "serviceAccount.injectWebIdentity needs serviceAccount.roleArn: the IAM role the pod assumes, e.g. --set serviceAccount.roleArn=arn:aws:iam::123456789012:role/merge-job" .Values.serviceAccount.roleArn | quote }}
- name: AWS_WEB_IDENTITY_TOKEN_FILE
  value: /var/run/secrets/eks.amazonaws.com/serviceaccount/token
{{- end }}
{{- end }}
