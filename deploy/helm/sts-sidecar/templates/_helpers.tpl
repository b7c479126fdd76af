{{/* The release's name, at most 63 characters (a DNS label). */}}
{{- define "sts-sidecar.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sts-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sts-sidecar.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sts-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sts-sidecar.fullname" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sts-sidecar.labels" -}}
{{ include "sts-sidecar.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Where the authorization token file is shared (an in-memory volume in both containers). */}}
{{- define "sts-sidecar.tokenDir" -}}/run/sts-sidecar{{- end -}}

{{/* The flags that say who the pod is and which role it gets (also for `check`). */}}
{{- define "sts-sidecar.identityArgs" -}}
{{- $mode := .Values.identity.mode -}}
{{- if eq $mode "projected" }}
- --token-file=/var/run/secrets/sts/token
{{- else if eq $mode "token-service" }}
- --token-service-url={{ required "identity.tokenService.url is required with identity.mode=token-service" .Values.identity.tokenService.url }}
- --cert-file=/etc/sts-sidecar/identity/tls.crt
- --key-file=/etc/sts-sidecar/identity/tls.key
{{- if .Values.identity.tokenService.caConfigMap }}
- --token-service-ca=/etc/sts-sidecar/ca/ca.crt
{{- end }}
{{- end }}
{{- if ne $mode "irsa" }}
- --role-arn={{ required "role.arn is required (the IAM role the app's credentials are for)" .Values.role.arn }}
{{- else if .Values.role.arn }}
- --role-arn={{ .Values.role.arn }}
{{- end }}
{{- with .Values.role.sessionName }}
- --role-session-name={{ . }}
{{- end }}
{{- end -}}

{{/*
The sidecar container (an init container with restartPolicy Always). A chart of your own can
take this chart as a dependency and include "sts-sidecar.container" under its pod's
initContainers, "sts-sidecar.appEnv" in its app container's env and "sts-sidecar.volumes" in
its volumes, with this chart's values under the same keys.
*/}}
{{- define "sts-sidecar.container" -}}
{{- $mode := .Values.identity.mode -}}
- name: sts-sidecar
  image: "{{ .Values.sidecar.image.repository }}:{{ .Values.sidecar.image.tag | default .Chart.AppVersion }}"
  imagePullPolicy: {{ .Values.sidecar.image.pullPolicy }}
  restartPolicy: Always
  args:
  - serve
  - --listen=127.0.0.1:{{ .Values.sidecar.port }}
  - --auth-token-file={{ include "sts-sidecar.tokenDir" . }}/token
  - --auth-token-file-mode=0640
  {{- include "sts-sidecar.identityArgs" . | trim | nindent 2 }}
  {{- range .Values.sidecar.extraArgs }}
  - {{ . | quote }}
  {{- end }}
  env:
  - {name: AWS_REGION, value: {{ .Values.region | quote }}}
  - {name: STS_SIDECAR_LOG_FORMAT, value: {{ .Values.sidecar.logFormat | quote }}}
  startupProbe:
    exec:
      command: [/usr/local/bin/sts-sidecar, check, --wait, "0"]
    periodSeconds: 1
    failureThreshold: 120
  {{- with .Values.sidecar.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsUser: 65532
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
  volumeMounts:
  - {name: sts-sidecar, mountPath: {{ include "sts-sidecar.tokenDir" . }}}
  {{- if eq $mode "projected" }}
  - {name: sts-identity, mountPath: /var/run/secrets/sts, readOnly: true}
  {{- else if eq $mode "token-service" }}
  - {name: sts-identity, mountPath: /etc/sts-sidecar/identity, readOnly: true}
  {{- if .Values.identity.tokenService.caConfigMap }}
  - {name: sts-token-service-ca, mountPath: /etc/sts-sidecar/ca, readOnly: true}
  {{- end }}
  {{- end }}
{{- end -}}

{{/* The app container's AWS variables: where its SDK finds the sidecar. */}}
{{- define "sts-sidecar.appEnv" -}}
- {name: AWS_REGION, value: {{ .Values.region | quote }}}
- {name: AWS_CONTAINER_CREDENTIALS_FULL_URI, value: "http://127.0.0.1:{{ .Values.sidecar.port }}/v1/credentials"}
- {name: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, value: {{ include "sts-sidecar.tokenDir" . }}/token}
{{- end -}}

{{/* The pod's volumes for the sidecar. */}}
{{- define "sts-sidecar.volumes" -}}
{{- $mode := .Values.identity.mode -}}
- name: sts-sidecar
  emptyDir: {medium: Memory, sizeLimit: 1Mi}
{{- if eq $mode "projected" }}
- name: sts-identity
  projected:
    sources:
    - serviceAccountToken:
        path: token
        audience: {{ .Values.identity.audience | quote }}
        expirationSeconds: {{ .Values.identity.expirationSeconds }}
{{- else if eq $mode "token-service" }}
- name: sts-identity
  secret:
    secretName: {{ required "identity.tokenService.certificateSecret is required with identity.mode=token-service" .Values.identity.tokenService.certificateSecret }}
    defaultMode: 0440
{{- with .Values.identity.tokenService.caConfigMap }}
- name: sts-token-service-ca
  configMap:
    name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}
