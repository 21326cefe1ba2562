//! The Kubernetes files stay valid and true to pgsluice: the plain manifests
//! (deploy/kubernetes/) and the Helm chart (deploy/helm/pgsluice/) pass
//! `scripts/k8s-validate.sh` (strict Kubernetes schemas, offline; it fails
//! on a broken copy), and what the pods do agrees with the pgsluice.ini
//! they mount: the config loads as the binary loads it, the ports and
//! probes are the ones it listens on, and the preStop hook and the reload
//! sidecar speak admin console commands that pgsluice has, on its Unix
//! socket, with tools the image has.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pgsluice::admin::{Command as Admin, Control};
use pgsluice::context::ShutdownMode;
use serde_json::Value;

fn file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Run the script on `deploy` (a deploy/ directory), writing the objects
/// to `out`; whether it passed, and what it printed.
fn validate(deploy: &Path, out: &Path) -> (bool, String) {
    let output = Command::new(format!(
        "{}/scripts/k8s-validate.sh",
        env!("CARGO_MANIFEST_DIR")
    ))
    .env("K8S_DEPLOY_DIR", deploy)
    .env("K8S_VALIDATE_OUT", out)
    .output()
    .expect("run scripts/k8s-validate.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The objects of each set the script checked ("plain", "helm-default",
/// "helm-custom"), from one run of the script on the repository's files.
fn sets() -> &'static Vec<(&'static str, Vec<Value>)> {
    static SETS: OnceLock<Vec<(&'static str, Vec<Value>)>> = OnceLock::new();
    SETS.get_or_init(|| {
        let out = tempfile::tempdir().unwrap();
        let deploy = PathBuf::from(format!("{}/deploy", env!("CARGO_MANIFEST_DIR")));
        let (ok, text) = validate(&deploy, out.path());
        assert!(ok, "scripts/k8s-validate.sh failed:\n{text}");
        ["plain", "helm-default", "helm-custom"]
            .into_iter()
            .map(|name| {
                let json = std::fs::read_to_string(out.path().join(format!("{name}.json")))
                    .unwrap_or_else(|e| panic!("{name}.json: {e}"));
                let objs: Vec<Value> = serde_json::from_str(&json).unwrap();
                (name, objs)
            })
            .collect()
    })
}

fn one<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objs.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected");
    found[0]
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn container<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
}

fn container_port(c: &Value, name: &str) -> u64 {
    c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {name}"))
}

fn mount_path<'a>(c: &'a Value, volume: &str) -> &'a str {
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .map(|m| str_of(&m["mountPath"]))
        .unwrap_or_else(|| panic!("{} does not mount {volume}", c["name"]))
}

/// The script of a `/bin/sh -c SCRIPT` command.
fn shell_script(command: &Value) -> &str {
    let argv = command.as_array().unwrap();
    assert_eq!(
        (&argv[0], &argv[1]),
        (&Value::from("/bin/sh"), &Value::from("-c"))
    );
    str_of(&argv[2])
}

/// The value of `key = value` in an ini text.
fn ini_value<'a>(ini: &'a str, key: &str) -> &'a str {
    ini.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .unwrap_or_else(|| panic!("{key} missing from pgsluice.ini"))
}

#[test]
fn manifests_and_chart_pass_strict_validation() {
    let sets = sets();
    let kinds = |name: &str| {
        let objs = &sets.iter().find(|(n, _)| *n == name).unwrap().1;
        let mut k: Vec<&str> = objs.iter().map(|o| str_of(&o["kind"])).collect();
        k.sort();
        k
    };
    let all = [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Secret",
        "Service",
    ];
    assert_eq!(kinds("plain"), all);
    assert_eq!(kinds("helm-default"), all);
    // An existing Secret and no PodDisruptionBudget.
    assert_eq!(kinds("helm-custom"), ["ConfigMap", "Deployment", "Service"]);
}

