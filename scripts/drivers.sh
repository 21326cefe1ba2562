#!/usr/bin/env bash
# Installs the Python and Node.js drivers that tests/it/driver_scripts.rs runs
# through the pooler, from committed pins:
#   - target/drivers/venv: a virtualenv with tests/drivers/python/requirements.txt
#   - tests/drivers/node/node_modules: `npm ci` from package-lock.json
#   - pgjdbc: Debian's libpostgresql-jdbc-java (/usr/share/java/postgresql.jar)
#     and a Java runtime, for tests/drivers/java/JdbcCheck.java
# Installs python3-venv / nodejs / npm / Java with apt-get when missing.
# Does nothing when both are already installed from the current files.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

apt_install() {
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "$@"
}

stamp_of() { sha256sum "$1" | cut -d' ' -f1; }

venv=target/drivers/venv
req=tests/drivers/python/requirements.txt
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$(stamp_of "$req")" ]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        echo "drivers.sh: installing python3-venv" >&2
        apt_install python3 python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    stamp_of "$req" >"$venv/.stamp"
fi

node_dir=tests/drivers/node
if [ "$(cat "$node_dir/node_modules/.stamp" 2>/dev/null)" != "$(stamp_of "$node_dir/package-lock.json")" ]; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "drivers.sh: installing nodejs and npm" >&2
        apt_install nodejs npm
    fi
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
    stamp_of "$node_dir/package-lock.json" >"$node_dir/node_modules/.stamp"
fi

if [ ! -f /usr/share/java/postgresql.jar ] || ! command -v java >/dev/null 2>&1; then
    echo "drivers.sh: installing pgjdbc (libpostgresql-jdbc-java) and a Java runtime" >&2
    pkgs=(libpostgresql-jdbc-java)
    command -v java >/dev/null 2>&1 || pkgs+=(default-jre-headless)
    apt_install "${pkgs[@]}"
fi
