#!/usr/bin/env bash
# CPU floor of S4 (pgbench -S -C): the least a pooler must spend per
# connection + transaction, measured with examples/floor_proxy.rs beside
# PgBouncer and pgsluice in one run. See benches/README.md.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ensure_tools
PGSLUICE_BIN="$(build_pgsluice)"
export PGSLUICE_BIN
target_dir="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
(cd "$REPO_DIR" && cargo build --release --example floor_proxy) >&2
export FLOOR_BIN="$target_dir/release/examples/floor_proxy"
exec python3 "$BENCH_DIR/floor.py" "$@"
