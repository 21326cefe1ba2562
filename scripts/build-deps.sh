#!/usr/bin/env bash
# The system packages building pgsluice needs beyond a Rust toolchain,
# installed with apt-get when missing (root or sudo): libpam0g-dev (auth_type
# = pam links libpam) and libclang-dev (pam-sys makes its bindings with
# bindgen at build time). `cargo build --no-default-features` builds without
# PAM and needs neither.
set -euo pipefail

missing=()
for pkg in libpam0g-dev libclang-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "build-deps.sh: installing ${missing[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
