#!/usr/bin/env bash
# Profile-guided release build of pgsluice: the build benches/compare.sh
# measures and the Dockerfile ships. Prints the binary's path on stdout.
#
#   scripts/build-pgo.sh            # -> target/pgo/use/release/pgsluice
#
# Three steps: a release build instrumented with -Cprofile-generate; a
# training run of that binary in front of a throwaway PostgreSQL
# (benches/pgo_train.py: pgbench with each query protocol, one and many
# clients, TPC-B, a connection per transaction); a release build with
# -Cprofile-use of the merged profile. LLVM then knows which branches and
# calls are hot: it lays the relay's hot path out contiguously and moves the
# rest out of the way, which is what the pooler's cost at one client is made
# of (benches/COST.md: instructions per transaction; README "Release build").
# The plain `cargo build --release` stays a correct, slower build.
#
# Needs what benches/compare.sh needs (PostgreSQL, pgbench, python3; installed
# when missing as root on Debian) and llvm-profdata from rustup's llvm-tools
# component (added when missing). Takes two release builds and ~30 s of
# training. CARGO_TARGET_DIR is honoured; TRAIN_SECONDS sets each training
# workload's length (default 3).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../benches/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../benches/lib/common.sh"

ensure_postgres_tools
target_dir="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
work="$target_dir/pgo"
mkdir -p "$work"

# llvm-profdata must match rustc's LLVM (the raw profile format changes
# between LLVM versions), so it comes from the toolchain, not from apt.
host="$(rustc -vV | sed -n 's/^host: //p')"
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x "$profdata" ]]; then
    if ! command -v rustup >/dev/null 2>&1; then
        log "no $profdata and no rustup to add it (llvm-tools): use a rustup toolchain, or a plain cargo build --release"
        exit 1
    fi
    log "rustup component add llvm-tools (for llvm-profdata)"
    rustup component add llvm-tools >&2
fi

# The pooler runs as the postgres user when we are root: the raw profile
# directory must be writable by it wherever the repository lives. It is
# given at run time (LLVM_PROFILE_FILE, inherited by the pooler), not in
# RUSTFLAGS: flags that change from run to run would rebuild everything.
raw="$(mktemp -d /tmp/pgsluice-pgo.XXXXXX)"
chmod 1777 "$raw"
trap 'rm -rf "$raw"' EXIT

flags="${RUSTFLAGS:-}"
# The instrumented build keeps the release profile's fat LTO and single
# codegen unit: a profile taken from a build without them matched so little
# of the final build's code that cost.sh went 4,048 -> 5,419 instructions per
# transaction (the plain build's figure is 5,466).
log "PGO 1/3: instrumented release build (target dir $work/gen)"
(cd "$REPO_DIR" && RUSTFLAGS="$flags -Cprofile-generate=$work/gen-profiles" \
    cargo build --release --locked --bin pgsluice --target-dir "$work/gen") >&2

# A profile newer than the instrumented binary was made with that binary:
# cargo left it as it was, so the training would only repeat itself.
if [[ "$work/pgsluice.profdata" -nt "$work/gen/release/pgsluice" ]]; then
    log "PGO 2/3: the profile of this instrumented binary is already there"
else
    log "PGO 2/3: training run"
    LLVM_PROFILE_FILE="$raw/pgsluice-%p-%m.profraw" \
        python3 "$BENCH_DIR/pgo_train.py" "$work/gen/release/pgsluice" >&2
    shopt -s nullglob
    profiles=("$raw"/*.profraw)
    if [[ ${#profiles[@]} -eq 0 ]]; then
        log "the training run wrote no profile into $raw"
        exit 1
    fi
    "$profdata" merge -o "$work/pgsluice.profdata.new" "${profiles[@]}"
    mv "$work/pgsluice.profdata.new" "$work/pgsluice.profdata"
fi

log "PGO 3/3: release build with the profile (target dir $work/use)"
(cd "$REPO_DIR" && RUSTFLAGS="$flags -Cprofile-use=$work/pgsluice.profdata" \
    cargo build --release --locked --bin pgsluice --target-dir "$work/use") >&2
echo "$work/use/release/pgsluice"
