#!/usr/bin/env bash
# Read/write splitting under a read-heavy mix: share of reads on the standbys
# and tps against the primary alone. Usage: benches/split_mix.sh
# (knobs in benches/split_mix.py: DURATION, CLIENTS, SCALE, MODE).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# shellcheck disable=SC2119 # no extra packages here
ensure_tools
PGSLUICE_BIN="$(build_pgsluice)"
export PGSLUICE_BIN
exec python3 "$BENCH_DIR/split_mix.py" "$@"
