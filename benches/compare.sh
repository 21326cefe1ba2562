#!/usr/bin/env bash
# One command: direct PostgreSQL vs PgBouncer vs pgsluice, side by side.
# See benches/README.md. Run as root on Debian 12 (installs what is missing).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

start=$(date +%s)
# shellcheck disable=SC2119 # no extra packages here
ensure_tools
PGSLUICE_BIN="$(build_pgsluice)"
export PGSLUICE_BIN

# compare.py owns every process and the temp dir and cleans them up itself
# (try/finally; SIGTERM/SIGHUP handlers; Ctrl-C as KeyboardInterrupt), so it
# replaces this shell: a signal sent to compare.sh's PID reaches it directly.
export BENCH_START="$start"
exec python3 "$BENCH_DIR/compare.py"
