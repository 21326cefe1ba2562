#!/usr/bin/env bash
# A PostgreSQL fast restart under load, pgsluice vs PgBouncer 1.25.2: failed
# logins and transactions, and how fast each serves again.
# Usage: benches/restart.sh   (see benches/restart.py for the knobs)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# shellcheck disable=SC2119 # no extra packages here
ensure_tools
PGSLUICE_BIN="$(build_pgsluice)"
export PGSLUICE_BIN
# ensure_tools built PgBouncer 1.25.2 from ../shared/conformance/ (exported
# PGBOUNCER_BIN) where it could; else Debian's.
export PGBOUNCER_BIN="${PGBOUNCER_BIN:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}"
exec python3 "$BENCH_DIR/restart.py" "$@"
