//! The deployment files stay true: the systemd unit has what README
//! promises and passes `systemd-analyze verify` (when systemd's tools are
//! installed) with the freshly built binary in place of the installed one.

use std::process::Command;

fn file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The `Key=Value` lines of a unit file (comments dropped).
fn directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn systemd_unit_is_notify_reloadable_and_hardened() {
    let unit = file("systemd/pgsluice.service");
    let d = directives(&unit);
    let get = |k: &str| {
        d.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{k} missing from the unit"))
    };
    assert_eq!(get("Type"), "notify");
    assert_eq!(get("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(get("KillSignal"), "SIGINT");
    assert_eq!(get("User"), "pgsluice");
    assert!(get("LimitNOFILE").parse::<u32>().unwrap() >= 65536);
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(get(k), v, "{k}");
    }
    assert!(get("ReadWritePaths").contains("/var/log/pgsluice"));
    assert!(get("ReadWritePaths").contains("/run/pgsluice"));
}

#[test]
fn systemd_unit_verifies() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: verify skipped");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit = file("systemd/pgsluice.service")
        .replace("/usr/local/bin/pgsluice", env!("CARGO_BIN_EXE_pgsluice"));
    let path = dir.path().join("pgsluice.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}
