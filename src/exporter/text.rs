//! Prometheus' text exposition format (version 0.0.4): `# HELP`, `# TYPE`,
//! then one `name{label="value",...} value` line per sample, every sample
//! of a family right after its header.

use std::fmt::{Display, Write};

/// The media type of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A page of metrics being written.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A total that only goes up (its name ends in `_total`).
    Counter,
    /// Buckets (`_bucket{le=...}`), `_sum` and `_count`.
    Histogram,
}

impl Exposition {
    /// An empty page.
    pub(crate) fn new() -> Exposition {
        Exposition::default()
    }

    /// Start the family `name`: its HELP and TYPE lines.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of the family started last.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The page.
    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Microseconds as seconds.
pub(crate) fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::new();
        e.family("pgsluice_queries_total", Kind::Counter, "Queries.");
        e.sample(
            "pgsluice_queries_total",
            &[("database", "a\"b\\c\nd"), ("user", "u")],
            7,
        );
        e.family("pgsluice_up", Kind::Gauge, "Up.");
        e.sample("pgsluice_up", &[], 1);
        assert_eq!(
            e.finish(),
            "# HELP pgsluice_queries_total Queries.\n\
             # TYPE pgsluice_queries_total counter\n\
             pgsluice_queries_total{database=\"a\\\"b\\\\c\\nd\",user=\"u\"} 7\n\
             # HELP pgsluice_up Up.\n# TYPE pgsluice_up gauge\npgsluice_up 1\n"
        );
    }

    #[test]
    fn microseconds_to_seconds_round_trip() {
        for us in [0u64, 1, 999_999, 1_234_567, 86_400_000_000] {
            assert_eq!(
                (format!("{}", seconds(us)).parse::<f64>().unwrap() * 1e6).round() as u64,
                us
            );
        }
    }
}
