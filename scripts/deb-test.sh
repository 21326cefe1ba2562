#!/usr/bin/env bash
# Installs the Debian package (scripts/build-deb.sh) on this machine with
# dpkg, checks what it put there, runs the installed binary with the
# installed configuration as the pgsluice user in front of a throwaway
# PostgreSQL, then purges the package and checks that it is gone.
#
#   PGSLUICE_BIN=target/pgo/use/release/pgsluice scripts/deb-test.sh
#
# Without PGSLUICE_BIN it makes the profile-guided build first. Run as
# root, on Debian (CI does, after the profile-guided build). It changes the
# machine: it installs and purges the package pgsluice (a pgsluice system
# user stays, as Debian leaves system users), and runs a PostgreSQL cluster
# of its own, from a temporary directory, on the socket directory and port
# that /etc/pgsluice/pgsluice.ini points at (/var/run/postgresql, 5432):
# none may run there already. No systemd needed: the binary is started
# directly, as the unit would start it. Safe to run again, also after a
# run that was killed.
# The bash -c checks take their values as "$1"..., in single quotes.
# shellcheck disable=SC2016
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../benches/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../benches/lib/common.sh"
cd "$REPO_DIR"

[[ $(id -u) -eq 0 ]] || { log "deb-test: run as root (dpkg -i)"; exit 1; }

PKG=pgsluice
CONF=/etc/pgsluice/pgsluice.ini
USERLIST=/etc/pgsluice/userlist.txt
UNIT=/lib/systemd/system/pgsluice.service
MAN=/usr/share/man/man1/pgsluice.1.gz
WANTS=/etc/systemd/system/multi-user.target.wants/pgsluice.service
WORK=/tmp/pgsluice-deb-test
ROLE=sluice_deb

passed=0
ok() { passed=$((passed + 1)); log "ok: $*"; }
fail() {
    log "FAILED: $*"
    echo "deb-test: $passed passed, 1 failed"
    exit 1
}
# check DESCRIPTION COMMAND...: the command must succeed.
check() {
    local what="$1"
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$PKG" 2>/dev/null)" == ii* ]]
}
known_to_dpkg() {
    local s
    s="$(dpkg-query -W -f='${db:Status-Abbrev}' "$PKG" 2>/dev/null)" || return 1
    [[ -n "$s" && "$s" != un* && "$s" != pn* ]]
}
as_user() { setpriv --reuid="$1" --regid="$(id -g "$1")" --init-groups -- "${@:2}"; }
as_postgres() { (cd / && as_user postgres "$@"); }

# ---- leftovers of an earlier run (one that was killed) ----
stop_leftovers() {
    if [[ -f "$WORK/pgsluice.pid" ]]; then
        local pid
        pid="$(cat "$WORK/pgsluice.pid")"
        if [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == /usr/bin/pgsluice ]]; then
            kill -QUIT "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    if [[ -f "$WORK/data/postmaster.pid" ]]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
}

cleanup() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        for f in "$WORK/pgsluice.log" "$WORK/postgres.log"; do
            [[ -s "$f" ]] || continue
            log "last lines of $f:"
            tail -n 30 "$f" >&2
        done
    fi
    stop_leftovers
    if known_to_dpkg; then
        log "purging $PKG"
        dpkg --purge "$PKG" >/dev/null 2>&1 || true
    fi
    rm -rf /run/pgsluice "$WORK"
    exit "$rc"
}

# ---- what the test needs ----
missing=()
[[ -n "$(pg_bindir)" ]] || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v man >/dev/null 2>&1 || missing+=(man-db)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install --no-install-recommends "${missing[@]}"
fi
PG_BIN="$(pg_bindir)"
getent passwd postgres >/dev/null || fail "no postgres OS user (postgresql-common makes it)"

stop_leftovers
if known_to_dpkg; then
    log "$PKG is installed (an earlier run?): purging it first"
    dpkg --purge "$PKG" >&2
fi
rm -rf /run/pgsluice "$WORK"
trap cleanup EXIT

