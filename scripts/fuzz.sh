#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of outside input (fuzz/, cargo
# fuzz with libFuzzer; entry points in src/fuzz.rs).
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
#
# Runs each target (all by default) for SECONDS (30), starting from the
# seed corpus committed in fuzz/corpus/<target> (read only; what the run
# learns goes to target/fuzz/corpus/<target>). First every input in
# fuzz/regressions/<target> (crashes found earlier) is replayed. Fails on
# a crash, a panic, an input slower than 10 s, or more than 512 MB
# allocated at once (libFuzzer's -malloc_limit_mb) or 2 GB of RSS; the
# input is saved in target/fuzz/artifacts/<target>/.
#
# Built without a sanitizer (`--sanitizer none`): the crate's only unsafe
# code is one read into a buffer's spare capacity (transport/sys.rs), which
# no target reaches, and it builds on the stable toolchain. Installs
# cargo-fuzz when missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
seconds="${1:-30}"
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version 0.13.2
fi

all=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^pgsluice-fuzz$')
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    read -r -a targets <<<"$(echo $all)"
fi

cd fuzz
opts=(--sanitizer none --release --target-dir "$root/target/fuzz-build")
cargo fuzz build "${opts[@]}"
for t in "${targets[@]}"; do
    corpus="$root/target/fuzz/corpus/$t"
    artifacts="$root/target/fuzz/artifacts/$t/"
    log="$root/target/fuzz/$t.log"
    mkdir -p "$corpus" "$artifacts"
    if compgen -G "regressions/$t/*" >/dev/null; then
        echo "fuzz.sh: $t: replaying regressions/$t" >&2
        cargo fuzz run "${opts[@]}" "$t" "regressions/$t" -- -runs=0 \
            -artifact_prefix="$artifacts"
    fi
    echo "fuzz.sh: $t: ${seconds}s" >&2
    status=0
    cargo fuzz run "${opts[@]}" "$t" "$corpus" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=512 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added)" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "$log" >&2
        echo "fuzz.sh: $t FAILED (status $status); the input is in $artifacts" >&2
        exit 1
    fi
done
echo "fuzz.sh: ${#targets[@]} targets, ${seconds}s each: no crash" >&2
