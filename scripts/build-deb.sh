#!/usr/bin/env bash
# Debian package of pgsluice, made with cargo-deb. Prints the .deb's path on
# stdout (everything else goes to stderr).
#
#   scripts/build-deb.sh                          # builds the PGO binary first
#   PGSLUICE_BIN=target/pgo/use/release/pgsluice scripts/build-deb.sh
#
# The package (see packaging/cargo-deb.toml): /usr/bin/pgsluice, the unit
# /lib/systemd/system/pgsluice.service (systemd/pgsluice.service with
# ExecStart=/usr/bin/pgsluice), the man page pgsluice(1) made here with
# help2man from --help, /etc/pgsluice/{pgsluice.ini,userlist.txt} as
# conffiles, and maintainer scripts that add the pgsluice system user and
# enable the unit (packaging/maintainer-scripts).
#
# PGSLUICE_BIN: the binary to package; without it scripts/build-pgo.sh
# makes the profile-guided one (the build that ships; ~10 minutes from
# scratch on two cores). cargo-deb (pinned below) is installed with
# `cargo install` into ~/.cargo/bin when that version is missing, and
# help2man with apt-get (as root on Debian). Output: target/debian/, the
# package and pgsluice-dbgsym_*.ddeb (the binary is stripped; its debug
# information, line tables, goes there).
set -euo pipefail

CARGO_DEB_VERSION=3.8.0

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_DIR"

log() { printf '[build-deb %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

# ---- tools ----
if [[ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]]; then
    log "cargo install cargo-deb $CARGO_DEB_VERSION (a few minutes, once)"
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi
for tool in help2man dpkg-shlibdeps; do
    command -v "$tool" >/dev/null 2>&1 && continue
    pkg=help2man
    [[ $tool == dpkg-shlibdeps ]] && pkg=dpkg-dev
    [[ $(id -u) -eq 0 ]] || die "$tool is missing: apt-get install $pkg"
    log "apt-get install $pkg"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "$pkg" >&2
done

# ---- the binary ----
bin="${PGSLUICE_BIN:-}"
if [[ -z "$bin" ]]; then
    log "no PGSLUICE_BIN: profile-guided build (scripts/build-pgo.sh)"
    bin="$(scripts/build-pgo.sh)"
fi
[[ -x "$bin" ]] || die "not an executable: $bin"
"$bin" --version >/dev/null || die "$bin --version failed"
log "packaging $bin ($("$bin" --version | tail -n 1))"

work="$REPO_DIR/target/deb"
rm -rf "$work"
mkdir -p "$work"

# cargo-deb takes the binary from <target dir>/release/pgsluice: stage a
# copy and make that directory its target dir.
mkdir -p "$work/stage/release"
cp "$bin" "$work/stage/release/pgsluice"

# ---- generated assets (paths as in packaging/cargo-deb.toml) ----
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
[[ -n "$version" ]] || die "no version in Cargo.toml"

# The man page: help2man runs the binary's --help; the sections --help does
# not have (signals, exit status, files, examples) are in pgsluice.h2m. The
# date is the last commit's, so that the page does not change by itself.
SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || date +%s)" \
    help2man --no-info --no-discard-stderr --section=1 --source=pgsluice \
    --manual="User Commands" --version-string="$version" \
    --include=packaging/pgsluice.h2m --output="$work/pgsluice.1" \
    "$work/stage/release/pgsluice"
# A help2man include attaches text to a section or a pattern and drops it
# silently when neither matches: check that it all made it.
for want in '^\.SH SIGNALS' '^\.SH "EXIT STATUS"' '^\.SH FILES' '^\.SH EXAMPLES' \
    '^\.SH "SEE ALSO"' 'sits between' 'hash\\-password'; do
    grep -q -- "$want" "$work/pgsluice.1" || die "man page: no match for $want"
done

