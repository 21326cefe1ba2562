#!/usr/bin/env bash
# System calls per transaction, per call type, pgsluice (default shards and
# PGSLUICE_THREADS=1) beside PgBouncer 1.25.2, counted with perf's syscall
# tracepoints (strace as a fallback).
# Usage: benches/syscalls.sh   (see benches/syscalls.py for the knobs)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ensure_tools linux-perf strace
PGSLUICE_BIN="$(build_pgsluice)"
export PGSLUICE_BIN
exec python3 "$BENCH_DIR/syscalls.py" "$@"
