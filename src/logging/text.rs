//! The text log line, written by hand for speed: the same line as
//! tracing-subscriber's default formatter (`2026-11-27T05:25:09.956450Z
//!  INFO pgsluice::client::login: login attempt client=1 peer=...`), at a
//! fraction of its cost.
//!
//! Why: with log_connections and log_disconnections on (the defaults, as in
//! PgBouncer) every connection logs two lines, and the default formatter
//! spent about 8,000 instructions on each (callgrind, `COST_CONNECT=1
//! benches/cost.sh`): a date computed from scratch, every piece through
//! `core::fmt` twice (an escaping writer inside a styling writer), styles
//! applied even without colours. Here the date is computed once a second per
//! thread, fixed pieces are copied, and each field value is formatted once.
//!
//! Values are escaped as by the default formatter: control characters in
//! values the client chose (a user name with a newline) cannot forge lines.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The text event format.
pub(crate) struct Text {
    /// Colour the level (on a terminal).
    pub ansi: bool,
}

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            timestamp(&mut line, SystemTime::now());
            let meta = event.metadata();
            line.push_str(level(meta.level(), self.ansi));
            line.push_str(meta.target());
            line.push_str(": ");
            if let Some(scope) = ctx.event_scope() {
                for span in scope.from_root() {
                    line.push_str(span.name());
                    let ext = span.extensions();
                    if let Some(fields) = ext.get::<FormattedFields<N>>()
                        && !fields.is_empty()
                    {
                        let _ = write!(line, "{{{fields}}}");
                    }
                    line.push_str(": ");
                }
            }
            let mut fields = Fields {
                line: &mut line,
                first: true,
            };
            event.record(&mut fields);
            line.push('\n');
            writer.write_str(&line)
        })
    }
}

thread_local! {
    /// The line being built (kept: no allocation per line).
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
    /// `YYYY-MM-DDTHH:MM:SS` of the second last formatted on this thread.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

fn level(level: &Level, ansi: bool) -> &'static str {
    match (*level, ansi) {
        (Level::ERROR, false) => "ERROR ",
        (Level::WARN, false) => " WARN ",
        (Level::INFO, false) => " INFO ",
        (Level::DEBUG, false) => "DEBUG ",
        (Level::TRACE, false) => "TRACE ",
        (Level::ERROR, true) => "\x1b[31mERROR\x1b[0m ",
        (Level::WARN, true) => "\x1b[33m WARN\x1b[0m ",
        (Level::INFO, true) => "\x1b[32m INFO\x1b[0m ",
        (Level::DEBUG, true) => "\x1b[34mDEBUG\x1b[0m ",
        (Level::TRACE, true) => "\x1b[35mTRACE\x1b[0m ",
    }
}

/// `2026-11-27T05:25:09.956450Z ` (RFC 3339, UTC, microseconds).
fn timestamp(line: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            cached.0 = secs;
            cached.1.clear();
            cached.1.extend(civil(secs).iter().map(|&b| char::from(b)));
        }
        line.push_str(&cached.1);
    });
    let micros = since.subsec_micros();
    line.push('.');
    for div in [100_000, 10_000, 1_000, 100, 10, 1] {
        line.push(char::from(b'0' + (micros / div % 10) as u8));
    }
    line.push_str("Z ");
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time. By hand: no date crate is in the
/// tree and this is the only date pgsluice writes; days to a civil date is
/// the well-known era algorithm (H. Hinnant, "chrono-Compatible Low-Level
/// Date Algorithms").
fn civil(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    out
}

/// Writes an event's fields: the message as is, the others as `name=value`
/// (`value` by Debug for strings, quoted, as the default formatter does).
struct Fields<'a> {
    line: &'a mut String,
    first: bool,
}

impl Fields<'_> {
    fn start(&mut self, field: &Field) {
        if !self.first {
            self.line.push(' ');
        }
        self.first = false;
        let name = field.name();
        if name != "message" {
            self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.line.push('=');
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.start(field);
        if field.name() == "message" {
            push_escaped(self.line, value);
        } else {
            // Debug of a str escapes control characters itself.
            let _ = write!(self.line, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.start(field);
        push_u64(self.line, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.start(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.start(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.start(field);
        let from = self.line.len();
        let _ = write!(self.line, "{value:?}");
        if self.line.as_bytes()[from..]
            .iter()
            .any(|b| b.is_ascii_control())
        {
            let tail = self.line.split_off(from);
            push_escaped(self.line, &tail);
        }
    }
}

/// Append `v` in decimal (client ids are on every connection's lines).
fn push_u64(line: &mut String, v: u64) {
    let mut digits = [0u8; 20];
    line.extend(decimal(v, &mut digits).iter().map(|&b| char::from(b)));
}

/// The ASCII decimal digits of `v`, written at the end of `digits`
/// (log fields and peer addresses are formatted with it, not `core::fmt`).
pub(crate) fn decimal(mut v: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &digits[at..]
}

/// Append `s` with control characters written as escapes (`\n`, `\u{1b}`).
fn push_escaped(line: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_ascii_control() {
            let _ = write!(line, "{}", c.escape_default());
        } else {
            line.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_match_known_instants() {
        let at = |s: u64| String::from_utf8(civil(s).to_vec()).unwrap();
        assert_eq!(at(0), "1970-01-01T00:00:00");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(at(1_798_371_909), "2026-12-27T11:45:09");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00");
    }

    #[test]
    fn timestamps_have_microseconds() {
        let mut line = String::new();
        timestamp(
            &mut line,
            UNIX_EPOCH + Duration::new(1_798_371_909, 956_450_123),
        );
        assert_eq!(line, "2026-12-27T11:45:09.956450Z ");
        line.clear();
        timestamp(&mut line, UNIX_EPOCH + Duration::new(1_798_371_909, 1_000));
        assert_eq!(line, "2026-12-27T11:45:09.000001Z ");
    }

    #[test]
    fn integers_are_decimal() {
        for v in [0, 7, 10, 12345, u64::MAX] {
            let mut line = String::new();
            push_u64(&mut line, v);
            assert_eq!(line, v.to_string());
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut line = String::new();
        push_escaped(&mut line, "bob\nFAKE LINE\x1b[31m");
        assert_eq!(line, "bob\\nFAKE LINE\\u{1b}[31m");
    }
}
