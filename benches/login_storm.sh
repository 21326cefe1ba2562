#!/usr/bin/env bash
# Login storms with auth_query, pgsluice vs PgBouncer 1.25.2 (pgbench -C).
# Usage: benches/login_storm.sh   (see benches/login_storm.py for the knobs)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# shellcheck disable=SC2119 # no extra packages here
ensure_tools
PGSLUICE_BIN="$(build_pgsluice)"
export PGSLUICE_BIN
export PGBOUNCER_BIN="${PGBOUNCER_BIN:-$(command -v pgbouncer)}"
exec python3 "$BENCH_DIR/login_storm.py" "$@"
