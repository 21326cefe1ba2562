#!/usr/bin/env bash
# The one test command (README and CI): installs what the tests need when it
# is missing, then runs the whole test suite against a real PostgreSQL that
# the test support starts itself (no running server needed).
#
#   scripts/test.sh [extra cargo test arguments]
#
# Needs: a Rust toolchain (cargo). PostgreSQL server and client packages are
# installed with apt-get when initdb or pgbench cannot be found (root or sudo);
# the Python and Node.js drivers by scripts/drivers.sh (PyPI, npm registry);
# slapd and ldap-utils, openssl, procps, nftables, chromium and systemd
# likewise when missing;
# the build's libpam0g-dev and libclang-dev by scripts/build-deps.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

have_pg_bin() {
    command -v "$1" >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

# libpam0g-dev and libclang-dev: the build links libpam (auth_type = pam).
scripts/build-deps.sh

if ! have_pg_bin initdb || ! have_pg_bin pgbench || ! have_pg_bin psql; then
    echo "test.sh: installing PostgreSQL (initdb/pgbench/psql missing)" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends postgresql postgresql-client
    # The Debian package starts a cluster of its own; the tests do not use it.
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "test.sh: installing systemd (systemd-analyze checks the unit file)" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends systemd
fi

# `kill` (procps; not in minimal Debian images): the tests signal the binary.
if ! type -P kill >/dev/null 2>&1; then
    echo "test.sh: installing procps (kill)" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends procps
fi

# `openssl`: tests/it/tls.rs makes X.509 v1 certificates with it (rcgen
# makes v3 only), as `openssl x509 -req` makes them for many users.
if ! type -P openssl >/dev/null 2>&1; then
    echo "test.sh: installing openssl" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends openssl
fi

# `nft` (Debian's nftables): tests/it/blackhole.rs drops a connection's
# packets on loopback to prove the TCP keepalive keys (needs root, as CI
# runs).
if ! type -P nft >/dev/null 2>&1; then
    echo "test.sh: installing nftables" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends nftables
fi

# Debian's chromium: tests/it/status_page.rs loads the status page in it
# (headless, no network needed).
if [ ! -x /usr/bin/chromium ]; then
    echo "test.sh: installing chromium (status page test)" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends chromium
fi

# Debian's slapd and ldap-utils (ldapadd): tests/it/ldap.rs authenticates
# against a throwaway OpenLDAP server that tests/it/support/ldap.rs starts.
# The package's own server is not started (no service manager here) and not
# used.
if [ ! -x /usr/sbin/slapd ] || ! type -P ldapadd >/dev/null 2>&1; then
    echo "test.sh: installing slapd and ldap-utils" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    # The package's post-install may fail to start its own server where no
    # service manager runs; the binaries are what the tests need.
    $sudo apt-get install -y -q --no-install-recommends slapd ldap-utils || [ -x /usr/sbin/slapd ]
fi

if [ "$(id -u)" -eq 0 ] && ! getent passwd postgres >/dev/null; then
    echo "test.sh: running as root needs the 'postgres' OS user (PostgreSQL refuses root)" >&2
    exit 1
fi

# Python (psycopg, asyncpg) and Node.js (node-postgres) drivers for
# tests/it/driver_scripts.rs, from the pins under tests/drivers/.
scripts/drivers.sh

# CI-friendly: no colour codes in logs, full backtraces on failure, and tools
# that are missing make the tests fail instead of skipping (see tests/it/support).
export CI="${CI:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

# Unit tests, then the integration tests: one binary (tests/it/) whose tests
# share one PostgreSQL cluster and run in parallel. Most of their time is
# spent waiting (timeouts, PostgreSQL, client tools), so 16 run at once
# whatever the core count (2 cores: 16 threads ~65 s, 4 threads ~95 s); more
# would crowd the shared cluster's max_connections.
threads="${RUST_TEST_THREADS:-16}"
exec cargo test --all-targets --locked "$@" -- --test-threads="$threads"
