#!/usr/bin/env bash
# One command: direct PostgreSQL vs PgBouncer vs pgsluice, side by side.
# See benches/README.md. Run as root on Debian 12 (installs what is missing).
set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

start=$(date +%s)
# shellcheck disable=SC2119 # no extra packages here
ensure_tools
PGSLUICE_BIN="$(build_pgsluice)"
export PGSLUICE_BIN

# compare.py owns every process and the temp dir and cleans them up itself
# (try/finally, SIGTERM/SIGHUP handlers); Ctrl-C reaches it as KeyboardInterrupt.
status=0
python3 "$BENCH_DIR/compare.py" || status=$?
log "compare.sh finished in $(( $(date +%s) - start )) s (status $status)"
exit "$status"
