//! Typing `[pgbouncer]` values: the value parsers, and [`Values`], every
//! known key's effective typed value with where it was set. The key table
//! itself is in `keys.rs`.
//!
//! Values are read the way PgBouncer reads them: integers like C `strtol`
//! with base 0 (so `0777` is octal and `0x10` hex), times as (possibly
//! fractional) seconds without unit suffixes, choices case-insensitively.
//! Booleans, which PgBouncer stores as integers, also accept yes/no, on/off
//! and true/false. This module does not build [`super::General`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfigError;
pub(crate) use super::keys::{KEYS, Kind, NOT_YET_IMPLEMENTED, POOL_MODES, find};

/// A typed setting value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// An integer or file mode.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A time span.
    Time(Duration),
    /// Text.
    Str(String),
    /// One of a fixed set of words, in canonical (lowercase) spelling.
    Choice(&'static str),
}

impl Value {
    /// The value as SHOW CONFIG shows it.
    pub(crate) fn text(&self, kind: Kind) -> String {
        match self {
            Value::Int(n) if kind == Kind::Mode => format!("0{n:o}"),
            Value::Int(n) => n.to_string(),
            Value::Bool(b) => u8::from(*b).to_string(),
            Value::Time(d) => d.as_secs_f64().to_string(),
            Value::Str(s) => s.clone(),
            Value::Choice(c) => (*c).to_string(),
        }
    }
}

/// Parses `raw` as a value of type `kind`; the error is a lowercase reason.
pub(crate) fn parse_value(kind: Kind, raw: &str) -> Result<Value, String> {
    match kind {
        Kind::Int { min, max } => {
            let n = parse_c_int(raw).ok_or_else(|| format!("invalid integer: {raw:?}"))?;
            if n < min || n > max {
                return Err(format!("{n} is out of range {min}..={max}"));
            }
            Ok(Value::Int(n))
        }
        Kind::Mode => match parse_c_int(raw) {
            Some(n) if (0..=0o7777).contains(&n) => Ok(Value::Int(n)),
            _ => Err(format!("invalid file mode: {raw:?}")),
        },
        Kind::Bool => parse_bool(raw)
            .map(Value::Bool)
            .ok_or_else(|| format!("invalid boolean: {raw:?} (use 0/1, yes/no, on/off)")),
        Kind::Time => parse_seconds(raw).map(Value::Time).ok_or_else(|| {
            format!("invalid time: {raw:?} (seconds, or a number with us, ms, s, min, h or d)")
        }),
        Kind::Str => Ok(Value::Str(raw.to_string())),
        Kind::Choice(words) => words
            .iter()
            .find(|w| w.eq_ignore_ascii_case(raw))
            .map(|w| Value::Choice(w))
            .ok_or_else(|| {
                format!(
                    "invalid value {raw:?}; expected one of: {}",
                    words.join(", ")
                )
            }),
    }
}

/// Parses an integer like C `strtol(s, &end, 0)` with nothing left over:
/// optional sign, then `0x` hex, leading-`0` octal, or decimal.
pub(crate) fn parse_c_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, body) = if let Some(h) = digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
        (16, h)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = i64::from_str_radix(body, radix).ok()?;
    Some(if neg { -n } else { n })
}

/// Parses a boolean: the words PostgreSQL accepts, or an integer as PgBouncer.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" => Some(true),
        "no" | "off" | "false" => Some(false),
        other => parse_c_int(other).map(|n| n != 0),
    }
}

/// Parses seconds like PgBouncer (`strtod`): fractional allowed, not
/// negative; truncated to microseconds. A pgsluice extension: an optional
/// PostgreSQL time unit (`us`, `ms`, `s`, `min`, `h`, `d`), as in `10s`.
pub(crate) fn parse_seconds(s: &str) -> Option<Duration> {
    let s = s.trim();
    let at = s
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(at);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "us" => 1e-6,
        "ms" => 1e-3,
        "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    let v: f64 = num.trim().parse::<f64>().ok()? * scale;
    if !v.is_finite() || !(0.0..=1e12).contains(&v) {
        return None;
    }
    Some(Duration::from_micros((v * 1e6) as u64))
}

/// Where a setting was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The file.
    pub file: PathBuf,
    /// The line.
    pub line: usize,
}

/// A `[pgbouncer]` value as written, before typing.
#[derive(Debug, Clone)]
pub(crate) struct RawSetting {
    /// The text after `=`.
    pub value: String,
    /// Where it was written.
    pub origin: Origin,
}

/// Every known key's effective typed value, with where it was set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Values {
    map: HashMap<&'static str, Value>,
    origins: HashMap<&'static str, Origin>,
}

