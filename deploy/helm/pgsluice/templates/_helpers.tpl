{{/* Names: the release's name, with the chart's appended unless it has it. */}}
{{- define "pgsluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pgsluice.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pgsluice.labels" -}}
{{ include "pgsluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "pgsluice.secretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-userlist" (include "pgsluice.fullname" .)) -}}
{{- end -}}

{{/* Where the pods find things; pgsluice.ini names them too. */}}
{{- define "pgsluice.configDir" -}}/etc/pgsluice{{- end -}}
{{- define "pgsluice.socketDir" -}}/var/run/pgsluice{{- end -}}

{{/* An ini value: whole numbers without an exponent (YAML numbers arrive
as float64), booleans as 1/0; no line breaks. */}}
{{- define "pgsluice.iniValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else if kindIs "bool" . -}}
{{- ternary "1" "0" . -}}
{{- else -}}
{{- $s := toString . -}}
{{- if or (contains "\n" $s) (contains "\r" $s) -}}
{{- fail (printf "config: a value may not span lines: %q" $s) -}}
{{- end -}}
{{- $s -}}
{{- end -}}
{{- end -}}

{{/* The admin console over the Unix socket, as user pgbouncer (no password
for the pooler's own OS user), for the preStop hook and the sidecar; each
call bounded (connect_timeout, and `timeout` around it) should pgsluice
hang. */}}
{{- define "pgsluice.adminPsql" -}}
psql -X -q -At -h {{ include "pgsluice.socketDir" . }} -p {{ .Values.ports.postgres }} -U pgbouncer -d 'dbname=pgbouncer connect_timeout=5'
{{- end -}}

{{/* preStop: drain the pod (see values.yaml, shutdown). Exits 0 in every
case: the stop signal follows at once. */}}
{{- define "pgsluice.preStop" -}}
{{- $s := .Values.shutdown -}}
admin() { timeout 10 {{ include "pgsluice.adminPsql" . }} -c "$1"; }
sleep {{ int $s.delaySeconds }}
admin 'SHUTDOWN WAIT_FOR_CLIENTS' || exit 0
end=$(( $(date +%s) + {{ int $s.drainSeconds }} ))
while [ "$(date +%s)" -lt "$end" ]; do
  clients=$(admin 'SHOW CLIENTS' 2>/dev/null) || exit 0
  [ -z "$(printf '%s\n' "$clients" | awk -F'|' '$3 != "" && $3 != "pgbouncer"')" ] && exit 0
  sleep 1
done
timeout {{ int $s.pauseSeconds }} {{ include "pgsluice.adminPsql" . }} -c 'PAUSE'
exit 0
{{- end -}}

{{/* The sidecar: RELOAD when kubelet swaps the volume's ..data link. psql
exits 1 when pgsluice refuses the new files (it keeps the running
configuration; not tried again until the next change), 2 when it cannot
be reached (tried again). */}}
{{- define "pgsluice.reloader" -}}
trap 'exit 0' INT TERM
link={{ include "pgsluice.configDir" . }}/..data
seen=$(readlink "$link")
echo "config-reloader: watching $link ($seen)"
while :; do
  sleep {{ int .Values.configReloader.intervalSeconds }} & wait $!
  now=$(readlink "$link") || continue
  [ "$now" = "$seen" ] && continue
  out=$(timeout 10 {{ include "pgsluice.adminPsql" . }} -c 'RELOAD' 2>&1)
  case $? in
    0) echo "config-reloader: $now: RELOAD done"; seen=$now ;;
    1) echo "config-reloader: $now: RELOAD refused, the running configuration stays: $out" >&2; seen=$now ;;
    *) echo "config-reloader: $now: pgsluice not reachable, trying again: $out" >&2 ;;
  esac
done
{{- end -}}

{{- define "pgsluice.secretKey" -}}
{{- if .Values.auth.existingSecret -}}{{ .Values.auth.existingSecretKey }}{{- else -}}userlist.txt{{- end -}}
{{- end -}}

{{- define "pgsluice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
