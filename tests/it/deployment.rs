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
        // CI (scripts/test.sh sets CI=1) must not skip silently.
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing (apt-get install systemd)"
        );
        eprintln!("systemd-analyze not installed: verify skipped outside CI");
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
        // Documentation= man pages need not be installed where tests run.
        .arg("--man=no")
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

/// The instruction lines of the Dockerfile (continuations joined).
fn dockerfile() -> Vec<String> {
    let text = file("Dockerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn dockerfile_builds_like_ci_and_runs_unprivileged() {
    let lines = dockerfile();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    let froms: Vec<&String> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[0].contains(" AS build"));
    assert!(froms[1].contains("-slim"));
    // CI (.ci/run) makes the profile-guided build with this same script; the
    // plain build is the fallback.
    assert!(
        lines.iter().any(|l| l.starts_with("RUN ")
            && l.contains("scripts/build-pgo.sh")
            && l.contains("cargo build --release --locked")),
        "the release build must be CI's command"
    );
    assert!(file(".ci/run").contains("scripts/build-pgo.sh"));
    let user = lines.iter().rfind(|l| l.starts_with("USER ")).unwrap();
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("EXPOSE ") && l.contains("6432"))
    );
    assert!(has("HEALTHCHECK ") && has("STOPSIGNAL SIGINT"));
    assert!(has("ENTRYPOINT [\"/usr/local/bin/pgsluice\"]"));
    assert!(has("CMD [\"/etc/pgsluice/pgsluice.ini\"]"));
    // Everything COPY takes from the context exists and is not ignored.
    let ignored: Vec<String> = file(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    assert!(ignored.iter().any(|i| i == "target"));
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = l
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for src in &words[1..words.len() - 1] {
            let path = format!("{}/{src}", env!("CARGO_MANIFEST_DIR"));
            assert!(std::path::Path::new(&path).exists(), "COPY {src}: missing");
            let top = src.split('/').next().unwrap();
            assert!(
                !ignored.iter().any(|i| i == top || i == src),
                "COPY {src}: ignored"
            );
        }
    }
}

#[test]
fn sample_configs_load() {
    let dir = env!("CARGO_MANIFEST_DIR");
    for (ini, userlist) in [
        ("etc/pgsluice.ini", "etc/userlist.txt"),
        ("etc/docker/pgsluice.ini", "etc/docker/userlist.txt"),
    ] {
        let sets = [("auth_file".to_string(), format!("{dir}/{userlist}"))];
        let loaded =
            pgsluice::config::load_with(std::path::Path::new(&format!("{dir}/{ini}")), &sets)
                .unwrap_or_else(|e| panic!("{ini}: {e}"));
        if ini.contains("docker") {
            let g = &loaded.config.general;
            assert_eq!(g.metrics_listen_addr.as_deref(), Some("*:9127"));
            assert!(g.log_json && g.listen_addr == ["0.0.0.0"] && g.listen_port == 6432);
        }
    }
}

/// The Docker sample serves a user out of the box: the official postgres
/// image's superuser with the password the README starts it with, over
/// SCRAM, through the real binary with the sample's settings (only where
/// PostgreSQL is and where to listen changed, as a container network
/// would have them).
#[tokio::test]
async fn docker_sample_serves_its_user() {
    use crate::support::{PgCluster, bounded, poll};
    bounded(async {
        let pg = PgCluster::shared();
        let dir = tempfile::tempdir().unwrap();
        let root = env!("CARGO_MANIFEST_DIR");
        let port = crate::support::pg::free_port();
        let userlist = dir.path().join("userlist.txt");
        std::fs::copy(format!("{root}/etc/docker/userlist.txt"), &userlist).unwrap();
        let ini = file("etc/docker/pgsluice.ini")
            .replace(
                "* = host=postgres port=5432",
                &format!("* = host=127.0.0.1 port={}", pg.port()),
            )
            .replace("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
            .replace("listen_port = 6432", &format!("listen_port = {port}"))
            .replace(
                "/etc/pgsluice/userlist.txt",
                &userlist.display().to_string(),
            )
            .replace("unix_socket_dir = /tmp", "unix_socket_dir =")
            .replace("metrics_listen_addr = *:9127", "");
        assert!(
            ini.contains(&format!("port={}", pg.port())),
            "sample changed"
        );
        let path = dir.path().join("pgsluice.ini");
        std::fs::write(&path, ini).unwrap();
        let _child = crate::support::pooler::spawn_binary(&path);
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(port)
            .dbname("postgres")
            .user("postgres")
            .password("postgres");
        let client = poll(200, std::time::Duration::from_millis(50), || async {
            let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.ok()?;
            tokio::spawn(conn);
            Some(c)
        })
        .await
        .expect("the sample never served postgres/postgres");
        let rows = client.simple_query("SELECT current_user").await.unwrap();
        assert_eq!(crate::support::rows_col0(&rows), ["postgres"]);
        // A wrong password is refused (the sample asks for SCRAM).
        cfg.password("wrong");
        let e = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .expect("refused");
        assert_eq!(crate::support::sqlstate(&e).as_deref(), Some("28P01"));
    })
    .await
}