/// Copy a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn validation_fails_on_a_broken_copy() {
    sets(); // the tools are installed, the real files pass
    let dir = tempfile::tempdir().unwrap();
    let deploy = dir.path().join("deploy");
    copy_tree(
        Path::new(&format!("{}/deploy", env!("CARGO_MANIFEST_DIR"))),
        &deploy,
    );
    // A field Kubernetes does not have, in the chart's template only.
    let template = deploy.join("helm/pgsluice/templates/deployment.yaml");
    let text = std::fs::read_to_string(&template).unwrap();
    let broken = text.replacen(
        "      automountServiceAccountToken: false\n",
        "      automountServiceAccountToken: false\n      hostNetworking: true\n",
        1,
    );
    assert_ne!(broken, text);
    std::fs::write(&template, broken).unwrap();
    let (ok, text) = validate(&deploy, &dir.path().join("out"));
    assert!(!ok, "a Deployment with an unknown field passed:\n{text}");
    assert!(text.contains("'hostNetworking' was unexpected"), "{text}");
}

#[test]
fn config_loads_and_matches_ports_probes_and_mounts() {
    let dir = tempfile::tempdir().unwrap();
    for (name, objs) in sets() {
        let ini = str_of(&one(objs, "ConfigMap")["data"]["pgsluice.ini"]);
        let deployment = one(objs, "Deployment");
        let pgsluice = container(deployment, "pgsluice").expect("container pgsluice");
        // The auth file: the chart's Secret, or (custom values: a Secret of
        // the user's own) an empty one.
        let userlist = objs
            .iter()
            .find(|o| o["kind"] == "Secret")
            .map(|s| str_of(&s["stringData"]["userlist.txt"]).to_string())
            .unwrap_or_default();
        let ini_path = dir.path().join(format!("{name}.ini"));
        let userlist_path = dir.path().join(format!("{name}.userlist.txt"));
        std::fs::write(&ini_path, ini).unwrap();
        std::fs::write(&userlist_path, userlist).unwrap();
        let sets = [("auth_file".to_string(), userlist_path.display().to_string())];
        let loaded = pgsluice::config::load_with(&ini_path, &sets)
            .unwrap_or_else(|e| panic!("{name}: pgsluice.ini: {e}"));
        assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
        let g = &loaded.config.general;

        // Where the files are: the config volume holds pgsluice.ini (the
        // argument) and the auth_file.
        let config_dir = mount_path(pgsluice, "config");
        assert_eq!(
            pgsluice["args"],
            serde_json::json!([format!("{config_dir}/pgsluice.ini")]),
            "{name}"
        );
        assert_eq!(
            ini_value(ini, "auth_file"),
            format!("{config_dir}/userlist.txt"),
            "{name}"
        );
        // The Unix socket is in the volume the sidecar shares.
        let socket_dir = mount_path(pgsluice, "run");
        assert_eq!(g.unix_socket_dir, socket_dir, "{name}");

        // Ports: the pooler's, and the metrics listener's with the probes.
        assert_eq!(g.listen_addr, ["0.0.0.0"], "{name}");
        assert_eq!(
            container_port(pgsluice, "postgres"),
            u64::from(g.listen_port),
            "{name}"
        );
        let metrics = g
            .metrics_listen_addr
            .as_deref()
            .expect("metrics_listen_addr");
        let (host, port) = metrics.rsplit_once(':').unwrap();
        assert!(host == "*" || host == "0.0.0.0", "{name}: {metrics}");
        assert_eq!(
            container_port(pgsluice, "metrics"),
            port.parse::<u64>().unwrap(),
            "{name}"
        );
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = &pgsluice[probe]["httpGet"];
            assert_eq!(
                (str_of(&get["path"]), str_of(&get["port"])),
                (path, "metrics")
            );
        }
        let service = one(objs, "Service");
        for p in service["spec"]["ports"].as_array().unwrap() {
            container_port(pgsluice, str_of(&p["targetPort"]));
        }

        // The preStop hook and the sidecar use the admin console on that
        // socket and port.
        let admin = format!(
            "psql -X -q -At -h {socket_dir} -p {} -U pgbouncer -d 'dbname=pgbouncer connect_timeout=5'",
            g.listen_port
        );
        let pre_stop = shell_script(&pgsluice["lifecycle"]["preStop"]["exec"]["command"]);
        check_pre_stop(name, pre_stop, &admin, deployment);
        if let Some(reloader) = container(deployment, "config-reloader") {
            assert_eq!(mount_path(reloader, "config"), config_dir);
            assert_eq!(mount_path(reloader, "run"), socket_dir);
            assert_eq!(reloader["image"], pgsluice["image"]);
            let script = shell_script(&reloader["command"]);
            assert!(
                script.contains(&format!("link={config_dir}/..data")),
                "{script}"
            );
            let commands = admin_commands(script);
            assert_eq!(commands, [Admin::Control(Control::Reload)], "{name}");
            assert!(
                script.contains(&format!("timeout 10 {admin} -c 'RELOAD'")),
                "{script}"
            );
        } else {
            assert_eq!(*name, "helm-custom", "the sidecar is on by default");
        }

        // Non-root, read-only root filesystem.
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
        for c in pod["containers"].as_array().unwrap() {
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        }
    }
}

