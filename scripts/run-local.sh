#!/usr/bin/env bash
# Set everything up and run pgsluice in front of a local PostgreSQL.
#
#   scripts/run-local.sh
#
# Uses the PostgreSQL at PGHOST/PGPORT (default 127.0.0.1:5432) when one
# answers; otherwise starts a throwaway cluster in a temporary directory
# (stopped again on exit). pgsluice listens on 127.0.0.1:${PGSLUICE_PORT:-6432}
# in transaction mode. One Ctrl-C stops everything (pgsluice shuts down as
# for SIGINT, the throwaway cluster stops) and the script exits 0.
#
# Environment:
#   PGHOST, PGPORT     the PostgreSQL to use (127.0.0.1, 5432)
#   PGUSER, PGPASSWORD its user and password (postgres, none)
#   PGSLUICE_PORT      where pgsluice listens (6432)
#   CARGO_TARGET_DIR   cargo's target directory (target)
set -euo pipefail
cd "$(dirname "$0")/.."

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PORT=${PGSLUICE_PORT:-6432}
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"

pg_bin() {
  local d
  command -v "$1" 2>/dev/null && return 0
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/$1" ] && { echo "$d/$1"; return 0; }
  done
  return 1
}

if ! pg_bin initdb >/dev/null || ! pg_bin psql >/dev/null; then
  echo "== installing PostgreSQL (Debian packages)"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q postgresql postgresql-client
fi
command -v cargo >/dev/null || { echo "cargo is needed: https://rustup.rs" >&2; exit 1; }

echo "== building pgsluice (release)"
scripts/build-deps.sh
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/pgsluice

WORK=$(mktemp -d /tmp/pgsluice-local.XXXXXX)
CLUSTER_PID=""
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill -INT "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; PID=""; fi
  if [ -n "$CLUSTER_PID" ]; then
    # The postmaster itself (runuser, between, would pass on SIGTERM and
    # SIGKILL it 2 s later): SIGINT is PostgreSQL's fast shutdown.
    local pm
    pm=$(head -n 1 "$WORK/data/postmaster.pid" 2>/dev/null || echo "$CLUSTER_PID")
    kill -INT "$pm" 2>/dev/null; wait "$CLUSTER_PID" 2>/dev/null || true; CLUSTER_PID=""
  fi
  rm -rf "$WORK"
}
# The servers run in sessions of their own (setsid), so the terminal's
# Ctrl-C reaches this script only, which then stops each of them once.
stop() {
  trap - INT TERM
  echo
  echo "== stopping"
  cleanup
  exit 0
}
trap cleanup EXIT
trap stop INT TERM

if "$(pg_bin pg_isready)" -q -h "$PGHOST" -p "$PGPORT"; then
  echo "== using the PostgreSQL at $PGHOST:$PGPORT"
  DBUSER=${PGUSER:-postgres}
  PASSWORD_OPT=""; [ -n "${PGPASSWORD:-}" ] && PASSWORD_OPT="password=$PGPASSWORD"
else
  PGHOST=127.0.0.1
  PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  echo "== no PostgreSQL answers; starting a throwaway cluster on $PGHOST:$PGPORT"
  RUN=()
  if [ "$(id -u)" -eq 0 ]; then
    DBUSER=postgres
    chown postgres "$WORK"
    RUN=(runuser -u postgres --)
  else
    DBUSER=$(id -un)
  fi
  "${RUN[@]}" "$(pg_bin initdb)" -D "$WORK/data" -U "$DBUSER" -A trust >/dev/null
  setsid "${RUN[@]}" "$(pg_bin postgres)" -D "$WORK/data" -p "$PGPORT" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$WORK" >"$WORK/postgres.log" 2>&1 &
  CLUSTER_PID=$!
  for _ in $(seq 50); do
    "$(pg_bin pg_isready)" -q -h "$PGHOST" -p "$PGPORT" && break
    sleep 0.2
  done
  PASSWORD_OPT=""
fi

cat >"$WORK/pgsluice.ini" <<INI
[databases]
* = host=$PGHOST port=$PGPORT $PASSWORD_OPT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
admin_users = $DBUSER
INI
printf '"%s" ""\n' "$DBUSER" >"$WORK/userlist.txt"

cat <<MSG
== pgsluice is starting on 127.0.0.1:$PORT (config: $WORK/pgsluice.ini)
   connect with:  psql -h 127.0.0.1 -p $PORT -U $DBUSER postgres
   admin console: psql -h 127.0.0.1 -p $PORT -U $DBUSER pgbouncer -c 'SHOW POOLS'
   benchmark:     pgbench -h 127.0.0.1 -p $PORT -U $DBUSER -S -c 10 -T 10 postgres   (after pgbench -i)
   stop with Ctrl-C
MSG
setsid "$BIN" "$WORK/pgsluice.ini" &
PID=$!
# pgsluice ending by itself (a bad configuration, a port in use): its status.
status=0
wait "$PID" || status=$?
PID=""
exit "$status"