# The unit: the repository's, with the package's paths, and its header
# (manual install steps) replaced.
{
    echo "# pgsluice as a systemd service, from the Debian package pgsluice."
    echo "# Configuration: /etc/pgsluice/pgsluice.ini (see pgsluice(1))."
    echo "# Reload the configuration: systemctl reload pgsluice (SIGHUP)."
    echo "# Local changes: systemctl edit pgsluice (this file is replaced on upgrade)."
    sed -n '/^\[Unit\]$/,$p' systemd/pgsluice.service \
        | sed -e 's#/usr/local/bin/pgsluice#/usr/bin/pgsluice#g' \
            -e 's#^Documentation=.*#Documentation=man:pgsluice(1)#'
} > "$work/pgsluice.service"
for want in 'ExecStart=/usr/bin/pgsluice /etc/pgsluice/pgsluice.ini' \
    'User=pgsluice' 'Group=pgsluice' 'Documentation=man:pgsluice(1)'; do
    grep -qxF "$want" "$work/pgsluice.service" || die "unit: no line $want"
done
if grep -q '/usr/local' "$work/pgsluice.service"; then
    die "unit: a /usr/local path is left"
fi

# The README (the reference the man page points to), compressed as Debian
# wants documentation.
gzip -9n <README.md >"$work/README.md.gz"

# ---- the manifest cargo-deb reads ----
# Cargo.toml with packaging/cargo-deb.toml added, in a directory of its own
# (Cargo.toml itself is not changed), unless Cargo.toml has the settings.
manifest="$REPO_DIR/Cargo.toml"
if ! grep -q '^\[package\.metadata\.deb\]' Cargo.toml; then
    shadow="$work/manifest"
    mkdir -p "$shadow"
    ln -s "$REPO_DIR/src" "$REPO_DIR/packaging" "$shadow/"
    ln -s "$REPO_DIR/target" "$shadow/target"
    [[ -e build.rs ]] && ln -s "$REPO_DIR/build.rs" "$shadow/"
    # Keys before the first table: into [package], each unless set there.
    awk -v extra="packaging/cargo-deb.toml" '
        BEGIN {
            while ((getline line < extra) > 0) {
                if (line ~ /^\[/) break
                if (line ~ /^[a-z-]+ *=/) {
                    key = line; sub(/ *=.*/, "", key)
                    keys[++n] = key; lines[key] = line
                }
            }
        }
        { text[NR] = $0 }
        /^\[/ { section = $0 }
        section == "[package]" && /^[a-z-]+ *=/ {
            k = $0; sub(/ *=.*/, "", k); set[k] = 1
        }
        END {
            for (i = 1; i <= NR; i++) {
                print text[i]
                if (text[i] == "[package]")
                    for (j = 1; j <= n; j++)
                        if (!(keys[j] in set)) print lines[keys[j]]
            }
        }' Cargo.toml > "$shadow/Cargo.toml"
    # The tables: appended.
    { echo; sed -n '/^\[/,$p' packaging/cargo-deb.toml; } >> "$shadow/Cargo.toml"
    manifest="$shadow/Cargo.toml"
fi

# ---- the package ----
mkdir -p target/debian
log "cargo deb --no-build (manifest $manifest)"
CARGO_TARGET_DIR="$work/stage" cargo deb --no-build --dbgsym --manifest-path "$manifest" \
    --output "$REPO_DIR/target/debian/" >"$work/cargo-deb.out"
# It prints the package's path, and before it the debug symbols' package
# (pgsluice-dbgsym, .ddeb: the binary is shipped stripped).
deb="$(grep '\.deb$' "$work/cargo-deb.out" | tail -n 1)"
[[ -n "$deb" && -f "$deb" ]] || die "cargo deb printed no package path: $(cat "$work/cargo-deb.out")"
dbgsym="$(grep '\.ddeb$' "$work/cargo-deb.out" | tail -n 1)"
if [[ -n "$dbgsym" ]]; then log "debug symbols: $dbgsym"; fi
log "$(dpkg-deb --field "$deb" Package Version Architecture Depends | tr '\n' ' ')"
echo "$deb"
