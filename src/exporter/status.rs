//! The live status page on the metrics listener: `GET /status` answers a
//! self-contained HTML page (`status.html`: inline CSS and script, no other
//! URL) that polls `GET /status.json` once a second and redraws in place.
//!
//! The JSON is read as the metrics page reads its figures, at request time:
//! each pool's SHOW POOLS figures (`Pool::figures`, one pool lock) shown in
//! SHOW POOLS' terms (cl_active counts every logged-in client that is not
//! waiting), its SHOW STATS totals, its latency histograms (cumulative
//! bucket counts, Prometheus' `le`), and what the topology knows of each
//! host (role, up or not, a standby's lag from the health check). Nothing
//! is recorded for it. The crate has no JSON library (serde_json is a test
//! dependency only), so [`Json`] writes it, escaping strings as RFC 8259
//! asks.

use std::fmt::Write;

use crate::config::ADMIN_DB;
use crate::context::Context;
use crate::pool::Role;
use crate::stats::histogram::{BOUNDS_US, HISTOGRAMS};
use crate::stats::{COUNTERS, FIELDS, Unit};

/// Media type of the page.
pub(super) const HTML_TYPE: &str = "text/html; charset=utf-8";
/// Media type of the figures.
pub(super) const JSON_TYPE: &str = "application/json";

/// The page: the same bytes on every request.
const PAGE: &str = include_str!("status.html");

/// `/status`: the page.
pub(super) fn page() -> (u16, String) {
    (200, PAGE.to_string())
}

/// `/status.json`: the figures now.
pub(super) fn json(ctx: &Context) -> (u16, String) {
    let mut j = Json::default();
    j.open('{');
    j.key("version").str(env!("CARGO_PKG_VERSION"));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    j.key("time_ms").uint(now_ms);
    let state = match (ctx.stopping(), ctx.pools.global_state()) {
        (true, _) => "stopping",
        (false, (true, _)) => "paused",
        (false, (_, true)) => "suspended",
        _ => "running",
    };
    j.key("state").str(state);
    let capacity = ctx.client_capacity() as usize;
    j.key("client_connections")
        .uint(capacity.saturating_sub(ctx.client_slots.available_permits()) as u64);
    j.key("max_client_connections").uint(capacity as u64);
    // SHOW POOLS' `pgbouncer` row: console sessions.
    let console = ctx
        .registry
        .all()
        .iter()
        .filter(|t| t.info().is_some_and(|i| i.database == ADMIN_DB))
        .count();
    j.key("console_clients").uint(console as u64);
    histogram_bounds(&mut j);
    pools(&mut j, ctx);
    hosts(&mut j, ctx);
    j.close('}');
    (200, j.0)
}

/// The buckets' upper bounds in seconds (`+Inf` last, as null) and each
/// histogram's name and help.
fn histogram_bounds(j: &mut Json) {
    j.key("bucket_bounds_seconds").open('[');
    for us in BOUNDS_US {
        j.float(us as f64 / 1e6);
    }
    j.null();
    j.close(']');
    j.key("histograms").open('[');
    for h in HISTOGRAMS {
        j.open('{');
        j.key("name").str(h.metric);
        j.key("help").str(h.help);
        j.close('}');
    }
    j.close(']');
}

/// Every pool, sorted by (database, user) as SHOW POOLS sorts them.
fn pools(j: &mut Json, ctx: &Context) {
    let mut pools = ctx.pools.all();
    pools.sort_by(|a, b| (&a.database(), &a.user()).cmp(&(&b.database(), &b.user())));
    j.key("pools").open('[');
    for p in &pools {
        let f = p.figures();
        let totals = p.stats.totals().to_array();
        j.open('{');
        j.key("database").str(p.database());
        j.key("user").str(p.user());
        j.key("role").str(match p.key().role {
            Role::Any => "any",
            Role::Primary => "primary",
            Role::Standby => "standby",
        });
        j.key("pool_mode").str(p.settings().mode.name());
        j.key("pool_size").uint(p.settings().size as u64);
        for (k, v) in [
            ("cl_active", f.clients.saturating_sub(f.waiting)),
            ("cl_waiting", f.waiting),
            ("sv_active", f.active),
            ("sv_idle", f.idle),
            ("sv_used", f.used),
            ("sv_tested", 0),
            ("sv_login", f.login),
        ] {
            j.key(k).uint(v as u64);
        }
        j.key("maxwait_us")
            .uint(u64::try_from(f.max_wait.as_micros()).unwrap_or(u64::MAX));
        totals_object(j, &totals);
        j.key("histograms").open('{');
        for h in HISTOGRAMS {
            j.key(h.metric).open('{');
            j.key("buckets").open('[');
            for v in p.stats.histogram(h.which) {
                j.uint(v);
            }
            j.close(']');
            let (sum, count) = h.sum_count;
            j.key("sum_seconds").float(totals[sum] as f64 / 1e6);
            j.key("count").uint(totals[count]);
            j.close('}');
        }
        j.close('}');
        j.close('}');
    }
    j.close(']');
}

/// SHOW STATS' totals, keyed by their metric names (seconds for times).
fn totals_object(j: &mut Json, totals: &[u64; FIELDS]) {
    j.key("totals").open('{');
    for (c, v) in COUNTERS.iter().zip(totals) {
        j.key(c.metric);
        match c.unit {
            Unit::Count => j.uint(*v),
            Unit::Micros => j.float(*v as f64 / 1e6),
        };
    }
    j.close('}');
}

