//! A network that drops packets: nftables rules on the loopback path that
//! make one TCP port (or one client's port) a black hole. Packets vanish,
//! no RST and no ICMP, as a host powered off or a firewall that drops does;
//! only the kernel's keepalive and TCP_USER_TIMEOUT notice.
//!
//! Needs root and Debian's nftables (`nft`), which scripts/test.sh
//! installs; missing, the test fails (it is never skipped).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A table of drop rules, removed on drop.
pub struct Blackhole {
    table: String,
}

fn nft(args: &[&str]) {
    let out = Command::new("nft")
        .args(args)
        .output()
        .expect("nft not found: scripts/test.sh installs Debian's nftables (the test needs root)");
    assert!(
        out.status.success(),
        "nft {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Blackhole {
    /// Drop every TCP packet to or from `port` (either end of the
    /// connection) on this host.
    pub fn port(port: u16) -> Blackhole {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let table = format!(
            "pgsluice_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        nft(&["add", "table", "inet", &table]);
        let hole = Blackhole { table };
        nft(&[
            "add",
            "chain",
            "inet",
            &hole.table,
            "out",
            "{ type filter hook output priority 0 ; policy accept ; }",
        ]);
        for dir in ["dport", "sport"] {
            nft(&[
                "add",
                "rule",
                "inet",
                &hole.table,
                "out",
                "tcp",
                dir,
                &port.to_string(),
                "drop",
            ]);
        }
        hole
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}