/// The admin console commands a script sends: every `admin '...'` and
/// `-c '...'`, parsed by the console's own parser.
fn admin_commands(script: &str) -> Vec<Admin> {
    let mut found = Vec::new();
    for marker in ["admin '", "-c '"] {
        for (at, _) in script.match_indices(marker) {
            let rest = &script[at + marker.len()..];
            let sql = &rest[..rest.find('\'').unwrap()];
            let cmd = pgsluice::admin::parse(sql)
                .unwrap_or_else(|e| panic!("{sql:?} is no admin console command: {e:?}"));
            found.push(cmd);
        }
    }
    found
}

/// The drain: SHUTDOWN WAIT_FOR_CLIENTS, SHOW CLIENTS while waiting, then
/// PAUSE; the grace period covers the delay, the wait, the PAUSE and a
/// margin for the stop signal.
fn check_pre_stop(name: &str, script: &str, admin: &str, deployment: &Value) {
    assert!(
        script.contains(&format!("admin() {{ timeout 10 {admin} -c \"$1\"; }}")),
        "{name}: {script}"
    );
    assert!(script.contains(&format!("{admin} -c 'PAUSE'")), "{script}");
    let commands = admin_commands(script);
    assert_eq!(
        commands,
        [
            Admin::Control(Control::Shutdown(ShutdownMode::WaitForClients)),
            Admin::Show("clients".into()),
            Admin::Control(Control::Pause(None)),
        ],
        "{name}"
    );
    let number_after = |prefix: &str| -> u64 {
        let at = script
            .find(prefix)
            .unwrap_or_else(|| panic!("{name}: {prefix:?} missing: {script}"));
        let digits: String = script[at + prefix.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    let delay = number_after("sleep ");
    let drain = number_after("$(date +%s) + ");
    let pause_line = script.lines().find(|l| l.contains("-c 'PAUSE'")).unwrap();
    let pause: u64 = pause_line
        .trim()
        .strip_prefix("timeout ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name}: PAUSE without a timeout: {pause_line}"));
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(grace >= delay + drain + pause + 5, "{name}: {grace} s");
}

#[test]
fn chart_tracks_the_crate_and_image() {
    let chart = file("deploy/helm/pgsluice/Chart.yaml");
    assert!(
        chart
            .lines()
            .any(|l| l == format!("appVersion: \"{}\"", env!("CARGO_PKG_VERSION"))),
        "Chart.yaml's appVersion must be pgsluice's version"
    );
    let (_, plain) = &sets()[0];
    let image = str_of(&container(one(plain, "Deployment"), "pgsluice").unwrap()["image"]);
    assert!(image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))));
    // The hooks run psql, awk, timeout and date in the image; the image's run
    // stage installs postgresql-client (the rest is in Debian's base).
    let dockerfile = file("Dockerfile");
    let run_stage = &dockerfile[dockerfile.rfind("\nFROM ").unwrap()..];
    assert!(run_stage.contains("postgresql-client"), "psql is missing");
    assert!(run_stage.contains("bookworm-slim"));
    // The sidecar's and hook's user is the image's pgsluice user.
    assert!(run_stage.contains("USER pgsluice:pgsluice"));
}
