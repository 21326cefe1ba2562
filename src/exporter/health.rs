//! Health endpoints on the metrics listener, for load balancers and
//! Kubernetes probes: `/healthz` (the process is alive and answering) and
//! `/readyz` (it takes clients and can reach a server for each database).
//!
//! `/readyz` is not ready (503) while a shutdown runs, while a global PAUSE
//! or SUSPEND is in force, or while some configured database has no host
//! that answers. A host answers when the postmaster takes a TCP (or Unix
//! socket) connection and a CancelRequest on it: no login, nothing for
//! pg_hba.conf to refuse, and nothing in PostgreSQL's log at its default
//! levels (a connection closed without a startup packet would log
//! "incomplete startup packet" on every probe). Each probe asks every host
//! at once, each bounded by [`PROBE_TIMEOUT`]; the body lists each
//! database with what was found.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::config::Endpoint;
use crate::context::Context;
use crate::protocol::CANCEL_REQUEST_CODE;

/// How long one host may take to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `/healthz`: alive.
pub(super) fn healthz() -> (u16, String) {
    (200, "ok\n".into())
}

/// `/readyz`: status and a body of one line per reason or database.
pub(super) async fn readyz(ctx: &Context) -> (u16, String) {
    if ctx.stopping() || ctx.shutting_down() {
        return (503, "not ready: shutting down\n".into());
    }
    match ctx.pools.global_state() {
        (true, _) => return (503, "not ready: paused (PAUSE)\n".into()),
        (_, true) => return (503, "not ready: suspended (SUSPEND)\n".into()),
        _ => {}
    }
    let cfg = ctx.config();
    let mut names: Vec<&String> = cfg.databases.entries.keys().collect();
    names.sort();
    let mut probes = JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        for endpoint in cfg.databases.entries[*name].endpoints() {
            probes.spawn(async move { (i, probe(&endpoint).await) });
        }
    }
    let mut reached = vec![None::<Result<String, String>>; names.len()];
    while let Some(done) = probes.join_next().await {
        let Ok((i, result)) = done else { continue };
        match (&reached[i], result) {
            (Some(Ok(_)), _) => {}
            (_, r @ Ok(_)) | (None, r @ Err(_)) => reached[i] = Some(r),
            (Some(Err(a)), Err(b)) => reached[i] = Some(Err(format!("{a}; {b}"))),
        }
    }
    let mut ready = true;
    let mut body = String::new();
    for (name, r) in names.iter().zip(reached) {
        match r {
            Some(Ok(host)) => body.push_str(&format!("{name}: reachable ({host})\n")),
            Some(Err(why)) => {
                ready = false;
                body.push_str(&format!("{name}: unreachable: {why}\n"));
            }
            None => {
                ready = false;
                body.push_str(&format!("{name}: unreachable: probe failed\n"));
            }
        }
    }
    if ready {
        (200, format!("ready\n{body}"))
    } else {
        (
            503,
            format!("not ready: a database has no reachable host\n{body}"),
        )
    }
}

/// Whether the postmaster at `endpoint` takes a connection and a
/// CancelRequest (for no backend: process id 0) and closes the connection
/// after it; Ok(its address).
async fn probe(endpoint: &Endpoint) -> Result<String, String> {
    let shown = endpoint.to_string();
    let attempt = async {
        let mut stream = crate::transport::connect(endpoint).await?;
        let mut cancel = [0u8; 16];
        cancel[..4].copy_from_slice(&16i32.to_be_bytes());
        cancel[4..8].copy_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
        stream.write_all(&cancel).await?;
        // The postmaster closes the connection once it has handled the
        // request: it is alive and serving, not only its listen backlog.
        let mut rest = [0u8; 64];
        while stream.read(&mut rest).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    match crate::runtime::timer::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(())) => Ok(shown),
        Ok(Err(e)) => Err(format!("{shown}: {e}")),
        Err(_) => Err(format!("{shown}: no answer within {PROBE_TIMEOUT:?}")),
    }
}
