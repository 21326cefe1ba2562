#!/usr/bin/env bash
# Conformance run: PgBouncer 1.25.2's own pytest suite (test/ of its source,
# 259 tests) against pgsluice, compared with the measured baseline.
#
#   scripts/pgbouncer-suite.sh [ARCHIVE]
#
# ARCHIVE defaults to ../shared/conformance/pgbouncer-1.25.2.tar.gz beside the
# repository. It is unpacked into a temp dir for the run only (nothing of
# PgBouncer's is kept in this repository). The harness starts
# test/../pgbouncer: there goes the pgsluice binary itself, which takes
# PgBouncer's command line. As the baseline run did: `pytest -n 2 -v`, one pytest run per test file,
# a per-file timeout, the suite's own 30 s per test; as the `postgres` OS user
# when run as root (initdb refuses root).
#
# Writes target/pgbouncer-suite/: outcomes.tsv (file, test, outcome, message:
# the format of the baseline's pgsluice-outcomes.tsv), report.txt, and per
# file the pytest log (logs/) and JUnit XML (junit/). Prints passed/failed/
# errors/skipped per file, the total, every failing test and the comparison
# with the baseline: regressions (passed there, not now) and newly passing.
#
# Exits non-zero when fewer than SUITE_MIN_PASS tests passed or a test that
# passed in the baseline does not pass now.
#
# Environment:
#   PGSLUICE_BIN             binary to test (default: cargo build --release
#                            --locked of this repository)
#   SUITE_BASELINE           baseline TSV (default ../shared/conformance/
#                            baseline-2026-12-05/pgsluice-outcomes.tsv;
#                            empty: no comparison)
#   SUITE_MIN_PASS           threshold of passed tests (default 240; 247 pass
#                            on 2026-12-07, PgBouncer 1.25.2 249, the baseline
#                            run of pgsluice 94)
#   SUITE_ALLOW_REGRESSIONS  1: regressions are reported, not fatal
#   SUITE_FILES              test files to run, e.g. "test_admin test_copy"
#                            (default all; the comparison is limited to them)
#   SUITE_FILE_TIMEOUT       seconds for one file's pytest run (default 600)
#   SUITE_WORKERS            pytest-xdist workers (default 2)
#
# Needs (installed when missing, as root on Debian 12): PostgreSQL, socat (the
# suite's Proxy fixture), openssl (its test certificates), slapd and
# ldap-utils (its OpenLDAP server for test_ldap_auth), python3-venv; the
# Python packages of the archive's requirements.txt go into
# target/pgbouncer-suite/venv, pinned to the baseline's versions.
#
# Every process the run starts (pgsluice, PostgreSQL, socat, pytest) has its
# executable, working directory or command line in the run's temp dir; after
# each file and on exit, whatever of those is still running is stopped by PID
# (SIGQUIT for pgsluice and PostgreSQL, SIGTERM otherwise, SIGKILL after 10 s)
# and the temp dir is removed.
set -euo pipefail
export LC_ALL=C

# shellcheck source-path=SCRIPTDIR source=../benches/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../benches/lib/common.sh"
SCRIPTS_DIR="$REPO_DIR/scripts"
cd "$REPO_DIR"

archive="${1:-$REPO_DIR/../shared/conformance/pgbouncer-1.25.2.tar.gz}"
baseline="${SUITE_BASELINE-$REPO_DIR/../shared/conformance/baseline-2026-12-05/pgsluice-outcomes.tsv}"
min_pass="${SUITE_MIN_PASS:-240}"
file_timeout="${SUITE_FILE_TIMEOUT:-600}"
workers="${SUITE_WORKERS:-2}"
out="$REPO_DIR/target/pgbouncer-suite"

# The versions of the baseline run (RESULTS.md); psycopg with its binary
# libpq, as there.
pip_pins=(
    pytest==9.2.0
    pytest-asyncio==1.5.0
    pytest-xdist==3.8.0
    pytest-timeout==2.4.0
    psycopg==3.3.9
    psycopg-binary==3.3.9
)

if [[ ! -r "$archive" ]]; then
    log "no archive at $archive (usage: $0 [ARCHIVE])"
    exit 2
fi
archive="$(readlink -f "$archive")"
if [[ -n "$baseline" && ! -r "$baseline" ]]; then
    log "no baseline TSV at $baseline (SUITE_BASELINE= to run without one)"
    exit 2
fi
started=$SECONDS

# --- tools -----------------------------------------------------------------
ensure_postgres_tools socat openssl python3-venv slapd ldap-utils
bindir="$(pg_bindir)"
# The venv must be usable by the postgres user: Debian's python3, not one
# under /root (pyenv).
python=/usr/bin/python3
[[ -x "$python" ]] || python="$(command -v python3)"

run_as=()
if [[ $(id -u) -eq 0 ]]; then
    run_as=(setpriv --reuid=postgres --regid=postgres --init-groups)
    run_user=postgres
    run_home="$(getent passwd postgres | cut -d: -f6)"
