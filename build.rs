//! Build script: records which kind of build this is (plain, PGO-instrumented
//! or profile-guided; see scripts/build-pgo.sh) for `--version` and the start
//! log line, so a benchmark's record says which binary it measured.

fn main() {
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let kind = if flags.contains("profile-use=") {
        "profile-guided"
    } else if flags.contains("profile-generate") {
        "PGO-instrumented"
    } else {
        "plain"
    };
    println!("cargo::rustc-env=PGSLUICE_BUILD={kind}");
}
