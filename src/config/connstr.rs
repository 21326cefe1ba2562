//! libpq-style `key=value key='quoted value'` strings, as used by the
//! `[databases]`, `[users]` and `[peers]` sections, plus the small value
//! parsers those sections share. Which keys are allowed is the callers'
//! business.
//!
//! Quoting: a value may be wrapped in single quotes; inside, `\'` and `''`
//! stand for a quote and `\\` for a backslash (libpq spells it the first
//! way, PgBouncer's own parser the second). Unquoted values end at
//! whitespace. Empty values are refused, as PgBouncer does.

use std::time::Duration;

use super::settings::parse_seconds;

/// Splits a connection string into (key, value) pairs in order.
pub(crate) fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..end];
        let after = rest[end..].trim_start();
        let Some(after) = after.strip_prefix('=') else {
            return Err(format!("syntax error: expected '=' after {key:?}"));
        };
        if key.is_empty() {
            return Err("syntax error: missing key before '='".into());
        }
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('\'') {
            Some(q) => unquote(q).ok_or_else(|| format!("unterminated quoted value for {key}"))?,
            None => {
                let e = after.find(char::is_whitespace).unwrap_or(after.len());
                (after[..e].to_string(), &after[e..])
            }
        };
        if value.is_empty() {
            return Err(format!("empty value for {key}"));
        }
        out.push((key.to_string(), value));
        rest = tail.trim_start();
    }
    Ok(out)
}

/// Reads a quoted value after its opening quote; returns it and the rest.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?.1),
            '\'' if matches!(chars.peek(), Some((_, '\''))) => {
                chars.next();
                value.push('\'');
            }
            '\'' => return Some((value, &s[i + 1..])),
            c => value.push(c),
        }
    }
    None
}

/// A non-negative count; `-1` means "not set" (PgBouncer's own marker).
pub(crate) fn opt_count(v: &str) -> Result<Option<u32>, String> {
    if v == "-1" {
        return Ok(None);
    }
    v.parse::<u32>()
        .ok()
        .filter(|n| i32::try_from(*n).is_ok())
        .map(Some)
        .ok_or_else(|| format!("invalid count: {v:?}"))
}

/// Seconds; `-1` means "not set".
pub(crate) fn opt_seconds(v: &str) -> Result<Option<Duration>, String> {
    if v == "-1" {
        return Ok(None);
    }
    parse_seconds(v).map(Some).ok_or_else(|| {
        format!("invalid time: {v:?} (seconds, or a number with us, ms, s, min, h or d)")
    })
}

/// One of `words`, case-insensitively, in canonical spelling.
pub(crate) fn choice(v: &str, words: &[&'static str]) -> Result<&'static str, String> {
    words
        .iter()
        .find(|w| w.eq_ignore_ascii_case(v))
        .copied()
        .ok_or_else(|| format!("invalid value {v:?}; expected one of: {}", words.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, String)> {
        parse_pairs(s).expect("parses")
    }

    #[test]
    fn plain_and_quoted_values() {
        assert!(p("").is_empty());
        assert_eq!(
            p(" host=db1  port = 5433 dbname='my db' "),
            vec![
                ("host".into(), "db1".into()),
                ("port".into(), "5433".into()),
                ("dbname".into(), "my db".into())
            ]
        );
        assert_eq!(p(r"password='it\'s \\ ok'")[0].1, r"it's \ ok");
        assert_eq!(p("password='it''s'")[0].1, "it's");
        assert_eq!(p("connect_query='SELECT 1'")[0].1, "SELECT 1");
    }

    #[test]
    fn malformed_strings_are_errors() {
        for bad in ["host", "host=", "=x", "host='open", "password=''", "a=1 b"] {
            assert!(parse_pairs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_value_parsers() {
        assert_eq!(opt_count("5"), Ok(Some(5)));
        assert_eq!(opt_count("-1"), Ok(None));
        assert!(opt_count("-2").is_err() && opt_count("x").is_err());
        assert_eq!(opt_seconds("1.5"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(opt_seconds("-1"), Ok(None));
        assert_eq!(
            choice("ROUND-robin", &["round-robin", "disable"]),
            Ok("round-robin")
        );
        assert!(choice("x", &["a"]).is_err());
    }
}
