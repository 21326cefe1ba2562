//! systemd's notify protocol, against a real Unix datagram socket: the
//! binary sends READY=1 once it accepts connections, RELOADING=1 (with
//! MONOTONIC_USEC) then READY=1 around a SIGHUP reload, STOPPING=1 on
//! SIGTERM; also to an abstract socket name (`@name`).

use crate::support;

use std::process::Stdio;
use std::time::Duration;

use support::{PoolerBuilder, bounded, pg::free_port};
use tokio::net::UnixDatagram;
use tokio::process::Child;

async fn recv(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), socket.recv(&mut buf))
        .await
        .expect("no notification within 20 s")
        .unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn lines(msg: &str) -> Vec<&str> {
    msg.lines().collect()
}

/// Start the binary with NOTIFY_SOCKET = `notify_socket` (no PostgreSQL
/// needed: nobody logs in). Returns the child, its port and its files.
fn start(notify_socket: &str) -> (Child, u16, tempfile::TempDir) {
    let port = free_port();
    let (dir, ini) = PoolerBuilder::new()
        .set("listen_port", &port.to_string())
        .database("nowhere", "host=127.0.0.1 port=1 dbname=nowhere")
        .write();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .arg(&ini)
        .env("NOTIFY_SOCKET", notify_socket)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, port, dir)
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .expect("run kill(1) (procps: scripts/test.sh installs it)");
    assert!(ok.success());
}

#[tokio::test]
async fn ready_reloading_ready_stopping() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let (mut child, port, _files) = start(path.to_str().unwrap());

        let ready = recv(&socket).await;
        assert!(lines(&ready).contains(&"READY=1"), "{ready}");
        // READY=1 comes after the listeners are bound.
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("READY=1 sent before the port accepts connections");

        signal(&child, "HUP");
        let reloading = recv(&socket).await;
        let l = lines(&reloading);
        assert!(l.contains(&"RELOADING=1"), "{reloading}");
        let usec = l
            .iter()
            .find_map(|x| x.strip_prefix("MONOTONIC_USEC="))
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC: {reloading}"));
        assert!(usec.parse::<u64>().unwrap() > 0);
        let ready = recv(&socket).await;
        assert!(lines(&ready).contains(&"READY=1"), "{ready}");

        signal(&child, "TERM");
        let stopping = recv(&socket).await;
        assert!(lines(&stopping).contains(&"STOPPING=1"), "{stopping}");
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("did not exit after SIGTERM without clients")
            .unwrap();
        assert!(status.success());
    })
    .await
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn abstract_socket_name() {
    use std::os::linux::net::SocketAddrExt;
    bounded(async {
        let name = format!("pgsluice-test-notify-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let std_socket = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        std_socket.set_nonblocking(true).unwrap();
        let socket = UnixDatagram::from_std(std_socket).unwrap();
        let (mut child, _port, _files) = start(&format!("@{name}"));
        let ready = recv(&socket).await;
        assert!(lines(&ready).contains(&"READY=1"), "{ready}");
        signal(&child, "QUIT");
        let stopping = recv(&socket).await;
        assert!(lines(&stopping).contains(&"STOPPING=1"), "{stopping}");
        let _ = child.wait().await;
    })
    .await
}