# ---- the package ----
bin="${PGSLUICE_BIN:-}"
if [[ -z "$bin" ]]; then
    log "no PGSLUICE_BIN: profile-guided build (scripts/build-pgo.sh)"
    bin="$(scripts/build-pgo.sh)"
fi
deb="$(PGSLUICE_BIN="$bin" scripts/build-deb.sh)"
log "package: $deb"

# The installed configuration decides where PostgreSQL must be: the
# [databases] fallback's Unix socket directory and port.
pkg_conf="$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/pgsluice/pgsluice.ini)"
pg_host="$(sed -n 's/^\* = .*host=\([^ ]*\).*/\1/p' <<<"$pkg_conf")"
pg_port="$(sed -n 's/^\* = .*port=\([0-9]*\).*/\1/p' <<<"$pkg_conf")"
[[ "$pg_host" == /* && -n "$pg_port" ]] ||
    fail "the packaged pgsluice.ini has no '* = host=<socket dir> port=N' line"
listen_port="$(sed -n 's/^listen_port = \([0-9]*\)$/\1/p' <<<"$pkg_conf")"
sock_dir="$(sed -n 's/^unix_socket_dir = \(.*\)$/\1/p' <<<"$pkg_conf")"
[[ -n "$listen_port" && -n "$sock_dir" ]] || fail "no listen_port / unix_socket_dir in the packaged pgsluice.ini"

# Nothing may serve there already (the test's PostgreSQL and pgsluice take
# these places).
if [[ -S "$pg_host/.s.PGSQL.$pg_port" ]] && "$PG_BIN/pg_isready" -q -h "$pg_host" -p "$pg_port" -t 2; then
    fail "a PostgreSQL already serves on $pg_host port $pg_port: stop it (pg_lsclusters, pg_ctlcluster VERSION NAME stop)"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$listen_port") 2>/dev/null; then
    stop_system_pgbouncer
    sleep 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$listen_port") 2>/dev/null; then
        fail "something listens on 127.0.0.1:$listen_port already: $(ss -ltnp "sport = :$listen_port" 2>/dev/null | tail -n +2)"
    fi
fi

# ---- install ----
# --path-include: a Docker-style dpkg configuration that excludes
# /usr/share/man would leave the man page out; it is one of the checks.
log "dpkg -i $deb"
if ! dpkg --path-include="$MAN" -i "$deb" >&2; then
    log "dpkg -i failed (missing dependencies?): apt-get install -f"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -f -y -qq >&2
fi
check "package installed" installed
check "binary is the one packaged" \
    diff <("$bin" --version) <(/usr/bin/pgsluice --version)
log "installed: $(/usr/bin/pgsluice --version | tail -n 1)"

# ---- files ----
for f in /usr/bin/pgsluice "$UNIT" "$MAN" "$CONF" "$USERLIST" /usr/share/doc/pgsluice/copyright \
    /usr/share/doc/pgsluice/README.md.gz; do
    check "$f is the package's" bash -c '[[ -f "$1" ]] && dpkg-query -S "$1" | grep -q "^pgsluice: "' _ "$f"
done
# Its debug information is in pgsluice-dbgsym.
check "/usr/bin/pgsluice is executable and stripped" \
    bash -c '[[ -x /usr/bin/pgsluice ]] && ! readelf -S /usr/bin/pgsluice | grep -q "\.debug_info"'
conffiles="$(dpkg-query -W -f='${Conffiles}\n' "$PKG")"
check "pgsluice.ini and userlist.txt are conffiles" \
    bash -c 'grep -q " $1 " <<<"$3" && grep -q " $2 " <<<"$3"' _ "$CONF" "$USERLIST" "$conffiles"

# ---- the user, and who may read the configuration ----
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd pgsluice) || fail "no pgsluice user"
check "pgsluice is a system user ($uid) with no login" \
    bash -c '(( $1 < 1000 )) && [[ $2 == /usr/sbin/nologin && $3 == /nonexistent ]]' _ "$uid" "$shell" "$home"
check "its group is pgsluice" bash -c '[[ "$(getent group "$1" | cut -d: -f1)" == pgsluice ]]' _ "$gid"
check "/etc/pgsluice is root:pgsluice 750" bash -c '[[ "$(stat -c "%U:%G %a" /etc/pgsluice)" == "root:pgsluice 750" ]]'
check "the config files are root:pgsluice 640" \
    bash -c '[[ "$(stat -c "%U:%G %a" "$1" "$2" | sort -u)" == "root:pgsluice 640" ]]' _ "$CONF" "$USERLIST"
check "pgsluice can read userlist.txt" as_user pgsluice test -r "$USERLIST"
check "nobody else can" as_user nobody bash -c '! test -r "$1" && ! cat "$1" 2>/dev/null' _ "$USERLIST"

# ---- the man page ----
man_text="$(MANWIDTH=100 LC_ALL=C man -l "$MAN" 2>&1)"
for want in 'PGSLUICE(1)' 'pgsluice \[OPTIONS\] \[CONFIG_FILE\]' '--hash-password <USER>' \
    '^SIGNALS' '/etc/pgsluice/userlist.txt'; do
    check "man -l shows $want" grep -q -- "$want" <<<"$man_text"
done
check "zcat: a roff page" bash -c 'zcat "$1" | grep -q "^\.TH PGSLUICE \"1\""' _ "$MAN"
check "man -w pgsluice finds it" bash -c '[[ "$(man -w pgsluice)" == "$1" ]]' _ "$MAN"

# ---- the unit ----
# Without --man=no: Documentation=man:pgsluice(1) must resolve as well.
verify_out="$(systemd-analyze verify "$UNIT" 2>&1)" || fail "systemd-analyze verify $UNIT: $verify_out"
check "systemd-analyze verify $UNIT is clean" test -z "$verify_out"
check "unit starts /usr/bin/pgsluice $CONF as pgsluice" \
    bash -c 'grep -qx "ExecStart=/usr/bin/pgsluice $2" "$1" && grep -qx "User=pgsluice" "$1"' _ "$UNIT" "$CONF"
check "unit enabled (multi-user.target.wants)" bash -c '[[ "$(readlink "$1")" == "$2" ]]' _ "$WANTS" "$UNIT"
# Where systemd runs (not in CI), postinst has started the service: check
# it, then stop it, since the test starts the binary itself.
if [[ -d /run/systemd/system ]]; then
    check "systemd started pgsluice.service" systemctl is-active --quiet pgsluice.service
    systemctl stop pgsluice.service
fi

# ---- a throwaway PostgreSQL where the installed config points ----
mkdir -p "$WORK"
chown postgres: "$WORK"
# What postgresql-common's tmpfiles.d entry makes at boot.
if [[ ! -d "$pg_host" ]]; then
    install -d -o postgres -g postgres -m 2775 "$pg_host"
fi
log "initdb $WORK/data (socket $pg_host, port $pg_port)"
as_postgres "$PG_BIN/initdb" -D "$WORK/data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=reject >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; fail "initdb"; }
# The superuser by peer (this script), everyone else by password: the
# way pgsluice's SCRAM pass-through logs in.
cat >"$WORK/data/pg_hba.conf" <<'EOF'
local   all   postgres   peer
local   all   all        scram-sha-256
EOF
as_postgres "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -t 60 \
    -o "-c listen_addresses='' -c port=$pg_port -c unix_socket_directories=$pg_host" start >/dev/null ||
    fail "PostgreSQL did not start"
ok "throwaway PostgreSQL on $pg_host port $pg_port"

password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
token="deb-test-$RANDOM$RANDOM"
psql_pg() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$pg_host" -p "$pg_port" -U postgres "$@"; }
psql_pg -d postgres -c "CREATE ROLE $ROLE LOGIN PASSWORD '$password'" \
    -c "CREATE DATABASE $ROLE OWNER $ROLE"
psql_pg -d "$ROLE" -c "CREATE TABLE marker (token text) ; INSERT INTO marker VALUES ('$token')" \
    -c "GRANT SELECT ON marker TO $ROLE"
secret="$(psql_pg -d postgres -Atc "SELECT rolpassword FROM pg_authid WHERE rolname = '$ROLE'")"
[[ "$secret" == SCRAM-SHA-256\$* ]] || fail "no SCRAM verifier for $ROLE: $secret"

# The role's own verifier into the installed auth_file, as its comments
# say: pgsluice then logs in to PostgreSQL with the keys the client proved.
printf '"%s" "%s"\n' "$ROLE" "$secret" >>"$USERLIST"

# ---- the installed binary, the installed config, as pgsluice ----
# /run/pgsluice is what the unit's RuntimeDirectory= makes.
install -d -o pgsluice -g pgsluice -m 0755 /run/pgsluice
log "starting /usr/bin/pgsluice $CONF as pgsluice"
(cd / && exec setpriv --reuid=pgsluice --regid=pgsluice --init-groups -- \
    /usr/bin/pgsluice "$CONF") >"$WORK/pgsluice.log" 2>&1 &
pooler=$!
echo "$pooler" >"$WORK/pgsluice.pid"
for _ in $(seq 100); do
    kill -0 "$pooler" 2>/dev/null || fail "pgsluice exited at startup"
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$listen_port" -t 1 && break
    sleep 0.2
done
check "pgsluice serves on 127.0.0.1:$listen_port" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$listen_port" -t 2
check "pgsluice runs as pgsluice" bash -c '[[ "$(ps -o user= -p "$1")" == pgsluice ]]' _ "$pooler"

query="SELECT token, current_user, coalesce(inet_server_addr()::text, 'unix socket') FROM marker"
expect="$token|$ROLE|unix socket"
through() {
    PGPASSWORD="$password" psql -X -At -v ON_ERROR_STOP=1 -h "$1" -p "$listen_port" \
        -U "$ROLE" -d "$ROLE" -c "$query" 2>&1
}
out="$(through 127.0.0.1)" || fail "query through 127.0.0.1:$listen_port: $out"
check "query through 127.0.0.1:$listen_port reaches the cluster's socket ($out)" test "$out" = "$expect"
out="$(through "$sock_dir")" || fail "query through $sock_dir: $out"
check "query through pgsluice's socket in $sock_dir" test "$out" = "$expect"
check "a wrong password is refused" bash -c \
    '! PGPASSWORD=wrong psql -X -At -h 127.0.0.1 -p "$1" -U "$2" -d "$2" -c "SELECT 1" >/dev/null 2>&1' \
    _ "$listen_port" "$ROLE"
# The unit's ExecReload.
kill -HUP "$pooler"
sleep 0.5
out="$(through 127.0.0.1)" || fail "query after SIGHUP: $out"
check "SIGHUP (systemctl reload): still serves" test "$out" = "$expect"

# The unit's KillSignal.
kill -INT "$pooler"
status=0
wait "$pooler" || status=$?
check "SIGINT (systemctl stop): pgsluice exits with 0" test "$status" -eq 0
rm -f "$WORK/pgsluice.pid"
as_postgres "$PG_BIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null
rm -rf /run/pgsluice

# ---- purge ----
log "dpkg --purge $PKG"
dpkg --purge "$PKG" >&2
check "package purged" bash -c '! dpkg-query -W -f="\${db:Status-Abbrev}" pgsluice 2>/dev/null | grep -qv "^[up]n"'
for f in /usr/bin/pgsluice "$UNIT" "$MAN" /etc/pgsluice /usr/share/doc/pgsluice "$WANTS" /var/log/pgsluice; do
    check "$f is gone" bash -c '[[ ! -e "$1" && ! -L "$1" ]]' _ "$f"
done
check "no statoverride left" bash -c '! dpkg-statoverride --list "/etc/pgsluice*" | grep -q .'
check "the pgsluice system user stays (Debian keeps package users)" \
    bash -c 'getent passwd pgsluice >/dev/null'

echo "deb-test: $passed passed, 0 failed"
