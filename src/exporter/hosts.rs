//! The hosts' figures on the metrics page (what SHOW HOSTS shows): per
//! host pgsluice has connected to, up or not, primary or not, fenced or
//! not, and a standby's lag; labelled by `host` (`host:port`, or the socket
//! path).

use super::text::{Exposition, Kind};
use crate::context::Context;

/// Append the host families.
pub(super) fn hosts(e: &mut Exposition, ctx: &Context) {
    let mut hosts: Vec<(String, crate::topology::HostState)> = ctx
        .pools
        .topology()
        .all()
        .iter()
        .map(|h| (h.endpoint().to_string(), h.state()))
        .collect();
    hosts.sort_by(|a, b| a.0.cmp(&b.0));
    type Value = fn(&crate::topology::HostState) -> Option<f64>;
    let families: [(&str, &str, Value); 5] = [
        (
            "host_up",
            "1 when the last connection or health check reached the host, else 0.",
            |s| {
                Some(if s.failure.is_none() && s.last_ok.is_some() {
                    1.0
                } else {
                    0.0
                })
            },
        ),
        (
            "host_primary",
            "1 when the host last said it is a primary, 0 a standby (absent: not known yet).",
            |s| s.role.map(|(standby, _)| if standby { 0.0 } else { 1.0 }),
        ),
        (
            "host_fenced",
            "1 when the host is fenced (split brain, or the old primary of a SWITCHOVER).",
            |s| Some(if s.fenced.is_some() { 1.0 } else { 0.0 }),
        ),
        (
            "host_lag_bytes",
            "How far a standby's replay is behind the primary, in bytes (health check).",
            |s| s.check.and_then(|c| c.lag_bytes).map(|b| b as f64),
        ),
        (
            "host_lag_seconds",
            "Seconds since a standby that is behind last replayed a transaction (health check).",
            |s| s.check.and_then(|c| c.lag_seconds),
        ),
    ];
    for (suffix, help, value) in families {
        let n = format!("pgsluice_{suffix}");
        e.family(&n, Kind::Gauge, help);
        for (host, state) in &hosts {
            if let Some(v) = value(state) {
                e.sample(&n, &[("host", host)], v);
            }
        }
    }
}
