#!/usr/bin/env bash
# TEMPORARY: remove once pgsluice accepts PgBouncer's command line itself
# (-d/--daemon, -R/--reboot, -u/--user; see its --help). Until then
# scripts/pgbouncer-suite.sh installs this file as the `pgbouncer` executable
# that PgBouncer's test harness starts (test/../pgbouncer), next to the
# pgsluice binary copied there as `pgsluice.bin`, and it maps PgBouncer's
# flags onto pgsluice's:
#
#   -q/--quiet         -> -q
#   -v/--verbose       -> -v
#   -V/--version, -h/--help   passed through (pgsluice answers them)
#   -R/--reboot        dropped: pgsluice has no online restart, a plain
#                      process starts (and finds the port taken)
#   -u/--user USER     dropped: pgsluice does not switch users
#   -d/--daemon        emulated: pgsluice runs in the background; unless
#                      it dies at once (then its exit status is ours), this
#                      script writes its PID to the config's pidfile (if
#                      any) and exits 0
#
# Combined short flags (-Rq, -qd) are split as getopt would. In the
# foreground case the script execs pgsluice, so the PID the harness holds
# (and signals) is pgsluice's own.
set -euo pipefail

bin="${PGSLUICE_WRAPPED_BIN:-$(dirname "$(readlink -f "$0")")/pgsluice.bin}"
args=()
daemon=0
config=""

while [[ $# -gt 0 ]]; do
    case "$1" in
    -q | --quiet) args+=(-q) ;;
    -v | --verbose) args+=(-v) ;;
    -V | --version | -h | --help) exec "$bin" "$1" ;;
    -R | --reboot) ;;
    -d | --daemon) daemon=1 ;;
    -u | --user)
        [[ $# -ge 2 ]] && shift
        ;;
    --user=* | -u?*) ;;
    --)
        shift
        [[ $# -gt 0 ]] && config="$1"
        args+=(-- "$@")
        break
        ;;
    -[!-]?*)
        # -Rq -> -R -q (the rest of the group stays one word: -qu USER works)
        first="${1:0:2}"
        rest="-${1:2}"
        shift
        set -- "$first" "$rest" "$@"
        continue
        ;;
    -*)
        echo "pgbouncer (pgsluice wrapper): unknown option $1" >&2
        exit 64
        ;;
    *)
        config="$1"
        args+=("$1")
        ;;
    esac
    shift
done

if [[ $daemon -eq 0 ]]; then
    exec "$bin" "${args[@]}"
fi

# -d: the pidfile key of the [pgbouncer] section (empty or absent: none).
pidfile=""
if [[ -n "$config" && -r "$config" ]]; then
    pidfile="$(awk '
        /^[[:space:]]*\[/ { s = $0; gsub(/[][[:space:]]/, "", s); sec = tolower(s); next }
        sec == "pgbouncer" && /^[[:space:]]*pidfile[[:space:]]*=/ {
            v = $0; sub(/^[^=]*=[[:space:]]*/, "", v); sub(/[[:space:]]+$/, "", v); p = v
        }
        END { print p }' "$config")"
fi

"$bin" "${args[@]}" </dev/null >/dev/null 2>&1 &
pid=$!
# A bad config or a taken port ends pgsluice at once: report it as PgBouncer
# -d does (before detaching), with pgsluice's exit status, and leave the
# pidfile alone (it may name a running instance).
sleep 0.3
if ! kill -0 "$pid" 2>/dev/null; then
    status=0
    wait "$pid" || status=$?
    exit "$status"
fi
if [[ -n "$pidfile" ]]; then
    echo "$pid" >"$pidfile"
fi
exit 0
