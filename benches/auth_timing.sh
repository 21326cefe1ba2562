#!/usr/bin/env bash
# Failed SCRAM logins of a known and an unknown user, timed from the
# client's side: does the exchange tell which user names exist?
# Usage: benches/auth_timing.sh   (see benches/auth_timing.py for the knobs)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# shellcheck disable=SC2119 # no extra packages here
ensure_postgres_tools
PGSLUICE_BIN="$(build_pgsluice)"
export PGSLUICE_BIN
exec python3 "$BENCH_DIR/auth_timing.py" "$@"