/// Every host pgsluice knows of (SHOW HOSTS' role and state words).
fn hosts(j: &mut Json, ctx: &Context) {
    let topology = ctx.pools.topology();
    let rotations = topology.rotations();
    let mut hosts: Vec<_> = topology
        .all()
        .iter()
        .map(|h| (h.endpoint().to_string(), h.endpoint().clone(), h.state()))
        .collect();
    hosts.sort_by(|a, b| a.0.cmp(&b.0));
    j.key("hosts").open('[');
    for (shown, endpoint, st) in &hosts {
        let role = match (st.fenced.is_some(), st.role) {
            (true, _) => "fenced",
            (false, None) => "unknown",
            (false, Some((true, _))) => "standby",
            (false, Some((false, _))) => "primary",
        };
        let lagging = rotations.iter().any(|(_, r)| r.lagging(endpoint));
        let state = match (&st.failure, st.last_ok) {
            (Some(_), _) => "down",
            (None, Some(_)) if lagging => "lagging",
            (None, Some(_)) => "up",
            (None, None) => "unknown",
        };
        j.open('{');
        j.key("host").str(shown);
        j.key("role").str(role);
        j.key("state").str(state);
        j.key("up")
            .bool(st.failure.is_none() && st.last_ok.is_some());
        j.key("lag_bytes");
        match st.check.and_then(|c| c.lag_bytes) {
            Some(b) => j.uint(b),
            None => j.null(),
        };
        j.key("lag_seconds");
        match st.check.and_then(|c| c.lag_seconds) {
            Some(s) => j.float(s),
            None => j.null(),
        };
        j.key("checked_ago_seconds");
        match st.check {
            Some(c) => j.float(c.at.elapsed().as_secs_f64()),
            None => j.null(),
        };
        j.key("last_error");
        match st
            .failure
            .as_ref()
            .map(|(_, why)| why)
            .or(st.fenced.as_ref())
        {
            Some(why) => j.str(why),
            None => j.null(),
        };
        j.close('}');
    }
    j.close(']');
}

/// A JSON text being written: values, keys and brackets in order; the
/// commas are put in where a value or key follows another.
#[derive(Debug, Default)]
struct Json(String);

impl Json {
    /// A comma if something came before at this level.
    fn sep(&mut self) {
        if !matches!(self.0.chars().last(), None | Some('{' | '[' | ':')) {
            self.0.push(',');
        }
    }

    fn open(&mut self, bracket: char) -> &mut Self {
        self.sep();
        self.0.push(bracket);
        self
    }

    fn close(&mut self, bracket: char) -> &mut Self {
        self.0.push(bracket);
        self
    }

    fn key(&mut self, k: &str) -> &mut Self {
        self.str(k);
        self.0.push(':');
        self
    }

    fn str(&mut self, s: &str) -> &mut Self {
        self.sep();
        self.0.push('"');
        for c in s.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                '\n' => self.0.push_str("\\n"),
                '\r' => self.0.push_str("\\r"),
                '\t' => self.0.push_str("\\t"),
                // The rest of the control characters, and the two line
                // separators JavaScript source would not take raw.
                c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    fn uint(&mut self, v: u64) -> &mut Self {
        self.sep();
        let _ = write!(self.0, "{v}");
        self
    }

    /// A number; NaN and infinities (which JSON cannot write) as null.
    fn float(&mut self, v: f64) -> &mut Self {
        if v.is_finite() {
            self.sep();
            // Display never uses an exponent and prints integral values
            // without a fraction: both are JSON numbers.
            let _ = write!(self.0, "{v}");
            self
        } else {
            self.null()
        }
    }

    fn bool(&mut self, v: bool) -> &mut Self {
        self.sep();
        self.0.push_str(if v { "true" } else { "false" });
        self
    }

    fn null(&mut self) -> &mut Self {
        self.sep();
        self.0.push_str("null");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_and_commas_placed() {
        let nasty = "a\"b\\c\nd\re\tf\u{1}g\u{1f}h\u{2028}i/é<x>";
        let mut j = Json::default();
        j.open('{');
        j.key(nasty).str(nasty);
        j.key("list").open('[');
        j.uint(1).float(0.25).float(f64::NAN).bool(true).null();
        j.open('{').close('}');
        j.open('[').close(']');
        j.close(']');
        j.key("tiny").float(1e-7);
        j.key("huge").float(1e21);
        j.key("inf").float(f64::INFINITY);
        j.close('}');
        let v: serde_json::Value = serde_json::from_str(&j.0).expect(&j.0);
        assert_eq!(v[nasty], nasty);
        assert_eq!(
            v["list"],
            serde_json::json!([1, 0.25, null, true, null, {}, []])
        );
        assert_eq!(v["tiny"].as_f64(), Some(1e-7));
        assert_eq!(v["huge"].as_f64(), Some(1e21));
        assert!(v["inf"].is_null());
        assert!(
            j.0.contains("\\u0001") && j.0.contains("\\u2028"),
            "{}",
            j.0
        );
    }

    #[test]
    fn the_page_is_self_contained() {
        // The network may be closed: nothing may be fetched from elsewhere
        // (the SVG namespace is a name, never fetched).
        let page = PAGE.replace("http://www.w3.org/2000/svg", "");
        for needle in ["http://", "https://", "//cdn", "@import", "src=\""] {
            assert!(!page.contains(needle), "the page refers to {needle}");
        }
        assert!(PAGE.contains("status.json"));
    }
}