impl Values {
    /// Types every raw value (bad ones are reported and fall back to the
    /// default) and fills in defaults. Warns about not-yet-implemented keys
    /// set to a non-default value.
    pub(crate) fn resolve(
        raw: &HashMap<&'static str, RawSetting>,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<String>,
    ) -> Values {
        let mut out = Values::default();
        for def in KEYS {
            let default = parse_value(def.kind, def.default).unwrap_or(Value::Str(String::new()));
            let Some(r) = raw.get(def.name) else {
                out.map.insert(def.name, default);
                continue;
            };
            let at = format!(
                "{}:{}: {}",
                r.origin.file.display(),
                r.origin.line,
                def.name
            );
            let value = match parse_value(def.kind, &r.value) {
                Ok(v) => v,
                Err(msg) => {
                    errors.push(ConfigError::new(
                        &r.origin.file,
                        r.origin.line,
                        def.name,
                        msg,
                    ));
                    default.clone()
                }
            };
            if NOT_YET_IMPLEMENTED.contains(&def.name) && value != default {
                warnings.push(format!(
                    "{at}: setting is not implemented by pgsluice yet; ignored"
                ));
            }
            if def.kind == Kind::Mode && r.value.len() > 1 && !r.value.starts_with('0') {
                warnings.push(format!(
                    "{at}: {:?} has no leading 0, so it is decimal (mode 0{:o}) as in PgBouncer",
                    r.value,
                    out_int(&value)
                ));
            }
            out.map.insert(def.name, value);
            out.origins.insert(def.name, r.origin.clone());
        }
        out
    }

    /// Where `name` was set, if it was.
    pub(crate) fn origin(&self, name: &str) -> Option<&Origin> {
        self.origins.get(name)
    }

    /// The value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// An integer setting (0 if absent).
    pub(crate) fn int(&self, name: &str) -> i64 {
        self.get(name).map(out_int).unwrap_or(0)
    }

    /// An integer setting as u32 (0 if absent; ranges are already checked).
    pub(crate) fn u32(&self, name: &str) -> u32 {
        u32::try_from(self.int(name)).unwrap_or(0)
    }

    /// A boolean setting.
    pub(crate) fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Bool(true)))
    }

    /// A time setting.
    pub(crate) fn time(&self, name: &str) -> Duration {
        match self.get(name) {
            Some(Value::Time(d)) => *d,
            _ => Duration::ZERO,
        }
    }

    /// A text or choice setting.
    pub(crate) fn str(&self, name: &str) -> &str {
        match self.get(name) {
            Some(Value::Str(s)) => s,
            Some(Value::Choice(c)) => c,
            _ => "",
        }
    }
}

fn out_int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_integers() {
        assert_eq!(parse_c_int("6432"), Some(6432));
        assert_eq!(parse_c_int("0777"), Some(0o777));
        assert_eq!(parse_c_int("0x1F"), Some(31));
        assert_eq!(parse_c_int("-5"), Some(-5));
        assert_eq!(parse_c_int("+5"), Some(5));
        assert_eq!(parse_c_int("0"), Some(0));
        for bad in ["", "abc", "12a", "08", "0x", "1.5", "- 1", "5s"] {
            assert_eq!(parse_c_int(bad), None, "{bad}");
        }
    }

    #[test]
    fn booleans_and_times() {
        for t in ["1", "yes", "ON", "true", "2"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "no", "Off", "FALSE"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_seconds("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_seconds("1e2"), Some(Duration::from_secs(100)));
        assert_eq!(parse_seconds("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_seconds("1min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_seconds("250 ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_seconds("2h"), Some(Duration::from_secs(7200)));
        for bad in ["-1", "5 parsecs", "5sec", "inf", "NaN", "", "1e20", "s"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_default_parses_and_keys_are_sorted_and_unique() {
        for def in KEYS {
            assert!(parse_value(def.kind, def.default).is_ok(), "{}", def.name);
            assert_eq!(def.name, def.name.to_ascii_lowercase());
        }
        for w in KEYS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for name in NOT_YET_IMPLEMENTED {
            assert!(find(name).is_some(), "{name} is not a known key");
        }
    }

    #[test]
    fn values_display_like_show_config() {
        assert_eq!(Value::Int(0o777).text(Kind::Mode), "0777");
        assert_eq!(
            Value::Time(Duration::from_millis(500)).text(Kind::Time),
            "0.5"
        );
        assert_eq!(Value::Time(Duration::from_secs(60)).text(Kind::Time), "60");
        assert_eq!(Value::Bool(true).text(Kind::Bool), "1");
        let pm = parse_value(Kind::Choice(POOL_MODES), "Transaction");
        assert_eq!(pm, Ok(Value::Choice("transaction")));
    }
}