else
    run_user="$(id -un)"
    run_home="$HOME"
fi

# --- temp dir and cleanup ---------------------------------------------------
# Short path: the harness puts Unix sockets under pytest's basetemp, and
# their paths must stay under 108 bytes.
tmp="$(mktemp -d /tmp/pgbs.XXXXXX)"
chmod 755 "$tmp"

# PIDs of processes that belong to this run: executable, working directory
# or command line inside $tmp (this script and its subshells are not).
run_pids() {
    local p pid exe cwd cmd
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
        exe="$(readlink "$p/exe" 2>/dev/null || true)"
        cwd="$(readlink "$p/cwd" 2>/dev/null || true)"
        cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline" || true)"
        if [[ "$exe" == "$tmp"/* || "$cwd" == "$tmp" || "$cwd" == "$tmp"/* || "$cmd" == *"$tmp/"* ]]; then
            echo "$pid"
        fi
    done
}

# stop_leftovers WHEN: stop this run's processes by PID, say which.
stop_leftovers() {
    local when="$1" pids pid name i
    mapfile -t pids < <(run_pids)
    [[ ${#pids[@]} -eq 0 ]] && return 0
    local exes=()
    for i in "${!pids[@]}"; do
        pid="${pids[$i]}"
        exes[i]="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
        name="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-120 || true)"
        log "$when: stopping leftover process $pid: ${name:-?}"
    done
    for i in "${!pids[@]}"; do
        case "${exes[$i]##*/}" in
        pgbouncer | postgres) kill -QUIT "${pids[$i]}" 2>/dev/null || true ;;
        *) kill -TERM "${pids[$i]}" 2>/dev/null || true ;;
        esac
    done
    for ((i = 0; i < 100; i++)); do
        mapfile -t pids < <(run_pids)
        [[ ${#pids[@]} -eq 0 ]] && return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        log "$when: killing process $pid (SIGKILL)"
        kill -KILL "$pid" 2>/dev/null || true
    done
    sleep 0.5
}

# PostgreSQL's socket lock files in /tmp name their data directory (line 2):
# remove the ones of this run's clusters left by a killed postmaster.
# shellcheck disable=SC2317  # called from cleanup (trap)
remove_pg_socket_files() {
    local lock
    for lock in /tmp/.s.PGSQL.*.lock; do
        [[ -f "$lock" ]] || continue
        if [[ "$(sed -n 2p "$lock" 2>/dev/null)" == "$tmp"/* ]]; then
            rm -f "$lock" "${lock%.lock}"
        fi
    done
}

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_leftovers "exit" || true
    remove_pg_socket_files || true
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- pgsluice ----------------------------------------------------------------
if [[ -n "${PGSLUICE_BIN:-}" ]]; then
    bin="$(readlink -f "$PGSLUICE_BIN")"
    log "pgsluice: $bin (PGSLUICE_BIN)"
else
    log "building pgsluice (cargo build --release --locked)"
    build_start=$SECONDS
    cargo build --release --locked
    bin="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/pgsluice"
    log "built $bin in $((SECONDS - build_start)) s"
fi
[[ -x "$bin" ]] || {
    log "no pgsluice binary at $bin"
    exit 1
}
log "pgsluice --version: $("$bin" --version | tail -n 1)"

# --- Python venv ----------------------------------------------------------------
mkdir -p "$out"
venv="$out/venv"
src="$tmp/tree"
mkdir -p "$src"
tar -xzf "$archive" -C "$src" --strip-components=1
[[ -f "$src/test/utils.py" && -f "$src/requirements.txt" ]] || {
    log "$archive does not hold PgBouncer's test/ and requirements.txt"
    exit 1
}
stamp="$(printf '%s\n' "$python" "${pip_pins[@]}" | cat - "$src/requirements.txt" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.suite-stamp" 2>/dev/null)" != "$stamp" ]]; then
    log "creating $venv (requirements.txt of the archive, pinned: ${pip_pins[*]})"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    printf '%s\n' "${pip_pins[@]}" >"$tmp/constraints.txt"
    "$venv/bin/pip" install -q -c "$tmp/constraints.txt" -r "$src/requirements.txt" psycopg-binary
    echo "$stamp" >"$venv/.suite-stamp"
fi
log "python packages: $("$venv/bin/pip" list --format=freeze 2>/dev/null | grep -iE '^(pytest|pytest-asyncio|pytest-xdist|pytest-timeout|psycopg|psycopg-binary)==' | tr '\n' ' ')"

# --- the PgBouncer tree -------------------------------------------------------
# The harness reads ../config.mak for what PgBouncer was built with: as the
# reference build (./configure --with-cares), TLS on (the TLS tests run and
# show what pgsluice lacks), and LDAP on: the baseline's PgBouncer was built
# without LDAP (its test_ldap_auth skipped), pgsluice has it and runs it.
printf 'tls_support = yes\nldap_support = yes\n' >"$src/config.mak"
# pgsluice itself is the `pgbouncer` the harness starts: it takes
# PgBouncer's command line (-d, -R, -u, -q, -v, -V, -h).
cp "$bin" "$src/pgbouncer"
chmod 755 "$src/pgbouncer"
mkdir -p "$tmp/tmp" "$tmp/junit"
if [[ ${#run_as[@]} -gt 0 ]]; then
    chown -R postgres: "$tmp"
fi

if [[ -n "${SUITE_FILES:-}" ]]; then
    read -r -a files <<<"$SUITE_FILES"
else
    files=()
    for path in "$src"/test/test_*.py; do
        path="${path##*/}"
        files+=("${path%.py}")
    done
fi
[[ ${#files[@]} -gt 0 ]] || {
    log "no test files"
    exit 1
}

# A clean environment for the harness: no PG* variables of the caller, no
# USE_SUDO/HAVE_IPV6_LOCALHOST (as the baseline); TMPDIR keeps its port lock
# files inside this run.
harness_env=(
    env -i
    "PATH=$venv/bin:$bindir:/usr/local/bin:/usr/bin:/bin"
    "HOME=$run_home" "USER=$run_user" "LOGNAME=$run_user"
    "LANG=C.UTF-8" "TMPDIR=$tmp/tmp" "PYTHONDONTWRITEBYTECODE=1"
)

rm -rf "$out/logs" "$out/junit"
mkdir -p "$out/logs" "$out/junit"
outcomes="$out/outcomes.tsv"
: >"$outcomes.part"
log "running ${#files[@]} test files: pytest -n $workers -v, ${file_timeout} s per file, as $run_user"

for f in "${files[@]}"; do
    [[ -f "$src/test/$f.py" ]] || {
        log "no test/$f.py in the archive"
        exit 1
    }
    file_start=$SECONDS
    status=0
    # The test file by absolute path: utils.py chdirs into test/, and
    # xdist's workers would resolve a relative one from there (0 items).
    # --tb=native: pytest's own traceback style re-parses the test's source
    # with `ast`, which on Python 3.11 can fail ("AST constructor recursion
    # depth mismatch") and take the xdist worker down with every test it had
    # left (reported as missing); outcomes do not depend on the style.
    (cd "$src" && timeout --kill-after=30 "$file_timeout" \
        "${run_as[@]}" "${harness_env[@]}" \
        python -m pytest -n "$workers" -v --tb=native -p no:cacheprovider \
        --basetemp="$tmp/t" --junitxml="$tmp/junit/$f.xml" "$src/test/$f.py") \
        >"$out/logs/$f.log" 2>&1 || status=$?
    note="pytest exited with status $status"
    collected_arg=()
    if [[ ! -s "$tmp/junit/$f.xml" ]]; then
        if [[ $status -eq 124 || $status -eq 137 ]]; then
            note="the pytest run of $f.py was stopped by the ${file_timeout} s file timeout"
        else
            note="pytest exited with status $status without a report"
        fi
        log "$f: $note"
        stop_leftovers "$f"
        (cd "$src" && "${run_as[@]}" "${harness_env[@]}" \
            python -m pytest -q --collect-only -p no:cacheprovider \
            --basetemp="$tmp/t" "$src/test/$f.py") >"$tmp/collected-$f.txt" 2>&1 || true
        collected_arg=(--collected "$tmp/collected-$f.txt")
    else
        cp "$tmp/junit/$f.xml" "$out/junit/"
    fi
    stop_leftovers "after $f"
    "$venv/bin/python" "$SCRIPTS_DIR/pgbouncer_suite.py" outcomes "$f" \
        --junit "$tmp/junit/$f.xml" --log "$out/logs/$f.log" \
        "${collected_arg[@]}" --note "$note" >"$tmp/rows-$f.tsv"
    cat "$tmp/rows-$f.tsv" >>"$outcomes.part"
    c="$(awk -F'\t' '{n[$3]++} END {printf "%d/%d/%d/%d", n["passed"], n["failed"], n["error"], n["skipped"]}' "$tmp/rows-$f.tsv")"
    log "$f: $c passed/failed/errors/skipped ($((SECONDS - file_start)) s, pytest status $status)"
done
mv "$outcomes.part" "$outcomes"

report_args=(--outcomes "$outcomes" --files "$(
    IFS=,
    echo "${files[*]}"
)" --min-pass "$min_pass")
[[ -n "$baseline" ]] && report_args+=(--baseline "$baseline")
[[ "${SUITE_ALLOW_REGRESSIONS:-0}" == 1 ]] && report_args+=(--allow-regressions)

echo
report_status=0
"$venv/bin/python" "$SCRIPTS_DIR/pgbouncer_suite.py" report "${report_args[@]}" |
    tee "$out/report.txt" || report_status=$?
echo "outcomes: $outcomes; logs: $out/logs/; wall time $((SECONDS - started)) s" |
    tee -a "$out/report.txt"
exit "$report_status"
