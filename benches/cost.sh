#!/usr/bin/env bash
# Deterministic cost check: pgsluice instructions per transaction under callgrind.
# Usage: benches/cost.sh [--pooler pgsluice|pgbouncer] [--tool callgrind|perf|auto]
# See benches/README.md.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ensure_tools valgrind strace
PGSLUICE_BIN="$(build_pgsluice)"
export PGSLUICE_BIN
exec python3 "$BENCH_DIR/cost.py" "$@"
