# shellcheck shell=bash
# Shared steps for benches/compare.sh and benches/cost.sh: install what is
# missing (Debian 12, as root) and build pgsluice in release mode.
# Sourced, not executed.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
export BENCH_DIR REPO_DIR

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# pg_bindir: directory holding initdb/postgres/pgbench of the newest
# installed PostgreSQL (Debian keeps them out of PATH).
pg_bindir() {
    local d
    d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
    if [[ -n "$d" && -x "$d/initdb" ]]; then
        echo "$d"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

apt_updated=0
apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages ($*) and not root: install them by hand"
        return 1
    fi
    if [[ $apt_updated -eq 0 ]]; then
        log "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The pgbouncer package enables and starts a system service on port 6432;
# it must not run beside the benchmark (it would take CPU and a port).
stop_system_pgbouncer() {
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        systemctl stop pgbouncer.service >/dev/null 2>&1 || true
        systemctl disable pgbouncer.service >/dev/null 2>&1 || true
    fi
    if [[ -x /etc/init.d/pgbouncer ]]; then
        /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
        update-rc.d pgbouncer disable >/dev/null 2>&1 || true
    fi
}

# ensure_postgres_tools EXTRA_PKG...: PostgreSQL server + client (pgbench),
# python3, the postgres OS user when root, plus any extra Debian packages.
ensure_postgres_tools() {
    local missing=()
    [[ -n "$(pg_bindir)" ]] || missing+=(postgresql)
    if [[ -z "$(pg_bindir)" || ! -x "$(pg_bindir)/pgbench" ]] && ! command -v pgbench >/dev/null 2>&1; then
        missing+=(postgresql-client)
    fi
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    local p
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}"
    fi
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        log "no 'postgres' OS user: PostgreSQL cannot run as root"
        return 1
    fi
}

# build_pgbouncer: PgBouncer 1.25.2 built from the conformance archive
# (../shared/conformance/pgbouncer-1.25.2.tar.gz beside the repository, or
# PGBOUNCER_ARCHIVE) with OpenSSL and c-ares, into the target dir, once;
# exports PGBOUNCER_BIN (which the harness prefers to Debian's 1.18). Keeps
# an existing PGBOUNCER_BIN. Without the archive, Debian's package is used.
build_pgbouncer() {
    if [[ -n "${PGBOUNCER_BIN:-}" ]]; then
        return 0
    fi
    local archive="${PGBOUNCER_ARCHIVE:-$REPO_DIR/../shared/conformance/pgbouncer-1.25.2.tar.gz}"
    local dir="${CARGO_TARGET_DIR:-$REPO_DIR/target}/pgbouncer-1.25.2"
    if [[ ! -x "$dir/pgbouncer" ]]; then
        if [[ ! -f "$archive" ]]; then
            log "no PgBouncer 1.25.2 archive at $archive: measuring Debian's pgbouncer"
            return 0
        fi
        local pkg missing=()
        for pkg in libevent-dev libssl-dev libc-ares-dev pkg-config autoconf automake libtool make gcc; do
            dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
        done
        if [[ ${#missing[@]} -gt 0 ]]; then
            apt_install "${missing[@]}"
        fi
        log "building PgBouncer 1.25.2 (OpenSSL, c-ares) in $dir"
        rm -rf "$dir" && mkdir -p "$dir"
        tar xzf "$archive" -C "$dir" --strip-components=1
        if ! (cd "$dir" && ./autogen.sh && ./configure --with-openssl --with-cares \
                && make -j"$(nproc)" pgbouncer) >"$dir.build.log" 2>&1; then
            log "PgBouncer 1.25.2 build failed (see $dir.build.log): measuring Debian's pgbouncer"
            return 0
        fi
    fi
    export PGBOUNCER_BIN="$dir/pgbouncer"
}

# ensure_tools EXTRA_PKG...: ensure_postgres_tools plus PgBouncer.
ensure_tools() {
    ensure_postgres_tools "$@"
    build_pgbouncer
    if ! command -v pgbouncer >/dev/null 2>&1 && [[ ! -x /usr/sbin/pgbouncer ]]; then
        apt_install pgbouncer
        stop_system_pgbouncer
    fi
    # A pgbouncer service left running from an earlier install: stop it too.
    if pgrep -x pgbouncer >/dev/null 2>&1 && [[ -f /etc/pgbouncer/pgbouncer.ini ]]; then
        stop_system_pgbouncer
    fi
}

# build_pgsluice: the release build to measure; prints the binary path on
# stdout, or nothing when the build failed (the harness then marks pgsluice
# failed). PGO=1 (the default): the profile-guided build of
# scripts/build-pgo.sh, the one the Dockerfile ships; PGO=0: a plain
# `cargo build --release`. SKIP_BUILD=1 measures what was built last.
build_pgsluice() {
    local target_dir="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
    local bin="$target_dir/release/pgsluice"
    if [[ "${PGO:-1}" != 0 ]]; then
        bin="$target_dir/pgo/use/release/pgsluice"
        if [[ "${SKIP_BUILD:-0}" != 1 ]] && ! "$REPO_DIR/scripts/build-pgo.sh" >/dev/null; then
            log "profile-guided build failed: its column will read 'failed' (PGO=0 measures a plain build)"
            return 0
        fi
    elif [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        log "cargo build --release (target dir $target_dir)"
        if ! (cd "$REPO_DIR" && cargo build --release --bin pgsluice) >&2; then
            log "pgsluice build failed: its column will read 'failed'"
            return 0
        fi
    fi
    if [[ -x "$bin" ]]; then
        echo "$bin"
    else
        log "no pgsluice binary at $bin: its column will read 'failed'"
    fi
}
